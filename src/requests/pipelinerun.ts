// The internal PipelineRun: built from an accepted request's run plan, and read back into the
// request's progress, outcome and results.

import { succeeded } from "../api/conditions.ts";
import { apiVersionOf, pipelineRuns } from "../api/resources.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { V1PipelineRun, V1PipelineRunResult } from "../generated/tekton.ts";
import type { RunPlan } from "../policy/admit.ts";
import { formatDuration } from "../policy/duration.ts";
import { compareText } from "../policy/text.ts";
import type { Reason } from "./conditions.ts";
import {
  concurrencyKeyLabel,
  isValidLabelValue,
  managedByLabel,
  managedByValue,
  queueDeadlineAnnotation,
  releaseTypeLabel,
  requestAnnotation,
  requestNameLabel,
  requestNamespaceLabel,
  requestUidLabel,
  serviceAnnotation,
  serviceLabel,
  supersededByAnnotation,
  workspaceAnnotation,
  workspaceLabel,
} from "./naming.ts";

export interface BuildInput {
  name: string;
  namespace: string;
  workspace: string;
  request: InternalRequest;
  plan: RunPlan;
  /** From InternalServicesConfig.volumeClaim: a volumeClaimTemplate workspace bound to every run. */
  volumeClaim?: { name?: string; size?: string };
}

export function buildPipelineRun(input: BuildInput): V1PipelineRun {
  const { request, plan, workspace } = input;
  const meta = request.metadata;
  // As the Go controller labels its runs; private-side tooling selects release runs by it.
  const system: Record<string, string> = { [managedByLabel]: managedByValue, [releaseTypeLabel]: "release" };
  // Names can be longer than a label value allows; those stay in the annotations only.
  const labelIfValid = (key: string, value: string | undefined) => {
    if (value && isValidLabelValue(value)) system[key] = value;
  };
  labelIfValid(requestNameLabel, meta.name);
  labelIfValid(requestNamespaceLabel, meta.namespace);
  labelIfValid(requestUidLabel, meta.uid);
  // A kcp path (root:org:team) as root.org.team: ":" is not allowed in label values, and kcp
  // workspace names have no dots.
  labelIfValid(
    workspaceLabel,
    /^[a-z0-9-]+(:[a-z0-9-]+)+$/.test(workspace) ? workspace.replaceAll(":", ".") : workspace,
  );
  labelIfValid(serviceLabel, plan.service);
  labelIfValid(concurrencyKeyLabel, plan.concurrency?.hash);
  // The request's allowed labels and the service's (see policy/labels.ts); never one of the keys
  // this controller sets, also where it leaves one out (a name too long for a label value): slots,
  // retention and the run's request are read from them.
  const labels = { ...withoutKeys(plan.labels, controllerLabels), ...system };
  const timeouts: Record<string, string> = { pipeline: formatDuration(plan.timeouts.pipelineMs) };
  if (plan.timeouts.tasksMs !== undefined) timeouts.tasks = formatDuration(plan.timeouts.tasksMs);
  if (plan.timeouts.finallyMs !== undefined) timeouts.finally = formatDuration(plan.timeouts.finallyMs);
  const pipelineRef = plan.pipelineName
    ? { name: plan.pipelineName }
    : { resolver: plan.pipelineRef?.resolver, params: plan.pipelineRef?.params ?? [] };
  const spec: NonNullable<V1PipelineRun["spec"]> = {
    pipelineRef,
    // Params are Tekton params: Tekton substitutes them as values, never into a script by us.
    params: Object.entries(plan.params)
      .sort(([a], [b]) => compareText(a, b))
      .map(([name, value]) => ({ name, value })),
    timeouts,
    ...(plan.serviceAccount ? { taskRunTemplate: { serviceAccountName: plan.serviceAccount } } : {}),
  };
  if (input.volumeClaim?.name) {
    spec.workspaces = [
      {
        name: input.volumeClaim.name,
        volumeClaimTemplate: {
          spec: {
            accessModes: ["ReadWriteOnce"],
            resources: { requests: { storage: input.volumeClaim.size ?? "1Gi" } },
          },
        },
      },
    ] as NonNullable<V1PipelineRun["spec"]>["workspaces"];
  }
  return {
    apiVersion: apiVersionOf(pipelineRuns),
    kind: "PipelineRun",
    metadata: {
      name: input.name,
      namespace: input.namespace,
      labels,
      annotations: {
        ...withoutKeys(plan.annotations, controllerAnnotations),
        [workspaceAnnotation]: workspace,
        [requestAnnotation]: `${meta.namespace}/${meta.name}`,
        // Service names can be longer than a label value: the concurrency limit reads this one.
        ...(plan.service ? { [serviceAnnotation]: plan.service } : {}),
        ...queueDeadline(request, plan.timeouts.queueMs),
      },
    },
    spec,
  } as V1PipelineRun;
}

const controllerLabels = new Set([
  managedByLabel,
  releaseTypeLabel,
  requestNameLabel,
  requestNamespaceLabel,
  requestUidLabel,
  workspaceLabel,
  serviceLabel,
  concurrencyKeyLabel,
]);
const controllerAnnotations = new Set([
  workspaceAnnotation,
  requestAnnotation,
  serviceAnnotation,
  queueDeadlineAnnotation,
  supersededByAnnotation,
]);

function withoutKeys(from: Record<string, string> | undefined, keys: Set<string>): Record<string, string> {
  return Object.fromEntries(Object.entries(from ?? {}).filter(([k]) => !keys.has(k)));
}

