// The controller loop: N workers take keys from the queue and call reconcile, one key at a time per
// key. Error policy, as in controller-runtime: a thrown error requeues with backoff; a TerminalError
// is logged and not retried; requeueAfterMs schedules the next look; success forgets the backoff.
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { describeError, isConflict } from "../api/errors.ts";
import type { Metrics } from "./metrics.ts";
import type { WorkQueue } from "./queue.ts";

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type Reconcile = (key: string, log: Logger) => Promise<ReconcileResult | undefined>;

/** An error retrying cannot fix (the reconciler has already recorded it on the object). */
export class TerminalError extends Error {}

export interface ControllerOptions {
  name: string;
  queue: WorkQueue;
  reconcile: Reconcile;
  workers: number;
  log: Logger;
  metrics: Metrics;
  /** Aborting stops the workers at once (keys in flight finish their current call). */
  signal: AbortSignal;
  /** Adds log fields from the key (e.g. workspace, namespace, name). */
  keyFields?: (key: string) => Record<string, string>;
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
  const { name: controller, queue, metrics } = opts;
  const log = opts.log.child({
    controller,
    ...(opts.keyFields?.(key) ?? { key }),
    reconcileID: randomUUID(),
  });
  const end = metrics.reconcileTime.startTimer({ controller });
  try {
    const result = await opts.reconcile(key, log);
    queue.forget(key);
    if (result?.requeueAfterMs !== undefined) {
      queue.addAfter(key, result.requeueAfterMs);
      metrics.reconcileTotal.inc({ controller, result: "requeue_after" });
    } else {
      metrics.reconcileTotal.inc({ controller, result: "success" });
    }
  } catch (err) {
    metrics.reconcileErrors.inc({ controller });
    if (err instanceof TerminalError) {
      queue.forget(key);
      metrics.reconcileTotal.inc({ controller, result: "error" });
      log.error({ err: describeError(err) }, "reconcile failed permanently");
    } else {
      queue.addRateLimited(key);
      metrics.reconcileTotal.inc({ controller, result: "error" });
      // Conflicts are optimistic concurrency doing its job: retry quietly with the fresh object.
      const level = isConflict(err) ? "debug" : "warn";
      log[level]({ err: describeError(err), retries: queue.retries(key) }, "reconcile failed; will retry");
    }
  } finally {
    end();
  }
}
