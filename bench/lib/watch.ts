// A watch that timestamps every event on arrival (performance.now()) and keeps going until stopped:
// a watch the server ends is re-opened from the last resourceVersion; 410 Gone re-opens from "now"
// (the handlers only record first sightings, so the replayed ADDED events are harmless). It streams
// with the bench's plain HTTPS client, not client-node's Watch: the bench shares the cores with what
// it measures, and client-node's web-stream and readline layers cost it about a third of its CPU in a
// burst.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { RawClient, type RawStream, rawTargetOf } from "./http.ts";

export type WatchHandler<T> = (type: string, obj: T, at: number) => void;

export class TimedWatch<T extends KubernetesObject> {
  readonly #client: RawClient;
  readonly #path: string;
  readonly #labelSelector: string | undefined;
  readonly #handler: WatchHandler<T>;
  #resourceVersion: string | undefined;
  #stream: RawStream | undefined;
  #stopped = false;
  #restarts = 0;

  constructor(kc: KubeConfig, path: string, labelSelector: string | undefined, handler: WatchHandler<T>) {
    this.#client = new RawClient(rawTargetOf(kc), 4);
    this.#path = path;
    this.#labelSelector = labelSelector;
    this.#handler = handler;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** Resolves once the first watch is established. */
  start(): Promise<void> {
    const established = Promise.withResolvers<void>();
    void this.#loop(established);
    return established.promise;
  }

  stop(): void {
    this.#stopped = true;
    this.#stream?.abort();
    this.#client.close();
  }

  #query(): string {
    const q = new URLSearchParams({ watch: "true", allowWatchBookmarks: "true", timeoutSeconds: "600" });
    if (this.#resourceVersion) q.set("resourceVersion", this.#resourceVersion);
    if (this.#labelSelector) q.set("labelSelector", this.#labelSelector);
    return `${this.#path}?${q}`;
  }

  #onValue(value: unknown): void {
    const at = performance.now();
    const { type, object: obj } = value as { type: string; object: T };
    if (type === "ERROR") {
      if ((obj as { code?: number }).code === 410) this.#resourceVersion = undefined;
      return;
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (type !== "BOOKMARK") this.#handler(type, obj, at);
  }

  async #loop(established: PromiseWithResolvers<void>): Promise<void> {
    let first = true;
    let failures = 0;
    let error: unknown;
    while (!this.#stopped && failures < 50) {
      error = undefined;
      try {
        this.#stream = await this.#client.stream(this.#query(), (v) => this.#onValue(v));
        failures = 0;
        if (first) established.resolve();
        first = false;
        await this.#stream.ended;
      } catch (err) {
        error = err;
      }
      if (this.#stopped) return;
      this.#restarts++;
      if (error !== undefined) {
        failures++;
        if (first && failures >= 20) {
          established.reject(error);
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * Math.min(failures, 10)));
      }
    }
    if (first)
      established.reject(new Error(`watch ${this.#path} could not be established`, { cause: error }));
  }
}
