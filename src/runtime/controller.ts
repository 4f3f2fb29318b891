// A controller, declared as controller-runtime's builder does: what it reconciles, the caches whose
// changes wake it (each event mapped to keys), and the reconcile. The loop: N workers take keys from
// its queue and call reconcile, one key at a time per key. Error policy, as in controller-runtime: a
// thrown error requeues with backoff; requeueAfterMs schedules the next look; success forgets the
// backoff.
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { describeError, isConflict } from "../api/errors.ts";
import type { Metrics } from "./metrics.ts";
import type { WorkQueue } from "./queue.ts";
import type { Source } from "./source.ts";

export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** How a controller's keys travel through its queue (as strings) and back. */
export interface KeyCodec<K> {
  format(key: K): string;
  parse(text: string): K;
  /** Log fields for a key (e.g. workspace, namespace, name). */
  fields(key: K): Record<string, string>;
}

/** One cache whose changes wake the controller: each event mapped to the keys to reconcile. */
export interface Watch<K> {
  source: Source<never>;
  keys(key: string, obj: never, deleted: boolean): Iterable<K>;
}

/** Declares a Watch (type-checked against the source's objects). */
export const watch = <K, T>(
  source: Source<T>,
  keys: (key: string, obj: T, deleted: boolean) => Iterable<K>,
): Watch<K> => ({ source, keys }) as unknown as Watch<K>;

export interface ControllerSpec<K> {
  name: string;
  key: KeyCodec<K>;
  /** What wakes it: its primary resource first, then what it owns and watches. */
  watches: Watch<K>[];
  reconcile(key: K, log: Logger): Promise<ReconcileResult | undefined>;
}

export interface ControllerOptions {
  spec: ControllerSpec<unknown>;
  queue: WorkQueue;
  workers: number;
  log: Logger;
  metrics: Metrics;
  /** Aborting stops the workers at once (keys in flight finish their current call). */
  signal: AbortSignal;
}

export async function runController(opts: ControllerOptions): Promise<void> {
  const worker = async () => {
    for (;;) {
      const key = await opts.queue.get(opts.signal);
      if (key === undefined) return;
      try {
        await processKey(opts, key);
      } finally {
        opts.queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, worker));
}

async function processKey(opts: ControllerOptions, key: string): Promise<void> {
  const { spec, queue, metrics } = opts;
  const controller = spec.name;
  const parsed = spec.key.parse(key);
  const log = opts.log.child({ controller, ...spec.key.fields(parsed), reconcileID: randomUUID() });
  const end = metrics.reconcileTime.startTimer({ controller });
  try {
    const result = await spec.reconcile(parsed, log);
    queue.forget(key);
    if (result?.requeueAfterMs !== undefined) {
      queue.addAfter(key, result.requeueAfterMs);
      metrics.reconcileTotal.inc({ controller, result: "requeue_after" });
    } else {
      // The latest pass decides: a look it did not ask for (e.g. a timeout of an object now deleted)
      // is dropped rather than kept, perhaps for weeks.
      queue.cancelAfter(key);
      metrics.reconcileTotal.inc({ controller, result: "success" });
    }
  } catch (err) {
    metrics.reconcileErrors.inc({ controller });
    queue.addRateLimited(key);
    metrics.reconcileTotal.inc({ controller, result: "error" });
    // Conflicts are optimistic concurrency doing its job: retry quietly with the fresh object.
    const level = isConflict(err) ? "debug" : "warn";
    log[level]({ err: describeError(err), retries: queue.retries(key) }, "reconcile failed; will retry");
  } finally {
    end();
  }
}
