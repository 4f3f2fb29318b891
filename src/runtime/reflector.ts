// List-then-watch into an in-memory store, like client-go's reflector, but it never dies silently:
// any watch error restarts the watch with backoff, 410 Gone relists, and a watchdog restarts a watch
// that has gone quiet for longer than the server-side timeout it asked for. Handlers get only keys.
import { type KubeConfig, type KubernetesObject, Watch } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { apiStatus, describeError } from "../api/errors.ts";
import { collectionPath, ResourceClient, type ResourceType } from "../api/resources.ts";

export interface ReflectorOptions {
  kubeConfig: KubeConfig;
  type: ResourceType;
  /** Undefined: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  /** Called with "namespace/name" whenever that object was added, changed or deleted. */
  onChange: (key: string) => void;
  log: Logger;
  /** Server-side watch timeout; the watch is then re-opened from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  pageSize?: number;
}

type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export const objectKey = (obj: KubernetesObject) =>
  `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration";

/**
 * Drops what no reconcile reads and what costs the most memory per cached object: managedFields
 * (often larger than the object itself) and kubectl's last-applied copy of the whole object.
 */
export function trimForCache<T extends KubernetesObject>(obj: T): T {
  const meta = obj.metadata;
  if (!meta) return obj;
  delete meta.managedFields;
  if (meta.annotations?.[lastApplied] !== undefined) {
    const { [lastApplied]: _, ...rest } = meta.annotations;
    meta.annotations = rest;
  }
  return obj;
}

/**
 * Whether `a` is a newer version than `b`. Resource versions are etcd revisions (decimal integers);
 * like client-go's mutation cache we compare them as such, and treat anything else as not newer.
 */
export function isNewerVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return a.length !== b.length ? a.length > b.length : a > b;
}

export class Reflector<T extends KubernetesObject> {
  readonly #opts: ReflectorOptions;
  readonly #client: ResourceClient<T>;
  readonly #store = new Map<string, T>();
  #resourceVersion = "";
  #synced = Promise.withResolvers<void>();
  #hasSynced = false;
  #stopped = false;
  #watch: AbortController | undefined;
  #lastActivity = Date.now();
  #watchdog: NodeJS.Timeout | undefined;
  #failures = 0;
  /** Counters for metrics and tests. */
  readonly stats = { lists: 0, watches: 0, restarts: 0, events: 0 };

  constructor(opts: ReflectorOptions) {
    this.#opts = opts;
    this.#client = new ResourceClient<T>(opts.kubeConfig, opts.type);
  }

  get(key: string): T | undefined {
    return this.#store.get(key);
  }

