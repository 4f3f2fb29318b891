// A controller work queue with client-go `util/workqueue` semantics:
// - keys are de-duplicated while they wait; a key is never handed to two workers at once;
// - adding a key that is being processed marks it dirty, and it is queued again (once) on done(key);
// - addAfter() delays an add (one unref'd timer over a min-heap; the earliest schedule of a key wins);
//   cancelAfter() drops it (a reconcile that needs no later look: a deleted object leaves nothing);
// - addRateLimited() delays by the rate limiter (default: per-key backoff 5 ms..1000 s, max'ed with a
//   global 10 qps / burst 100 token bucket); forget() resets a key's backoff.
// Shutdown follows client-go: shutDown() stops accepting adds and drops delayed adds, but get() keeps
// handing out keys already queued until the queue is empty, and only then resolves undefined (waiting
// getters resolve undefined at once if nothing is queued). Keys dirtied before shutdown are still
// re-queued on done(). shutDownWithDrain() additionally waits until no key is being processed.
// To stop workers immediately instead (e.g. on losing leadership), abort the signal passed to get().
import {
  type Clock,
  type ControllerRateLimiterOptions,
  controllerRateLimiter,
  monotonicNow,
  type RateLimiter,
} from "./ratelimit.ts";

/** Metrics hooks (e.g. for workqueue_* Prometheus metrics); every callback is optional. */
export interface QueueObserver {
  /** A key was accepted (not counted when de-duplicated): workqueue_adds_total. */
  onAdd?(key: string): void;
  /** The number of keys waiting (not processing) changed: workqueue_depth. */
  onDepth?(depth: number): void;
  /** addRateLimited() was called: workqueue_retries_total. */
  onRetry?(key: string): void;
  /** Time a key waited between add and get: workqueue_queue_duration_seconds. */
  onQueueLatency?(seconds: number): void;
  /** Time between get and done: workqueue_work_duration_seconds. */
  onWorkDuration?(seconds: number): void;
}

export interface WorkQueueOptions extends ControllerRateLimiterOptions {
  /** Replaces the default controller rate limiter (then baseDelayMs/maxDelayMs/qps/burst are unused). */
  rateLimiter?: RateLimiter;
  observer?: QueueObserver;
  // `now` (inherited) is also used for delays and metrics here, so it must advance with real time.
}

interface Delayed {
  key: string;
  at: number;
  seq: number;
}

const earlier = (a: Delayed, b: Delayed) => a.at < b.at || (a.at === b.at && a.seq < b.seq);

