// Lease-based leader election with client-go's semantics: optimistic concurrency on resourceVersion;
// another holder's lease counts as expired only after leaseDuration of local observation without
// change; a leader that cannot renew within renewDeadline has lost and must stop at once.

import type { Logger } from "pino";
import { describeError, ignoreNotFound } from "../api/errors.ts";
import { call } from "../api/http.ts";
import { collectionPath, leases } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  /** Called once when leadership is lost; the caller must stop reconciling immediately. */
  onStoppedLeading: () => void;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Lease times are MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
  readonly #o: Required<
    Omit<LeaderElectionOptions, "onStartedLeading" | "onStoppedLeading" | "log" | "kubeConfig">
  > &
    LeaderElectionOptions;
  #observed = "";
  #observedAt = 0;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #lastRenew = 0;

  constructor(opts: LeaderElectionOptions) {
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    void this.#tick();
  }

  /** Stops campaigning; a leader releases the lease so a standby takes over without waiting. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#leading = false;
    try {
      const lease = await this.#get();
      if (lease?.spec.holderIdentity === this.#o.identity) {
        lease.spec = { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime() };
        await this.#replace(lease);
      }
    } catch (err) {
      this.#o.log.warn({ err: describeError(err) }, "could not release the leader lease");
    }
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let ok = false;
    try {
      ok = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#o.log.warn({ err: describeError(err), lease: this.#o.name }, "leader election attempt failed");
    }
    if (this.#stopped) return;
    const now = Date.now();
    if (ok) {
      this.#lastRenew = now;
      if (!this.#leading) {
        this.#leading = true;
        this.#o.log.info({ lease: this.#o.name, identity: this.#o.identity }, "became leader");
        this.#o.onStartedLeading();
      }
    } else if (this.#leading && now - this.#lastRenew > this.#o.renewDeadlineMs) {
      this.#leading = false;
      this.#stopped = true;
      this.#o.log.error({ lease: this.#o.name }, "lost the leader lease");
      this.#o.onStoppedLeading();
      return;
    }
    this.#timer = setTimeout(() => void this.#tick(), this.#o.retryPeriodMs);
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    const lease = await this.#get();
    const leaseDurationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    if (!lease) {
      await call(this.#o.kubeConfig, "POST", collectionPath(leases, this.#o.namespace), {
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.#o.name, namespace: this.#o.namespace },
          spec: {
            holderIdentity: this.#o.identity,
            leaseDurationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        } satisfies Lease,
      });
      return true;
    }
    const record = `${lease.spec.holderIdentity}|${lease.spec.renewTime}`;
    if (record !== this.#observed) {
      this.#observed = record;
      this.#observedAt = Date.now();
    }
    const holder = lease.spec.holderIdentity ?? "";
    const heldByOther = holder !== "" && holder !== this.#o.identity;
    const duration = (lease.spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (heldByOther && Date.now() - this.#observedAt < duration) return false;
    const transition = holder !== this.#o.identity;
    lease.spec = {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds,
      acquireTime: transition ? microTime(now) : lease.spec.acquireTime,
      renewTime: microTime(now),
      leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (transition ? 1 : 0),
    };
    await this.#replace(lease); // 409 if someone else wrote first: we lost this round
    return true;
  }

  #path(): string {
    return `${collectionPath(leases, this.#o.namespace)}/${encodeURIComponent(this.#o.name)}`;
  }

  async #get(): Promise<Lease | undefined> {
    return ignoreNotFound(call<Lease>(this.#o.kubeConfig, "GET", this.#path()));
  }

  async #replace(lease: Lease): Promise<void> {
    await call(this.#o.kubeConfig, "PUT", this.#path(), { body: lease });
  }
}
