// What the cache keeps of a CustomRun. Every CustomRun in a served namespace arrives on the watch:
// those of other custom tasks are not kept at all, ours are kept bounded like requests (see
// requests/summary.ts): identity and the small fields read on every pass, the spec and the status
// only while they fit a small budget. A reconcile that plans or writes reads the whole run first.
import { isDone, succeeded } from "../api/conditions.ts";
import type { V1beta1CustomRun, V1beta1CustomRunSpec, V1beta1CustomRunStatus } from "../generated/tekton.ts";
import { Budget, cacheBudgetChars, identityOf } from "../runtime/trim.ts";
import { isInternalRequestRun } from "./request.ts";

export const Part = { spec: "spec", status: "status" } as const;

const attempts = Symbol("attempts");
type WithAttempts = { [attempts]?: number };

/** Longest apiVersion/kind/name/status kept: longer ones are never valid, and are refused as such. */
const maxField = 256;

export function summarizeCustomRun(run: V1beta1CustomRun): V1beta1CustomRun | undefined {
  if (!isInternalRequestRun(run)) return undefined; // another custom task's: costs nothing
  const m = run.metadata ?? {};
  // A finished CustomRun is never read again beyond that it is finished.
  const done = isDone(run.status);
  const budget = new Budget(done ? 0 : cacheBudgetChars);
  const metadata = identityOf(m);
  const s = run.spec ?? {};
  const ref = (r: { apiVersion?: string; kind?: string; name?: string }) => ({
    apiVersion: clip(r.apiVersion),
    kind: clip(r.kind),
    name: clip(r.name),
  });
  // Enough to tell ours from others', cancelled or not, and how many attempts; the rest is budgeted.
  const spec: V1beta1CustomRunSpec = {
    ...(s.customRef ? { customRef: ref(s.customRef) } : {}),
    ...(s.customSpec ? { customSpec: ref(s.customSpec) } : {}),
    ...(typeof s.retries === "number" ? { retries: s.retries } : {}),
    ...(typeof s.status === "string" ? { status: clip(s.status) } : {}),
  };
  const rest = budget.take(Part.spec, {
    labels: m.labels,
    params: s.params,
    embedded: s.customSpec?.spec,
    timeout: s.timeout,
    statusMessage: s.statusMessage,
    workspaces: s.workspaces,
  });
  if (rest) {
    if (rest.labels) metadata.labels = rest.labels;
    if (rest.params) spec.params = rest.params;
    if (rest.embedded && spec.customSpec) spec.customSpec.spec = rest.embedded;
    if (rest.timeout !== undefined) spec.timeout = rest.timeout;
    if (rest.statusMessage !== undefined) spec.statusMessage = rest.statusMessage;
    if (rest.workspaces) spec.workspaces = rest.workspaces;
  }
  const summary: V1beta1CustomRun = { apiVersion: run.apiVersion, kind: run.kind, metadata, spec };
  if (run.status) summary.status = summarizeStatus(run.status, budget);
  (summary as WithAttempts)[attempts] = Array.isArray(run.status?.retriesStatus)
    ? run.status.retriesStatus.length
    : 0;
  return budget.seal(summary, run);
}

function summarizeStatus(status: V1beta1CustomRunStatus, budget: Budget): V1beta1CustomRunStatus {
  const whole = budget.take(Part.status, status);
  if (whole) return whole;
  // Whether it is done, when it started and what attempt it is on stay readable; writes read it whole.
  const c = succeeded(status);
  return {
    ...(c ? { conditions: [{ type: c.type, status: c.status, reason: clip(c.reason) }] } : {}),
    ...(typeof status.startTime === "string" ? { startTime: status.startTime.slice(0, 64) } : {}),
  };
}

const clip = (v: unknown) => (typeof v === "string" ? v.slice(0, maxField) : undefined);

/** Failed attempts so far (the length of status.retriesStatus), also when the cache left it out. */
export function attemptsSoFar(run: V1beta1CustomRun): number {
  return (run as WithAttempts)[attempts] ?? run.status?.retriesStatus?.length ?? 0;
}
