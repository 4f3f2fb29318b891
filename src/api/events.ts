// Kubernetes Events on the objects we act on. Recording is best effort and off the reconcile's path:
// record() queues the Event and returns; a few background sends deliver it. A failed Event never
// fails a reconcile (it is logged), and under overload the oldest queued Events are dropped rather
// than memory growing without bound (client-go's broadcaster drops the same way).
import type { CoreV1Event, KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { describeError } from "./errors.ts";
import { call } from "./http.ts";

export type EventType = "Normal" | "Warning";

const maxQueued = 1000;
const maxSending = 16;

export class EventRecorder {
  readonly #kc: KubeConfig;
  readonly #component: string;
  readonly #log: Logger;
  readonly #queued: CoreV1Event[] = [];
  #sending = 0;
  #drained: PromiseWithResolvers<void> | undefined;
  /** Events dropped because the queue was full. */
  dropped = 0;

  constructor(kubeConfig: KubeConfig, log: Logger, component = "internal-service-controller") {
    this.#kc = kubeConfig;
    this.#component = component;
    this.#log = log;
  }

  record(obj: KubernetesObject, type: EventType, reason: string, message: string): void {
    const namespace = obj.metadata?.namespace as string;
    const now = new Date();
    if (this.#queued.length >= maxQueued) {
      this.#queued.shift();
      if (this.dropped++ % 100 === 0) this.#log.warn({ dropped: this.dropped }, "event queue full; dropping");
    }
    this.#queued.push({
      // kcp's virtual workspaces refuse an Event without its kind (kube-apiserver defaults it).
      apiVersion: "v1",
      kind: "Event",
      metadata: { generateName: `${obj.metadata?.name}.`, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.metadata?.name,
        namespace,
        uid: obj.metadata?.uid,
        resourceVersion: obj.metadata?.resourceVersion,
      },
      type,
      reason,
      // The API server limits Event messages to 1 KiB.
      message: message.length > 1000 ? `${message.slice(0, 997)}...` : message,
      source: { component: this.#component },
      reportingComponent: this.#component,
      reportingInstance: this.#component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
    this.#pump();
  }

  /** Resolves when every queued Event was sent (or failed), or after timeoutMs: for a clean stop. */
  async flush(timeoutMs = 5_000): Promise<void> {
    if (this.#sending === 0 && this.#queued.length === 0) return;
    this.#drained ??= Promise.withResolvers<void>();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#drained.promise,
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  #pump(): void {
    while (this.#sending < maxSending && this.#queued.length > 0) {
      const body = this.#queued.shift() as CoreV1Event;
      this.#sending++;
      void this.#send(body).finally(() => {
        this.#sending--;
        this.#pump();
        if (this.#sending === 0 && this.#queued.length === 0) {
          this.#drained?.resolve();
          this.#drained = undefined;
        }
      });
    }
  }

  async #send(body: CoreV1Event): Promise<void> {
    try {
      await call(this.#kc, "POST", `/api/v1/namespaces/${body.metadata?.namespace}/events`, { body });
    } catch (err) {
      this.#log.warn({ reason: body.reason, err: describeError(err) }, "could not record event");
    }
  }
}
