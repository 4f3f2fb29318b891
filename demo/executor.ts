// The demo's stand-in for the kubelets that do not exist here. On the private side it plays Tekton
// for the internal PipelineRuns: it signs the requested digest with an Ed25519 key that exists only
// in this object (never written to any cluster), reporting progress and results the way Tekton
// does. On the public side it completes the downstream TaskRuns by verifying the signature they
// received with the public key — real cryptography, but no containers run.
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { pipelineRuns, ResourceClient, taskRuns } from "../src/api/resources.ts";
import type { V1PipelineRun, V1TaskRun } from "../src/generated/tekton.ts";

export interface ExecutorEvents {
  onInternalRun(run: V1PipelineRun, signature: string): void;
  onDownstream(taskRun: V1TaskRun, verified: boolean): void;
}

export class LocalExecutor {
  readonly publicKeyPem: string;
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #privateRuns: ResourceClient<V1PipelineRun>;
  readonly #publicTaskRuns: ResourceClient<V1TaskRun> | undefined;
  readonly #privateNs: string;
  readonly #publicNs: string | undefined;
  readonly #done = new Set<string>();
  readonly #events: ExecutorEvents;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #inFlight: Promise<void> | undefined;

  constructor(opts: {
    privateKc: KubeConfig;
    privateNs: string;
    /** Where downstream TaskRuns are completed; without it (kcp: no Tekton there), none are. */
    publicKc?: KubeConfig;
    publicNs?: string;
    events: ExecutorEvents;
  }) {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
    this.publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
    this.#privateRuns = new ResourceClient<V1PipelineRun>(opts.privateKc, pipelineRuns, "isc-demo-executor");
    this.#publicTaskRuns = opts.publicKc
      ? new ResourceClient<V1TaskRun>(opts.publicKc, taskRuns, "isc-demo-executor")
      : undefined;
    this.#privateNs = opts.privateNs;
    this.#publicNs = opts.publicNs;
    this.#events = opts.events;
  }

  start(): void {
    const tick = async () => {
      try {
        await this.#runInternal();
        await this.#runDownstream();
      } catch {
        // transient API errors: the next tick tries again
      }
      // A tick still in flight when stop() ran must not schedule another (its calls fail fast
      // against stopped planes, so it would loop forever and keep the process alive).
      if (!this.#stopped) this.#timer = setTimeout(() => (this.#inFlight = tick()), 250);
    };
    this.#inFlight = tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#inFlight;
  }

  /** Verifies a base64 signature of `digest` with the private side's public key. */
  static verify(publicKeyPem: string, digest: string, signature: string): boolean {
    return verify(null, Buffer.from(digest), createPublicKey(publicKeyPem), Buffer.from(signature, "base64"));
  }

  async #runInternal(): Promise<void> {
    for (const run of (await this.#privateRuns.list(this.#privateNs)).items) {
      const name = run.metadata?.name as string;
      if (this.#done.has(name) || run.status?.completionTime) continue;
      const params = Object.fromEntries((run.spec?.params ?? []).map((p) => [p.name, String(p.value)]));
      const digest = params.digest ?? "";
      if (!run.status?.startTime) {
        await this.#privateRuns.patchStatus(this.#privateNs, name, {
          startTime: new Date().toISOString(),
          pipelineSpec: { tasks: [{ name: "sign", taskRef: { name: "sign" } }] },
          conditions: [running("Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 1, Skipped: 0")],
        });
        continue; // let the progress show before finishing
      }
      const signature = sign(null, Buffer.from(digest), this.#privateKey).toString("base64");
      await this.#privateRuns.patchStatus(this.#privateNs, name, {
        completionTime: new Date().toISOString(),
        results: [
          { name: "signature", value: signature },
          { name: "keyId", value: params.keyId ?? "" },
          { name: "result", value: "Success" },
        ],
        conditions: [
          {
            ...running("Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0"),
            status: "True",
            reason: "Succeeded",
          },
        ],
      });
      this.#done.add(name);
      this.#events.onInternalRun(run, signature);
    }
  }

  async #runDownstream(): Promise<void> {
    const publicTaskRuns = this.#publicTaskRuns;
    const publicNs = this.#publicNs;
    if (!publicTaskRuns || !publicNs) return;
    for (const tr of (await publicTaskRuns.list(publicNs)).items) {
      const name = tr.metadata?.name as string;
      if (this.#done.has(`public/${name}`) || tr.status?.completionTime) continue;
      const params = Object.fromEntries((tr.spec?.params ?? []).map((p) => [p.name, String(p.value)]));
      const verified =
        params.signature !== undefined && params.digest !== undefined
          ? verify(null, Buffer.from(params.digest), this.#publicKey, Buffer.from(params.signature, "base64"))
          : false;
      await publicTaskRuns.patchStatus(publicNs, name, {
        podName: "",
        startTime: new Date().toISOString(),
        completionTime: new Date().toISOString(),
        conditions: [
          {
            type: "Succeeded",
            status: verified ? "True" : "False",
            reason: verified ? "Succeeded" : "Failed",
            message: verified
              ? "signature verified (local executor)"
              : "signature did not verify (local executor)",
            lastTransitionTime: new Date().toISOString(),
          },
        ],
      });
      this.#done.add(`public/${name}`);
      this.#events.onDownstream(tr, verified);
    }
  }
}

function running(message: string) {
  return {
    type: "Succeeded",
    status: "Unknown",
    reason: "Running",
    message,
    lastTransitionTime: new Date().toISOString(),
  };
}