export class WorkQueue {
  readonly #now: Clock;
  readonly #limiter: RateLimiter;
  readonly #observer: QueueObserver;
  /** Keys waiting to be handed out, in FIFO order, with the time they were added. */
  readonly #queued = new Map<string, number>();
  /** Keys being processed, with the time processing started. */
  readonly #processing = new Map<string, number>();
  /** Keys added while being processed, with the time of that add; queued again on done(). */
  readonly #dirty = new Map<string, number>();
  readonly #getters: ((key: string | undefined) => void)[] = [];
  readonly #drainWaiters: (() => void)[] = [];
  /** Delayed adds: the current entry per key, and a min-heap that may also hold superseded entries. */
  readonly #delayed = new Map<string, Delayed>();
  readonly #heap: Delayed[] = [];
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.#now = opts.now ?? monotonicNow;
    this.#limiter = opts.rateLimiter ?? controllerRateLimiter({ ...opts, now: this.#now });
    this.#observer = opts.observer ?? {};
  }

  /** Number of keys waiting to be handed out (excludes keys being processed and delayed adds). */
  len(): number {
    return this.#queued.size;
  }

  /** Number of keys handed out and not yet done(). */
  processingLen(): number {
    return this.#processing.size;
  }

  /** Number of pending delayed adds (addAfter / addRateLimited). */
  delayedLen(): number {
    return this.#delayed.size;
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#queued.has(key) || this.#dirty.has(key)) return;
    if (this.#processing.has(key)) {
      this.#dirty.set(key, this.#now());
    } else {
      this.#queued.set(key, this.#now());
      this.#observer.onDepth?.(this.#queued.size);
    }
    this.#observer.onAdd?.(key);
    this.#dispatch();
  }

  /**
   * Resolves with the next key, marking it as being processed (call done(key) afterwards); waits when
   * none is queued. Resolves undefined once shut down and empty, or when `signal` is aborted.
   */
  get(signal?: AbortSignal): Promise<string | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (this.#queued.size > 0) return Promise.resolve(this.#take());
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const onAbort = () => {
        const i = this.#getters.indexOf(getter);
        if (i >= 0) this.#getters.splice(i, 1);
        resolve(undefined);
      };
      const getter = (key: string | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(key);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#getters.push(getter);
    });
  }

  /** Marks processing of `key` finished; queues it again if it was added meanwhile. */
  done(key: string): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#observer.onWorkDuration?.((this.#now() - started) / 1000);
    const addedAt = this.#dirty.get(key);
    if (addedAt !== undefined) {
      this.#dirty.delete(key);
      this.#queued.set(key, addedAt);
      this.#observer.onDepth?.(this.#queued.size);
      this.#dispatch();
    }
    if (this.#processing.size === 0) {
      for (const resolve of this.#drainWaiters.splice(0)) resolve();
    }
  }

  /** Adds `key` after `ms` milliseconds (at once if ms <= 0). If already scheduled, the earlier time wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.#now() + ms;
    const current = this.#delayed.get(key);
    if (current !== undefined && current.at <= at) return;
    const entry = { key, at, seq: this.#seq++ };
    this.#delayed.set(key, entry);
    this.#heapPush(entry);
    this.#compact();
    this.#schedule();
  }

  /** Drops the delayed add of `key`, if any. */
  cancelAfter(key: string): void {
    if (!this.#delayed.delete(key)) return;
    this.#compact();
    this.#schedule();
  }

  /** Adds `key` after the rate limiter's delay for it (counting one more failure). */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    this.#observer.onRetry?.(key);
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Resets the failure count (backoff) of `key`; call it after a successful reconcile. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  /** How many times `key` has been rate-limited since it was last forgotten. */
  retries(key: string): number {
    return this.#limiter.retries(key);
  }

  /** Stops accepting adds, drops delayed adds and their timer, and wakes idle getters (see top). */
  shutDown(): void {
    this.#shuttingDown = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    this.#delayed.clear();
    this.#heap.length = 0;
    this.#dispatch();
  }

  /** shutDown(), then resolves once no key is being processed. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #take(): string {
    const [key, addedAt] = this.#queued.entries().next().value as [string, number];
    this.#queued.delete(key);
    const t = this.#now();
    this.#processing.set(key, t);
    this.#observer.onDepth?.(this.#queued.size);
    this.#observer.onQueueLatency?.((t - addedAt) / 1000);
    return key;
  }

  /** Hands queued keys to waiting getters; once shut down with nothing queued, releases them all. */
  #dispatch(): void {
    while (this.#getters.length > 0 && this.#queued.size > 0) {
      this.#getters.shift()?.(this.#take());
    }
    if (this.#shuttingDown && this.#queued.size === 0) {
      for (const getter of this.#getters.splice(0)) getter(undefined);
    }
  }

  /** Superseded entries stay in the heap until they come up (days, for a long requeue): rebuilt from
   *  the current ones before they outnumber them, so the heap stays within twice the delayed keys. */
  #compact(): void {
    if (this.#heap.length <= 2 * this.#delayed.size + 64) return;
    const current = [...this.#delayed.values()].sort((a, b) => (earlier(a, b) ? -1 : 1));
    this.#heap.splice(0, this.#heap.length, ...current); // a sorted array is a min-heap
  }

  /** Number of heap entries, superseded ones included (for tests of the bound above). */
  heapLen(): number {
    return this.#heap.length;
  }

  /** Arms the single timer for the earliest current delayed add, skipping superseded heap entries. */
  #schedule(): void {
    let top = this.#heap[0];
    while (top !== undefined && this.#delayed.get(top.key) !== top) {
      this.#heapPop();
      top = this.#heap[0];
    }
    if (top === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= top.at) return;
    clearTimeout(this.#timer);
    this.#timerAt = top.at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, top.at - this.#now()));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const t = this.#now();
    for (let top = this.#heap[0]; top !== undefined && top.at <= t; top = this.#heap[0]) {
      this.#heapPop();
      if (this.#delayed.get(top.key) !== top) continue;
      this.#delayed.delete(top.key);
      this.add(top.key);
    }
    this.#schedule();
  }

  #heapPush(entry: Delayed): void {
    const h = this.#heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(entry, h[parent] as Delayed)) break;
      h[i] = h[parent] as Delayed;
      i = parent;
    }
    h[i] = entry;
  }

  #heapPop(): void {
    const h = this.#heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= h.length) break;
      const right = left + 1;
      const child = right < h.length && earlier(h[right] as Delayed, h[left] as Delayed) ? right : left;
      if (!earlier(h[child] as Delayed, last)) break;
      h[i] = h[child] as Delayed;
      i = child;
    }
    h[i] = last;
  }
}
