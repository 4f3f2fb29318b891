// What the cache keeps of an InternalRequest. Tenants write these objects, so the cached copy is
// bounded: identity, the fixed-size fields reconciles read on every pass, and the variable-size parts
// (labels, finalizers, the rest of the spec, conditions, results) only while they fit a small budget.
// A reconcile that needs a part left out reads the whole request first (see isTrimmed).

import { createHash } from "node:crypto";
import type { V1OwnerReference } from "@kubernetes/client-node";
import { succeeded } from "../api/conditions.ts";
import type { InternalRequest, InternalRequestSpec, InternalRequestStatus } from "../generated/crds.ts";
import { Budget, cacheBudgetChars, identityOf } from "../runtime/trim.ts";
import { isTerminal } from "./conditions.ts";
import { finalizer, legacyFinalizer } from "./naming.ts";

const ownFinalizers = [finalizer, legacyFinalizer];

/** Parts of a request the cache may leave out (see isTrimmed). */
export const Part = {
  labels: "labels",
  finalizers: "finalizers",
  spec: "spec",
  conditions: "conditions",
  results: "results",
} as const;

const digestOf = Symbol("spec-digest");
type WithDigest = { [digestOf]?: string };

export function summarizeRequest(request: InternalRequest): InternalRequest {
  const m = request.metadata;
  const owner = controllerOwner(m.ownerReferences);
  // Which of the controller's finalizers it carries: never more than these few, however long the list.
  const ours = ownFinalizers.filter((f) => m.finalizers?.includes(f));
  // Finished, nothing of ours on it, no CustomRun to mirror it to: no reconcile reads more than that
  // it is finished (most cached requests, and every rejected hostile one).
  const idle = isTerminal(request.status) && ours.length === 0 && !owner;
  const budget = new Budget(idle ? 0 : cacheBudgetChars);
  const metadata = identityOf(m);
  if (owner) metadata.ownerReferences = [owner];
  else if (m.ownerReferences?.length) budget.leaveOut("ownerReferences");
  const finalizers = budget.take(Part.finalizers, m.finalizers);
  if (finalizers) metadata.finalizers = finalizers;
  // Kept for reading (is ours there?) even when the list is too long to cache; writes read it whole.
  else if (ours.length > 0) metadata.finalizers = ours;
  const labels = budget.take(Part.labels, m.labels);
  if (labels) metadata.labels = labels;

  const { service, status: cancel, ...rest } = request.spec ?? {};
  const spec: InternalRequestSpec = {
    ...(typeof service === "string" && service.length <= 253 ? { service } : {}),
    ...(cancel === "Cancelled" ? { status: cancel } : {}),
    ...budget.take(Part.spec, rest),
  };

  const summary: InternalRequest = { apiVersion: request.apiVersion, kind: request.kind, metadata, spec };
  if (request.status) summary.status = summarizeStatus(request.status, budget);
  if (owner) (summary as WithDigest)[digestOf] = specDigest(request.spec);
  return budget.seal(summary, request);
}

function summarizeStatus(status: InternalRequestStatus, budget: Budget): InternalRequestStatus {
  const { conditions, results, droppedResults, ...fixed } = status;
  const out: InternalRequestStatus = {};
  // The controller's own fields, each bounded by the CRD (times, names, generation).
  for (const key of [
    "observedGeneration",
    "startTime",
    "completionTime",
    "pipelineRun",
    "service",
  ] as const) {
    const v = fixed[key];
    if (v !== undefined && (typeof v !== "string" || v.length <= 317))
      (out as Record<string, unknown>)[key] = v;
  }
  const kept = budget.take(Part.conditions, conditions);
  if (kept) out.conditions = kept;
  else if (conditions) {
    // Succeeded's status and reason stay readable (is it finished, and how?); its message may not.
    const c = succeeded({ conditions });
    if (c) out.conditions = [{ ...c, message: "" }];
  }
  const copied = budget.take(Part.results, results);
  if (copied) out.results = copied;
  const dropped = budget.take(Part.results, droppedResults);
  if (dropped) out.droppedResults = dropped;
  return out;
}

/** The CustomRun owner (the only owner the controller reads), when its fields are of sane size. */
function controllerOwner(refs: V1OwnerReference[] | undefined): V1OwnerReference | undefined {
  const ref = refs?.find((o) => o.controller);
  if (ref?.kind !== "CustomRun" || !ref.apiVersion?.startsWith("tekton.dev/")) return undefined;
  if (ref.apiVersion.length > 64 || ref.name.length > 253 || ref.uid.length > 64) return undefined;
  return { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name, uid: ref.uid, controller: true };
}

/**
 * A digest of what a request asks for (its spec without spec.status), with only the fields the CRD
 * defines: the API server prunes others, so a spec as sent and as stored give the same digest.
 * Computed on the whole request when it is cached, so it is there even when the spec is not.
 */
export function specDigest(spec: InternalRequestSpec | undefined): string {
  const s = spec ?? {};
  const ref = s.pipeline?.pipelineRef;
  const known = {
    service: s.service,
    serviceAccount: s.serviceAccount,
    params: s.params,
    timeouts: s.timeouts && pick(s.timeouts, ["pipeline", "tasks", "finally", "queue"]),
    pipeline: s.pipeline && {
      pipelineRef: ref && {
        resolver: ref.resolver,
        params: ref.params?.map((p) => ({ name: p.name, value: p.value })),
      },
      params: s.pipeline.params?.map((p) => ({ name: p.name, value: p.value })),
      serviceAccountName: s.pipeline.serviceAccountName,
      timeouts: s.pipeline.timeouts && pick(s.pipeline.timeouts, ["pipeline", "tasks", "finally"]),
    },
  };
  return createHash("sha256").update(canonicalJson(known)).digest("hex");
}

/** The digest recorded when the request was cached; undefined for requests no CustomRun owns. */
export const cachedSpecDigest = (request: InternalRequest) => (request as WithDigest)[digestOf];

function pick<T extends object>(obj: T, keys: (keyof T)[]): Partial<T> {
  return Object.fromEntries(keys.filter((k) => obj[k] !== undefined).map((k) => [k, obj[k]])) as Partial<T>;
}

/** JSON with object keys sorted and undefined or null members left out (the API server prunes nulls),
 *  so a spec as sent and as stored compare equal. The spec is at most a few levels deep. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined && x !== null)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}
