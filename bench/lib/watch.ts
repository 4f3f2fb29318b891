// A watch that timestamps every event on arrival (performance.now()) and keeps going until stopped:
// a watch the server (or client-node's 30 s inactivity timer) ends is re-opened from the last
// resourceVersion; 410 Gone re-opens from "now" (the handlers only record first sightings, so the
// replayed ADDED events are harmless).
import { type KubeConfig, type KubernetesObject, Watch } from "@kubernetes/client-node";

export type WatchHandler<T> = (type: string, obj: T, at: number) => void;

export class TimedWatch<T extends KubernetesObject> {
  readonly #kc: KubeConfig;
  readonly #path: string;
  readonly #labelSelector: string | undefined;
  readonly #handler: WatchHandler<T>;
  #resourceVersion: string | undefined;
  #abort: AbortController | undefined;
  #stopped = false;
  #restarts = 0;

  constructor(kc: KubeConfig, path: string, labelSelector: string | undefined, handler: WatchHandler<T>) {
    this.#kc = kc;
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
    this.#abort?.abort();
  }

  async #loop(established: PromiseWithResolvers<void>): Promise<void> {
    let first = true;
    let failures = 0;
    while (!this.#stopped && failures < 50) {
      let error: unknown;
      const ended = Promise.withResolvers<void>();
      try {
        this.#abort = await new Watch(this.#kc).watch(
          this.#path,
          {
            allowWatchBookmarks: true,
            timeoutSeconds: 600,
            resourceVersion: this.#resourceVersion,
            labelSelector: this.#labelSelector,
          },
          (type: string, obj: T) => {
            const at = performance.now();
            if (type === "ERROR") {
              if ((obj as { code?: number }).code === 410) this.#resourceVersion = undefined;
              return;
            }
            const rv = obj.metadata?.resourceVersion;
            if (rv) this.#resourceVersion = rv;
            if (type !== "BOOKMARK") this.#handler(type, obj, at);
          },
          (err: unknown) => {
            if (err && (err as { name?: string }).name !== "AbortError") error = err;
            ended.resolve();
          },
        );
        // client-node reports a failed connect through done(err) before resolving.
        if (error === undefined) {
          failures = 0;
          if (first) established.resolve();
          first = false;
        }
        await ended.promise;
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
    if (first) established.reject(new Error(`watch ${this.#path} could not be established`));
  }
}
