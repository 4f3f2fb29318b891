// Rate limiters for the work queue, following client-go's `util/workqueue` defaults: a per-key
// exponential backoff combined with a global token bucket, the delay being the larger of the two.
// All times are milliseconds; `now()` is injectable so the limiters can be tested without waiting.

/** Decides how long a key waits before it is retried. */
export interface RateLimiter {
  /** Records one more failure of `key` and returns the delay (ms) before retrying it. */
  when(key: string): number;
  /** Stops tracking `key` (call it when the key was processed successfully). */
  forget(key: string): void;
  /** How many failures of `key` are currently recorded. */
  retries(key: string): number;
}

export type Clock = () => number;

export const monotonicNow: Clock = () => performance.now();

/** Per-key exponential backoff: base, 2*base, 4*base, ... capped at max. */
export class ExponentialBackoff implements RateLimiter {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #failures = new Map<string, number>();

  constructor(baseMs = 5, maxMs = 1_000_000) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    // 2 ** failures becomes Infinity for huge counts; Math.min still caps it.
    return Math.min(this.#baseMs * 2 ** failures, this.#maxMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  retries(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * Global token bucket (like golang.org/x/time/rate's Reserve): starts full with `burst` tokens, refills
 * at `qps` per second; each reservation takes a token, going into debt when none is left, and the delay
 * is the time until the debt is repaid. Keys are ignored: the bucket is shared. Unlike Reserve, the
 * debt is capped at one burst: a storm of failures (say, a tenant rewriting its own objects so that
 * every write conflicts) would otherwise delay every other key's retry without end; now by at most
 * burst ÷ qps.
 */
export class TokenBucket implements RateLimiter {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: Clock;
  #tokens: number;
  #last: number;

  constructor(qps = 10, burst = 100, now: Clock = monotonicNow) {
    this.#perMs = qps / 1000;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#last = now();
  }

  when(_key?: string): number {
    const t = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + Math.max(0, t - this.#last) * this.#perMs);
    this.#last = t;
    this.#tokens = Math.max(-this.#burst, this.#tokens - 1);
    return this.#tokens >= 0 ? 0 : -this.#tokens / this.#perMs;
  }

  forget(_key: string): void {}

  retries(_key: string): number {
    return 0;
  }
}

/** Combines limiters: the delay is the largest of theirs; forget/retries go to all of them. */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    // Every limiter is consulted (each records the failure / takes a token), as in client-go.
    return Math.max(0, ...this.#limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }

  retries(key: string): number {
    return Math.max(0, ...this.#limiters.map((l) => l.retries(key)));
  }
}

export interface ControllerRateLimiterOptions {
  /** First per-key backoff delay, ms (default 5). */
  baseDelayMs?: number;
  /** Largest per-key backoff delay, ms (default 1 000 000, i.e. 1000 s). */
  maxDelayMs?: number;
  /** Global refill rate, tokens per second (default 10). */
  qps?: number;
  /** Global bucket size (default 100). */
  burst?: number;
  /** Clock in ms (default `performance.now()`). */
  now?: Clock;
}

/** client-go's DefaultControllerRateLimiter: max(per-key backoff 5 ms..1000 s, bucket 10 qps burst 100). */
export function controllerRateLimiter(opts: ControllerRateLimiterOptions = {}): RateLimiter {
  return new MaxOfRateLimiter(
    new ExponentialBackoff(opts.baseDelayMs ?? 5, opts.maxDelayMs ?? 1_000_000),
    new TokenBucket(opts.qps ?? 10, opts.burst ?? 100, opts.now ?? monotonicNow),
  );
}
