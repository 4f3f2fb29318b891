// Whether an in-process controller has finished all the work it was given, from its metrics (the
// workqueue_* and controller_runtime_* series every queue and controller of a manager reports).

import { eventually } from "../../envtest/wait.ts";
import type { Metrics } from "../../src/runtime/metrics.ts";

export interface Activity {
  /** Keys the manager's work queues accepted (workqueue_adds_total, all queues). */
  accepted: number;
  /** Keys whose processing finished (workqueue_work_duration_seconds_count, all queues). */
  processed: number;
  /** Keys waiting to be handed to a worker (workqueue_depth, all queues). */
  waiting: number;
  /** Reconciles that failed (and so scheduled a retry) or asked to be requeued later. */
  scheduledAgain: number;
}

export async function activity(metrics: Metrics): Promise<Activity> {
  const all = await metrics.registry.getMetricsAsJSON();
  const sum = (name: string, metricName = name, labels: Record<string, string> = {}) =>
    (all.find((m) => m.name === name)?.values ?? [])
      .filter((v) => ((v as { metricName?: string }).metricName ?? name) === metricName)
      .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
      .reduce((total, v) => total + v.value, 0);
  return {
    accepted: sum("workqueue_adds_total"),
    processed: sum("workqueue_work_duration_seconds", "workqueue_work_duration_seconds_count"),
    waiting: sum("workqueue_depth"),
    scheduledAgain:
      sum("controller_runtime_reconcile_total", "controller_runtime_reconcile_total", { result: "error" }) +
      sum("controller_runtime_reconcile_total", "controller_runtime_reconcile_total", {
        result: "requeue_after",
      }),
  };
}

/**
 * Waits until every key the manager's queues accepted has been processed and none waits: nothing is
 * being reconciled or about to be. It says nothing about events still on their way to the manager, so
 * callers first wait for a write the manager must see after the ones they care about (watch events of
 * one stream arrive in order). Delayed adds (retries, requeue-after) are not visible here: check
 * `scheduledAgain` to rule them out.
 */
export function waitUntilIdle(metrics: Metrics, what: string, timeoutMs = 20_000): Promise<Activity> {
  let last: Activity | undefined;
  return eventually(
    async () => {
      last = await activity(metrics);
      return last.accepted === last.processed && last.waiting === 0 ? last : undefined;
    },
    what,
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last activity ${JSON.stringify(last)}`);
  });
}
