// Kubernetes Events on the objects we act on. Recording is best effort: a failed Event never fails a
// reconcile (it is logged instead).
import { CoreV1Api, type CoreV1Event, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { describeError } from "./errors.ts";

export type EventType = "Normal" | "Warning";

export class EventRecorder {
  readonly #api: CoreV1Api;
  readonly #component: string;
  readonly #log: Logger;

  constructor(kubeConfig: KubeConfig, log: Logger, component = "internal-service-controller") {
    this.#api = kubeConfig.makeApiClient(CoreV1Api);
    this.#component = component;
    this.#log = log;
  }

  async record(obj: KubernetesObject, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = obj.metadata?.namespace as string;
    const now = new Date();
    const body: CoreV1Event = {
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
    };
    try {
      await this.#api.createNamespacedEvent({ namespace, body });
    } catch (err) {
      this.#log.warn({ reason, err: describeError(err) }, "could not record event");
    }
  }
}
