import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { runController } from "../../src/runtime/controller.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { type QueueObserver, WorkQueue } from "../../src/runtime/queue.ts";

/** `n` workers that get keys and call `handler`, always calling done(key) after. */
async function runWorkers(
  queue: WorkQueue,
  n: number,
  handler: (key: string) => Promise<void>,
): Promise<void> {
  const worker = async () => {
    for (let key = await queue.get(); key !== undefined; key = await queue.get()) {
      try {
        await handler(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
}

import { controllerRateLimiter, ExponentialBackoff, TokenBucket } from "../../src/runtime/ratelimit.ts";

/** Records whether (and with what) a promise has settled, to assert that it has not. */
function track<T>(p: Promise<T>): { settled: boolean; value: T | undefined } {
  const state: { settled: boolean; value: T | undefined } = { settled: false, value: undefined };
  void p.then((v) => {
    state.settled = true;
    state.value = v;
  });
  return state;
}

/** Awaits `p`, failing the test if it takes longer than `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const refedTimers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("WorkQueue", () => {
  test("de-duplicates keys waiting in the queue and hands them out in FIFO order", async () => {
    const q = new WorkQueue();
    for (const k of ["c", "a", "c", "b", "a"]) q.add(k);
    assert.equal(q.len(), 3);
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ["c", "a", "b"]);
    assert.equal(q.len(), 0);
    assert.equal(q.processingLen(), 3);
  });

  test("a key added while processing is re-queued exactly once, after done()", async () => {
    const q = new WorkQueue();
    q.add("a");
    assert.equal(await q.get(), "a");
    q.add("a");
    q.add("a");
    q.add("a");
    assert.equal(q.len(), 0, "not queued while being processed");
    q.done("a");
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), "a");
    q.done("a");
    assert.equal(q.len(), 0, "re-queued only once");
    assert.equal(q.processingLen(), 0);
  });

  test("never hands a key to two waiting getters at once", async () => {
    const q = new WorkQueue();
    const getters = [track(q.get()), track(q.get()), track(q.get())];
    q.add("a");
    await tick();
    assert.deepEqual(
      getters.map((g) => g.value),
      ["a", undefined, undefined],
    );
    q.add("a"); // dirty: must not reach the second getter while "a" is processing
    await tick();
    assert.equal(getters[1]?.settled, false);
    q.done("a");
    await tick();
    assert.equal(getters[1]?.value, "a");
    assert.equal(getters[2]?.settled, false);
    q.add("b");
    await tick();
    assert.equal(getters[2]?.value, "b");
  });

  test("concurrent workers never process the same key at once", async () => {
    const q = new WorkQueue();
    const active = new Set<string>();
    let maxActive = 0;
    let handled = 0;
    const overlaps: string[] = [];
    for (let i = 0; i < 5; i++) q.add(`k${i}`);
    await within(
      runWorkers(q, 4, async (key) => {
        if (active.has(key)) overlaps.push(key); // (a throw here would be swallowed by runWorkers)
        active.add(key);
        maxActive = Math.max(maxActive, active.size);
        handled++;
        q.add(key); // re-add self while processing
        q.add(`k${(handled * 7) % 5}`);
        await tick();
        active.delete(key);
        if (handled >= 200) q.shutDown();
      }),
      2000,
      "workers to finish",
    );
    assert.ok(handled >= 200);
    assert.deepEqual(overlaps, [], "no key processed twice at once");
    assert.ok(maxActive > 1, "workers did run concurrently");
    assert.equal(q.processingLen(), 0);
  });

  test("addAfter delivers keys in due order", async () => {
    const q = new WorkQueue();
    q.addAfter("a", 30);
    q.addAfter("b", 10);
    q.addAfter("c", 20);
    assert.equal(q.len(), 0);
    assert.equal(q.delayedLen(), 3);
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await within(q.get(), 1000, "delayed key"));
    assert.deepEqual(got, ["b", "c", "a"]);
    assert.equal(q.delayedLen(), 0);
    q.addAfter("now", 0);
    assert.equal(q.len(), 1, "a zero delay adds at once");
  });

  test("addAfter: the earliest schedule of a key wins", async () => {
    const q = new WorkQueue();
    const start = performance.now();
    q.addAfter("x", 60_000);
    q.addAfter("x", 10); // earlier: replaces
    q.addAfter("y", 15);
    q.addAfter("y", 60_000); // later: ignored
    assert.equal(q.delayedLen(), 2);
    assert.deepEqual(await within(Promise.all([q.get(), q.get()]), 1000, "both keys"), ["x", "y"]);
    assert.ok(performance.now() - start >= 9, "not delivered before its delay");
    assert.equal(q.delayedLen(), 0, "no later schedule left pending");
    q.done("x");
    q.done("y");
    assert.equal(q.len(), 0);
  });

  test("cancelAfter drops a delayed add; the heap stays within twice the delayed keys", async () => {
    const q = new WorkQueue();
    q.addAfter("a", 10);
    q.addAfter("b", 20);
    q.cancelAfter("a");
    q.cancelAfter("missing");
    assert.equal(q.delayedLen(), 1);
    assert.equal(await within(q.get(), 1000, "b"), "b");
    assert.equal(q.len(), 0, "a never came");
    for (let i = 0; i < 10_000; i++) q.addAfter(`k${i}`, 86_400_000);
    for (let i = 0; i < 10_000; i++) q.cancelAfter(`k${i}`);
    assert.equal(q.delayedLen(), 0);
    assert.ok(q.heapLen() <= 64, `heap ${q.heapLen()} after every key was cancelled`);
    for (let i = 0; i < 10_000; i++) q.addAfter("x", 86_400_000 - i); // each earlier: supersedes
    assert.ok(q.heapLen() <= 2 + 64, `heap ${q.heapLen()} for one key rescheduled 10,000 times`);
    q.shutDown();
  });

  test("delay timers do not keep the process alive and are cleared on shutdown", async () => {
    const q = new WorkQueue();
    const before = refedTimers();
    q.addAfter("late", 60_000);
    q.addRateLimited("retry");
    assert.equal(refedTimers(), before, "timer is unref'd");
    const waiting = q.get();
    q.shutDown();
    assert.equal(await waiting, undefined);
    assert.equal(q.delayedLen(), 0);
    q.add("after");
    q.addAfter("after", 1);
    assert.equal(q.len() + q.delayedLen(), 0, "adds ignored after shutdown");
    assert.equal(await q.get(), undefined);
  });

  test("shutDown lets queued keys drain, then get() resolves undefined", async () => {
    const q = new WorkQueue();
    q.add("a");
    q.add("b");
    q.shutDown();
    assert.equal(q.isShuttingDown(), true);
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ["a", "b", undefined]);
  });

  test("shutDownWithDrain waits for in-flight keys, which are still re-queued if dirty", async () => {
    const q = new WorkQueue();
    q.add("a");
    assert.equal(await q.get(), "a");
    q.add("a"); // dirty before shutdown
    const drained = track(q.shutDownWithDrain());
    await tick();
    assert.equal(drained.settled, false, "waits for a");
    q.done("a");
    await tick();
    assert.equal(drained.settled, true);
    assert.equal(await q.get(), "a", "dirty key re-queued");
    q.done("a");
    assert.equal(await q.get(), undefined);
  });

  test("an aborted signal releases a waiting get without losing later keys", async () => {
    const q = new WorkQueue();
    const ac = new AbortController();
    const waiting = q.get(ac.signal);
    ac.abort();
    assert.equal(await waiting, undefined);
    q.add("a");
    assert.equal(q.len(), 1, "the aborted getter did not take the key");
    assert.equal(await q.get(ac.signal), undefined, "already aborted");
    assert.equal(await q.get(), "a");
  });

  test("addRateLimited backs off per key; forget resets; retries counts", async () => {
    const retried: string[] = [];
    const q = new WorkQueue({ baseDelayMs: 5, observer: { onRetry: (k) => retried.push(k) } });
    q.addRateLimited("a");
    assert.equal(q.len(), 0, "delayed, not immediate");
    assert.equal(await within(q.get(), 1000, "rate-limited key"), "a");
    q.addRateLimited("a");
    q.done("a");
    assert.equal(await within(q.get(), 1000, "second retry"), "a");
    assert.equal(q.retries("a"), 2);
    assert.equal(q.retries("b"), 0);
    q.forget("a");
    assert.equal(q.retries("a"), 0);
    assert.deepEqual(retried, ["a", "a"]);
  });

  test("observer sees adds, depth, latency and work duration", async () => {
    const seen = {
      adds: [] as string[],
      depth: [] as number[],
      latency: [] as number[],
      work: [] as number[],
    };
    const observer: QueueObserver = {
      onAdd: (k) => seen.adds.push(k),
      onDepth: (n) => seen.depth.push(n),
      onQueueLatency: (s) => seen.latency.push(s),
      onWorkDuration: (s) => seen.work.push(s),
    };
    const q = new WorkQueue({ observer });
    q.add("a");
    q.add("b");
    q.add("a"); // de-duplicated: not counted
    assert.equal(await q.get(), "a");
    q.add("a"); // dirty: counted, depth unchanged
    q.done("a");
    assert.deepEqual(seen.adds, ["a", "b", "a"]);
    assert.deepEqual(seen.depth, [1, 2, 1, 2]);
    assert.equal(seen.latency.length, 1);
    assert.equal(seen.work.length, 1);
    assert.ok((seen.latency[0] ?? -1) >= 0 && (seen.work[0] ?? -1) >= 0);
  });

  test("a controller re-queues a key whose reconcile throws, with backoff, and forgets it on success", async () => {
    const q = new WorkQueue({ baseDelayMs: 1 });
    const calls: string[] = [];
    const retries: number[] = [];
    q.add("a");
    const abort = new AbortController();
    const spec = {
      name: "test",
      key: {
        format: (k: unknown) => String(k),
        parse: (t: string) => t,
        fields: (k: unknown) => ({ key: String(k) }),
      },
      watches: [],
      reconcile: async (key: unknown) => {
        calls.push(String(key));
        retries.push(q.retries("a"));
        if (calls.length === 1) throw new Error("boom");
        q.shutDown();
        return undefined;
      },
    };
    await within(
      runController({
        spec,
        queue: q,
        workers: 2,
        log: silentLogger,
        metrics: new Metrics({ processMetrics: false }),
        signal: abort.signal,
      }),
      1000,
      "workers",
    );
    assert.deepEqual(calls, ["a", "a"]);
    assert.deepEqual(retries, [0, 1], "the second pass came after one rate-limited retry");
    assert.equal(q.retries("a"), 0, "forgotten after success");
  });

  test("a pass that asks for no later look drops the look an earlier pass asked for", async () => {
    const q = new WorkQueue();
    q.add("a");
    const results = [{ requeueAfterMs: 86_400_000 }, undefined];
    const abort = new AbortController();
    const spec = {
      name: "test",
      key: { format: (k: unknown) => String(k), parse: (t: string) => t, fields: () => ({}) },
      watches: [],
      reconcile: async () => {
        const result = results.shift();
        // The object changes (an event) while the first pass runs: a second pass follows at once.
        if (result) q.add("a");
        else setImmediate(() => abort.abort());
        return result;
      },
    };
    const controller = runController({
      spec,
      queue: q,
      workers: 1,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
      signal: abort.signal,
    });
    await within(controller, 1000, "two passes");
    assert.equal(results.length, 0, "both passes ran");
    assert.equal(q.delayedLen(), 0, "the day-long look of the first pass is gone");
  });
});

describe("rate limiters", () => {
  test("exponential backoff doubles from the base, is capped, and forget resets it", () => {
    const b = new ExponentialBackoff(5, 1_000_000);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => b.when("a")),
      [5, 10, 20, 40, 80],
    );
    assert.equal(b.when("other"), 5, "per key");
    for (let i = 0; i < 100; i++) b.when("a");
    assert.equal(b.when("a"), 1_000_000, "capped at 1000 s");
    assert.equal(b.retries("a"), 106);
    b.forget("a");
    assert.equal(b.retries("a"), 0);
    assert.equal(b.when("a"), 5);
  });

  test("token bucket allows a burst, then spaces at 1/qps, and refills over time", () => {
    let now = 1_000;
    const tb = new TokenBucket(10, 100, () => now);
    const burst = Array.from({ length: 100 }, () => tb.when());
    assert.ok(burst.every((d) => d === 0));
    assert.equal(tb.when(), 100);
    assert.equal(tb.when(), 200);
    now += 1_000; // +10 tokens, 2 owed
    for (let i = 0; i < 8; i++) assert.equal(tb.when(), 0);
    assert.ok(Math.abs(tb.when() - 100) < 1e-6);
    now += 1_000_000; // refill is capped at the burst
    for (let i = 0; i < 100; i++) assert.equal(tb.when(), 0);
    assert.ok(Math.abs(tb.when() - 100) < 1e-6);
  });

  test("token bucket debt is capped at one burst: a failure storm delays others by at most burst/qps", () => {
    let now = 0;
    const tb = new TokenBucket(10, 100, () => now);
    // 30 failures a second for ten minutes, from one source (client-go's bucket would owe ~20 minutes).
    let last = 0;
    for (let s = 0; s < 600; s++) {
      for (let i = 0; i < 30; i++) last = tb.when();
      now += 1_000;
    }
    assert.ok(last <= 10_000, `${last} ms`);
    // And it recovers: after 20 quiet seconds the bucket has tokens again.
    now += 20_000;
    assert.equal(tb.when(), 0);
  });

  test("controller rate limiter takes the larger of backoff and bucket delays", () => {
    const now = 0;
    const rl = controllerRateLimiter({ baseDelayMs: 5, qps: 10, burst: 2, now: () => now });
    assert.equal(rl.when("a"), 5); // bucket has tokens: backoff wins
    assert.equal(rl.when("a"), 10);
    assert.equal(rl.when("b"), 100); // bucket empty: 1 token owed at 10 qps
    assert.equal(rl.retries("a"), 2);
    rl.forget("a");
    assert.equal(rl.retries("a"), 0);
  });
});