  list(): T[] {
    return [...this.#store.values()];
  }

  /**
   * Stores the result of our own write before its watch event arrives, so that the reconcile its
   * event triggers does not act on the older copy (and conflict). Only replaces a cached object
   * with a newer version of it: it never adds one, so an object deleted meanwhile stays deleted.
   */
  observe(obj: T): void {
    const key = objectKey(obj);
    const cached = this.#store.get(key);
    if (cached && isNewerVersion(obj.metadata?.resourceVersion, cached.metadata?.resourceVersion))
      this.#store.set(key, trimForCache(obj));
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** Starts listing and watching; resolves once the first list is in the store. */
  start(): Promise<void> {
    void this.#run();
    const timeoutMs = (this.#opts.watchTimeoutSeconds ?? 300) * 1000 + 30_000;
    this.#watchdog = setInterval(() => {
      if (this.#watch && Date.now() - this.#lastActivity > timeoutMs) {
        this.#opts.log.warn({ resource: this.#opts.type.plural }, "watch went quiet; restarting it");
        this.#watch.abort();
      }
    }, 5_000);
    this.#watchdog.unref();
    return this.#synced.promise;
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    this.#watch?.abort();
  }

  async #run(): Promise<void> {
    let needList = true;
    while (!this.#stopped) {
      try {
        if (needList) {
          await this.#relist();
          needList = false; // from here on, resume watches from the last resourceVersion seen
        }
        needList = await this.#watchOnce();
        this.#failures = 0;
      } catch (err) {
        if (this.#stopped) return;
        const status = apiStatus(err);
        needList = needList || status?.code === 410;
        this.#failures++;
        this.stats.restarts++;
        const delay = Math.min(30_000, 200 * 2 ** Math.min(this.#failures, 8)) * (0.5 + Math.random() / 2);
        this.#opts.log.warn(
          {
            resource: this.#opts.type.plural,
            namespace: this.#opts.namespace,
            err: describeError(err),
            retryInMs: Math.round(delay),
          },
          "list/watch failed; retrying",
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async #relist(): Promise<void> {
    const fresh = new Map<string, T>();
    let next: string | undefined;
    let resourceVersion = "";
    do {
      const page = await this.#client.list(this.#opts.namespace, {
        labelSelector: this.#opts.labelSelector,
        limit: this.#opts.pageSize ?? 500,
        continue: next,
      });
      for (const item of page.items) fresh.set(objectKey(item), trimForCache(item));
      next = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (next);
    this.stats.lists++;
    this.#opts.log.debug(
      {
        resource: this.#opts.type.plural,
        namespace: this.#opts.namespace,
        resourceVersion,
        items: fresh.size,
      },
      "listed",
    );
    // Every listed key goes to the handler, changed or not (client-go's Replace does the same):
    // events were lost while the watch was down, and comparing versions with the store cannot tell
    // which — the store also holds our own writes, whose events may be among the lost ones.
    const deleted = [...this.#store.keys()].filter((key) => !fresh.has(key));
    this.#store.clear();
    for (const [key, obj] of fresh) this.#store.set(key, obj);
    this.#resourceVersion = resourceVersion;
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#synced.resolve();
    }
    for (const key of [...fresh.keys(), ...deleted]) this.#opts.onChange(key);
  }

  /** Watches until the watch ends; returns true when a relist is needed (410 Gone). */
  async #watchOnce(): Promise<boolean> {
    const ended = Promise.withResolvers<boolean>();
    const path = collectionPath(this.#opts.type, this.#opts.namespace);
    const query = {
      resourceVersion: this.#resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
      ...(this.#opts.labelSelector ? { labelSelector: this.#opts.labelSelector } : {}),
    };
    this.#lastActivity = Date.now();
    this.#opts.log.debug(
      {
        resource: this.#opts.type.plural,
        namespace: this.#opts.namespace,
        resourceVersion: this.#resourceVersion,
      },
      "watching",
    );
    this.#watch = await new Watch(this.#opts.kubeConfig).watch(
      path,
      query,
      (type: string, obj: T) => {
        this.#lastActivity = Date.now();
        this.#failures = 0; // events flow: the next outage backs off from the start again
        if (this.#onEvent(type as WatchEventType, obj)) {
          this.#watch?.abort();
          ended.resolve(true);
        }
      },
      (err: unknown) => {
        // Aborted by us (stop, watchdog, relist), or client-node's 30 s inactivity timeout, which is
        // normal for a quiet namespace: a normal end, re-watch at once (no backoff).
        const name = (err as { name?: string } | null)?.name;
        if (err && !this.#stopped && name !== "AbortError" && name !== "TimeoutError") ended.reject(err);
        else ended.resolve(false);
      },
    );
    // Not a sign of health by itself: a refused or failed watch also returns here (through done).
    this.stats.watches++;
    return ended.promise;
  }

  /** Returns true when the watch must stop and relist. */
  #onEvent(type: WatchEventType, obj: T): boolean {
    this.stats.events++;
    if (type === "ERROR") {
      const status = obj as unknown as { code?: number; message?: string };
      this.#opts.log.info(
        { resource: this.#opts.type.plural, code: status.code, message: status.message },
        "watch error event",
      );
      return true;
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (type === "BOOKMARK") return false;
    const key = objectKey(obj);
    if (type === "DELETED") this.#store.delete(key);
    else {
      // An event older than a write we already observed would step the cache back.
      const cached = this.#store.get(key);
      if (isNewerVersion(cached?.metadata?.resourceVersion, rv)) return false;
      this.#store.set(key, trimForCache(obj));
    }
    this.#opts.onChange(key);
    return false;
  }
}