/** The queue timeout as a deadline from the request's creation (on the run, which is private). */
function queueDeadline(request: InternalRequest, queueMs: number): Record<string, string> {
  const created = Date.parse(String(request.metadata.creationTimestamp ?? ""));
  if (!created) return {};
  return { [queueDeadlineAnnotation]: new Date(created + queueMs).toISOString().replace(/\.\d+Z$/, "Z") };
}

/** Tekton's spec.status while an admission queue (tekton-kueue) holds the run; Tekton leaves it alone. */
export const pendingStatus = "PipelineRunPending";

/**
 * When the run started running (ms), for its own timeout: Tekton's startTime. Undefined while it has
 * not: held pending by an admission queue, or not picked up by Tekton yet. That is waiting, which
 * counts against the queue timeout (from the request's creation), never against the run's own.
 */
export function runStartedAt(run: V1PipelineRun): number | undefined {
  return Date.parse(String(run.status?.startTime ?? "")) || undefined;
}

/**
 * What the cache keeps of an internal PipelineRun: what reconciles read (labels, annotations,
 * timeouts, conditions, results, child TaskRuns, the number of tasks), not the params (a copy of a
 * tenant's request) or the resolved pipeline.
 */
export function summarizeRun(run: V1PipelineRun): V1PipelineRun {
  const { params: _params, pipelineSpec: _spec, ...spec } = run.spec ?? {};
  const status = run.status && { ...run.status };
  if (status) {
    const tasks = status.pipelineSpec;
    delete status.provenance;
    status.pipelineSpec = tasks && {
      tasks: (tasks.tasks ?? []).map((t) => ({ name: t.name })),
      finally: (tasks.finally ?? []).map((t) => ({ name: t.name })),
    };
  }
  return { ...run, spec, ...(status ? { status } : {}) } as V1PipelineRun;
}

export interface RunState {
  done: boolean;
  /** For a finished run: the request's terminal reason. */
  reason?: Reason;
  /** What happened, in words fit to publish (Tekton's reason, never its message). */
  message: string;
  /** Tekton's message of a finished run: private text, published only through policy/redact.ts. */
  detail?: string;
}

/** The label tekton-kueue (Kueue) puts on the runs it queues: which queue holds it. */
const kueueQueueLabel = "kueue.x-k8s.io/queue-name";

const cancelledReasons = new Set([
  "Cancelled",
  "CancelledRunningFinally",
  "StoppedRunningFinally",
  "PipelineRunCancelled",
]);

/** Interprets Tekton's Succeeded condition on the PipelineRun. */
export function runState(run: V1PipelineRun): RunState {
  const c = succeeded(run.status);
  if (!c || c.status === "Unknown") {
    return { done: false, message: progressMessage(run) };
  }
  if (c.status === "True")
    return { done: true, reason: "Succeeded", message: "internal PipelineRun succeeded" };
  const tekton = c.reason || "Failed";
  const detail = c.message ? { detail: c.message } : {};
  if (cancelledReasons.has(tekton))
    return {
      done: true,
      reason: "Cancelled",
      message: `internal PipelineRun was cancelled (${tekton})`,
      ...detail,
    };
  if (tekton === "PipelineRunTimeout")
    return {
      done: true,
      reason: "TimedOut",
      message: `internal PipelineRun timed out (${tekton})`,
      ...detail,
    };
  return { done: true, reason: "Failed", message: tekton, ...detail };
}

/** "2/5 tasks completed", from Tekton's running message and the resolved pipeline spec. */
export function progressMessage(run: V1PipelineRun): string {
  const c = succeeded(run.status);
  // Tekton marks a held run Unknown with reason PipelineRunPending (or has not looked at it yet).
  if (run.spec?.status === pendingStatus && (!c || c.reason === pendingStatus)) {
    const queue = run.metadata?.labels?.[kueueQueueLabel];
    return `queued in the private cluster: the internal PipelineRun is held pending admission${queue ? ` (queue ${queue})` : ""}`;
  }
  const total =
    (run.status?.pipelineSpec?.tasks?.length ?? 0) + (run.status?.pipelineSpec?.finally?.length ?? 0);
  const completed = /Tasks Completed: (\d+)/.exec(c?.message ?? "")?.[1];
  if (completed !== undefined && total > 0) return `${completed}/${total} tasks completed`;
  if (c?.reason === "Running") return "internal PipelineRun running";
  return "internal PipelineRun created, waiting for Tekton to start it";
}

/** Result budget: the request must stay far below etcd's 1.5 MiB object limit. */
export const maxResultBytes = 64 * 1024;
export const maxTotalResultBytes = 256 * 1024;

export interface CopiedResults {
  results: Record<string, string>;
  dropped: string[];
}

/** String results as they are; array and object results JSON-encoded; oversized ones dropped. */
export function copyResults(results: V1PipelineRunResult[] | undefined): CopiedResults {
  const out: Record<string, string> = {};
  const dropped: string[] = [];
  let total = 0;
  for (const r of [...(results ?? [])].sort((a, b) => compareText(a.name, b.name))) {
    const value = typeof r.value === "string" ? r.value : JSON.stringify(r.value);
    const size = Buffer.byteLength(value) + Buffer.byteLength(r.name);
    if (size > maxResultBytes || total + size > maxTotalResultBytes) {
      dropped.push(r.name);
      continue;
    }
    total += size;
    out[r.name] = value;
  }
  return { results: out, dropped };
}
