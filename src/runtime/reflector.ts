// List-then-watch into an in-memory store, like client-go's reflector, but it never dies silently:
// any watch error restarts the watch with backoff, 410 Gone relists, and a watchdog restarts a watch
// that has gone quiet for longer than the server-side timeout it asked for. The list is a streaming
// watch-list where the server has one (objects arrive one per event, so reading the state costs one
// object's memory at a time however large tenants make them), else pages of a list.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { apiStatus, describeError } from "../api/errors.ts";
import { collectionPath, ResourceClient, type ResourceType } from "../api/resources.ts";
import { type WatchHandle, watch } from "../api/watch.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { Handler, Source } from "./source.ts";

export interface ReflectorOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  type: ResourceType;
  /** Undefined: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  /** e.g. metadata.name=x, where RBAC allows one object by name only. */
  fieldSelector?: string;
  /** The store's key of an object: "namespace/name" by default (objectKey). */
  key?: (obj: T) => string;
  /**
   * What of an object to keep in the cache (client-go's SetTransform): the whole object by default;
   * undefined keeps nothing (the object is not of interest and costs no memory, and no handler call).
   */
  transform?: (obj: T) => T | undefined;
  log: Logger;
  /** Server-side watch timeout; the watch is then re-opened from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  /** Objects per list page where the server has no watch-list (default 10). */
  pageSize?: number;
}

/**
 * Without a watch-list a list page is held whole (as text, then parsed): pages stay small, since a
 * tenant can make each object over a megabyte and place large ones after small ones, and one page is
 * read at a time in the whole process.
 */
const fallbackPageSize = 10;
let listing: Promise<void> = Promise.resolve();

/** Runs `read` after every page read started before it (a process-wide queue of page reads). */
function oneAtATime<T>(read: () => Promise<T>): Promise<T> {
  const result = listing.then(read);
  listing = result.then(
    () => undefined,
    () => undefined,
  );
  return result;
}

/** The bookmark that ends a watch-list's initial events. */
const initialEventsEnd = "k8s.io/initial-events-end";

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

/** Caches one kind (in one namespace, or all) and tells its subscribers ("namespace/name" keys). */
export class Reflector<T extends KubernetesObject> implements Source<T> {
  readonly #opts: ReflectorOptions<T>;
  readonly #client: ResourceClient<T>;
  readonly #store = new Map<string, T>();
  readonly #handlers: Handler<T>[] = [];
  #resourceVersion = "";
  #synced = Promise.withResolvers<void>();
  #hasSynced = false;
  #stopped = false;
  #watch: WatchHandle | undefined;
  #lastActivity = Date.now();
  #watchdog: NodeJS.Timeout | undefined;
  #failures = 0;
  /** Counters for metrics and tests. */
  readonly stats = { lists: 0, watches: 0, restarts: 0, events: 0 };

  /** Whether to read the state with a watch-list; false once the server refused one. */
  #streaming = true;
  /** The state must be read (again) before watching from a resourceVersion. */
  #needList = true;
  /**
   * A watch-list ended in an ERROR event before its initial events were all in (a server whose watch
   * cache lags answers "Too large resource version" after 3 s, again and again while it is loaded):
   * the next read is one paged list, which the server can answer from etcd, as client-go's reflector
   * falls back to a list, and watch-lists are tried again after it.
   */
  #listInPages = false;

  readonly #key: (obj: T) => string;

  constructor(opts: ReflectorOptions<T>) {
    this.#opts = opts;
    this.#key = opts.key ?? objectKey;
    this.#client = new ResourceClient<T>(opts.kubeConfig, opts.type);
  }

  subscribe(handler: Handler<T>): void {
    this.#handlers.push(handler);
  }

  #emit(key: string, obj: T, deleted: boolean): void {
    for (const handler of this.#handlers) handler(key, obj, deleted);
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
    const key = this.#key(obj);
    const cached = this.#store.get(key);
    if (!cached || !isNewerVersion(obj.metadata?.resourceVersion, cached.metadata?.resourceVersion)) return;
    const kept = this.#keep(obj);
    if (kept) this.#store.set(key, kept);
    else this.#store.delete(key);
  }

