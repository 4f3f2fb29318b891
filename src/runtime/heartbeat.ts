// Presence on a public cluster: a Lease in a namespace callers can read, renewed at a low rate by the
// replica that reconciles, so a caller whose request nobody has picked up can see when a controller was
// last there and what it serves (`isc request wait` and the internal-request Task say so). Not an
// election: one writer per cluster, the last write wins. One write per beat (a merge patch; a create
// only the first time), nothing read.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { describeError, isNotFound } from "../api/errors.ts";
import { leases, ResourceClient } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { microTime } from "./leader.ts";

/** Where the Lease is unless configured otherwise; the CLI and the Task look there by default. */
export const defaultHeartbeat = {
  namespace: "internal-services-remote",
  name: "internal-service-controller",
};
/** What the controller serves in the cluster, as a sentence: never the names of tenants' namespaces. */
export const servingAnnotation = "internal-services.appstudio.openshift.io/serving";

export interface HeartbeatOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  /** spec.holderIdentity: which replica, of which host. */
  identity: string;
  serving: string;
  intervalMs: number;
  log: Logger;
}

interface Lease extends KubernetesObject {
  spec: { holderIdentity: string; leaseDurationSeconds: number; renewTime: string; acquireTime?: string };
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  readonly #leases: ResourceClient<Lease>;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failing = false;

  constructor(opts: HeartbeatOptions) {
    this.#o = opts;
    this.#leases = new ResourceClient<Lease>(opts.kubeConfig, leases);
  }

  start(): void {
    void this.#beat();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #beat(): Promise<void> {
    const { namespace, name, log } = this.#o;
    try {
      await this.#write();
      if (this.#failing) log.info({ namespace, name }, "heartbeat Lease written again");
      this.#failing = false;
    } catch (err) {
      // Presence is advisory: it never stops the controller. Said once per outage, not every beat.
      if (!this.#failing)
        log.warn(
          { namespace, name, err: describeError(err) },
          "could not write the heartbeat Lease (callers cannot see this controller; the public Role's heartbeat rule and the namespace must exist)",
        );
      this.#failing = true;
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#beat(), this.#o.intervalMs);
  }

  async #write(): Promise<void> {
    const { namespace, name, identity, serving, intervalMs } = this.#o;
    const renewTime = microTime();
    // Three missed beats and the Lease reads as expired.
    const leaseDurationSeconds = Math.ceil((3 * intervalMs) / 1000);
    const metadata = { annotations: { [servingAnnotation]: serving } };
    try {
      await this.#leases.mergePatch(namespace, name, {
        metadata,
        spec: { holderIdentity: identity, leaseDurationSeconds, renewTime },
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.#leases.create(namespace, {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace, ...metadata },
        spec: { holderIdentity: identity, leaseDurationSeconds, renewTime, acquireTime: renewTime },
      });
    }
  }
}
