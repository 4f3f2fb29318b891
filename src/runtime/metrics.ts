// Prometheus metrics with the names controller-runtime users expect, plus request outcomes.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { QueueObserver } from "./queue.ts";

export class Metrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: "controller_runtime_reconcile_total",
    help: "Total number of reconciliations per controller and result.",
    labelNames: ["controller", "result"],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: "controller_runtime_reconcile_errors_total",
    help: "Total number of reconciliation errors per controller.",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: "controller_runtime_reconcile_time_seconds",
    help: "Length of time per reconciliation per controller.",
    labelNames: ["controller"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "workqueue_depth",
    help: "Current depth of the work queue.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueAdds = new Counter({
    name: "workqueue_adds_total",
    help: "Total number of adds handled by the work queue.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueRetries = new Counter({
    name: "workqueue_retries_total",
    help: "Total number of retries handled by the work queue.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueLatency = new Histogram({
    name: "workqueue_queue_duration_seconds",
    help: "How long a key stays in the work queue before being processed.",
    labelNames: ["name"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly workDuration = new Histogram({
    name: "workqueue_work_duration_seconds",
    help: "How long processing a key from the work queue takes.",
    labelNames: ["name"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "leader_election_master_status",
    help: "1 when this process holds the leader lease, 0 otherwise.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly requestOutcomes = new Counter({
    name: "internal_requests_completed_total",
    help: "InternalRequests that reached a terminal state, by service and reason.",
    labelNames: ["workspace", "service", "reason"],
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: "internal_requests_duration_seconds",
    help: "Time from an InternalRequest's acceptance to its terminal state, by service and reason.",
    labelNames: ["service", "reason"],
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [this.registry],
  });
  /** Counted from the cache at scrape time, so it can never drift from the PipelineRuns that exist. */
  activeRunsSource: (() => Map<string, number>) | undefined;
  readonly activeRuns = new Gauge({
    name: "internal_requests_active",
    help: "Internal PipelineRuns that have not finished yet, by service.",
    labelNames: ["service"],
    registers: [this.registry],
    collect: () => {
      this.activeRuns.reset();
      for (const [service, n] of this.activeRunsSource?.() ?? []) this.activeRuns.set({ service }, n);
    },
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  queueObserver(name: string): QueueObserver {
    return {
      onAdd: () => this.queueAdds.inc({ name }),
      onDepth: (depth) => this.queueDepth.set({ name }, depth),
      onRetry: () => this.queueRetries.inc({ name }),
      onQueueLatency: (s) => this.queueLatency.observe({ name }, s),
      onWorkDuration: (s) => this.workDuration.observe({ name }, s),
    };
  }
}