  #keep(obj: T): T | undefined {
    const trimmed = trimForCache(obj);
    return this.#opts.transform ? this.#opts.transform(trimmed) : trimmed;
  }

  /** The first list is in the store. */
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
    while (!this.#stopped) {
      try {
        if (this.#needList && (!this.#streaming || this.#listInPages)) await this.#relist();
        this.#listInPages = false;
        // Once the state is read, watches resume from the last resourceVersion seen.
        if (await this.#watchOnce(this.#needList)) this.#needList = true;
        this.#failures = 0;
      } catch (err) {
        if (this.#stopped) return;
        const status = apiStatus(err);
        if (this.#needList && this.#streaming && (status?.code === 400 || status?.code === 422)) {
          // A server without watch-lists (WatchList off, before Kubernetes 1.34, or a proxy that
          // does not pass them) refuses the parameters: list in pages from now on.
          this.#streaming = false;
          this.#opts.log.info({ resource: this.#opts.type.plural }, "no watch-list here; listing in pages");
          continue;
        }
        if (status?.code === 410) this.#needList = true;
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
      // The page is cut down to what the cache keeps before the next read starts.
      const page = await oneAtATime(async () => {
        const { items, metadata } = await this.#client.list(this.#opts.namespace, {
          labelSelector: this.#opts.labelSelector,
          fieldSelector: this.#opts.fieldSelector,
          limit: this.#opts.pageSize ?? fallbackPageSize,
          continue: next,
        });
        for (const item of items) {
          const kept = this.#keep(item);
          if (kept) fresh.set(this.#key(item), kept);
        }
        return metadata;
      });
      next = page.continue || undefined;
      resourceVersion = page.resourceVersion;
    } while (next);
    this.#replace(fresh, resourceVersion);
  }

  /** The state just read replaces the store; every key goes to the handler. */
  #replace(fresh: Map<string, T>, resourceVersion: string): void {
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
    const deleted = [...this.#store].filter(([key]) => !fresh.has(key));
    this.#store.clear();
    for (const [key, obj] of fresh) this.#store.set(key, obj);
    this.#resourceVersion = resourceVersion;
    this.#needList = false;
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#synced.resolve();
    }
    for (const [key, obj] of fresh) this.#emit(key, obj, false);
    for (const [key, obj] of deleted) this.#emit(key, obj, true);
  }

  /**
   * Watches until the watch ends; returns true when the state must be read again (410 Gone, or a
   * watch-list that ended before its initial events did). With `list`, it is a watch-list: the
   * current state first, as one event per object, up to a bookmark marking its end.
   */
  async #watchOnce(list: boolean): Promise<boolean> {
    const ended = Promise.withResolvers<boolean>();
    const path = collectionPath(this.#opts.type, this.#opts.namespace);
    const query = {
      ...(list
        ? { sendInitialEvents: true, resourceVersionMatch: "NotOlderThan" }
        : { resourceVersion: this.#resourceVersion }),
      allowWatchBookmarks: true,
      timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
      ...(this.#opts.labelSelector ? { labelSelector: this.#opts.labelSelector } : {}),
      ...(this.#opts.fieldSelector ? { fieldSelector: this.#opts.fieldSelector } : {}),
    };
    let initial: Map<string, T> | undefined = list ? new Map() : undefined;
    this.#lastActivity = Date.now();
    this.#opts.log.debug(
      {
        resource: this.#opts.type.plural,
        namespace: this.#opts.namespace,
        resourceVersion: list ? "(watch-list)" : this.#resourceVersion,
      },
      "watching",
    );
    this.#watch = await watch(
      this.#opts.kubeConfig,
      path,
      query,
      (type: string, obj: T) => {
        this.#lastActivity = Date.now();
        this.#failures = 0; // events flow: the next outage backs off from the start again
        if (initial && type === "ERROR") this.#listInPages = true;
        if (initial && type !== "ERROR") {
          if (type === "BOOKMARK") {
            if (obj.metadata?.annotations?.[initialEventsEnd] !== "true") return;
            this.#replace(initial, obj.metadata?.resourceVersion ?? "");
            initial = undefined;
          } else {
            const kept = type === "DELETED" ? undefined : this.#keep(obj);
            if (kept) initial.set(this.#key(obj), kept);
            else initial.delete(this.#key(obj));
          }
          return;
        }
        if (this.#onEvent(type as WatchEventType, obj)) {
          // Before the abort: it ends the watch (done) at once.
          ended.resolve(true);
          this.#watch?.abort();
        }
      },
      (err: unknown) => {
        // Aborted by us (stop, watchdog, relist), or the watch's 30 s inactivity timeout, which is
        // normal for a quiet namespace: a normal end, re-watch at once (no backoff).
        const name = (err as { name?: string } | null)?.name;
        if (err && !this.#stopped && name !== "AbortError" && name !== "TimeoutError") ended.reject(err);
        else ended.resolve(initial !== undefined);
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
    const key = this.#key(obj);
    const cached = this.#store.get(key);
    if (type === "DELETED") {
      this.#store.delete(key);
      const last = cached ?? this.#keep(obj);
      if (last) this.#emit(key, last, true);
      return false;
    }
    // An event older than a write we already observed would step the cache back.
    if (isNewerVersion(cached?.metadata?.resourceVersion, rv)) return false;
    const kept = this.#keep(obj);
    if (kept) {
      this.#store.set(key, kept);
      this.#emit(key, kept, false);
    } else if (cached) {
      this.#store.delete(key);
      this.#emit(key, cached, true);
    }
    return false;
  }
}
