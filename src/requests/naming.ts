// How an internal PipelineRun maps back to its request across clusters (owner references cannot
// cross clusters): a deterministic name derived from (workspace, uid), plus labels and annotations.
import { createHash } from "node:crypto";
import type { KeyCodec } from "../runtime/controller.ts";

export const labelPrefix = "internal-services.appstudio.openshift.io";
/** Existing deployments' labels on the internal PipelineRun (kept for compatibility). */
export const requestNameLabel = `${labelPrefix}/name`;
export const requestNamespaceLabel = `${labelPrefix}/namespace`;
export const workspaceLabel = `${labelPrefix}/workspace`;
export const requestUidLabel = `${labelPrefix}/request-uid`;
export const serviceLabel = `${labelPrefix}/service`;
/** On the internal PipelineRun: a digest of its request's concurrency key (see policy/concurrency.ts). */
export const concurrencyKeyLabel = `${labelPrefix}/concurrency-key`;
/** On an internal PipelineRun cancelled to make way for a newer request of its key: that request. */
export const supersededByAnnotation = `${labelPrefix}/superseded-by`;
/** The service's name in full (a label value holds at most 63 characters). */
export const serviceAnnotation = `${labelPrefix}/service`;
/** On the internal PipelineRun: the request's workspace and "namespace/name", in full. */
export const workspaceAnnotation = `${labelPrefix}/workspace`;
export const requestAnnotation = `${labelPrefix}/request`;
/** On the internal PipelineRun: when waiting to start (held pending by an admission queue) ends. */
export const queueDeadlineAnnotation = `${labelPrefix}/queue-deadline`;
export const managedByLabel = "app.kubernetes.io/managed-by";
export const releaseTypeLabel = "pipelines.appstudio.openshift.io/type";
export const managedByValue = "internal-service-controller";
/** Every internal PipelineRun this controller created; the private-side watch selects on it. */
export const managedSelector = `${managedByLabel}=${managedByValue}`;

/** The finalizer earlier versions set: removed where found (a request's deletion is now the run
 *  sweep's to follow, with no write to the request). */
export const finalizer = "internal-services.appstudio.openshift.io/finalizer";
/** The original Go controller's finalizer: treated as ours when a request it served is deleted. */
export const legacyFinalizer = "internal-services.appstudio.openshift.io/pipelinerun-cleanup";

export interface RequestKey {
  workspace: string;
  namespace: string;
  name: string;
}

export const formatKey = (k: RequestKey) => `${k.workspace}/${k.namespace}/${k.name}`;

export function parseKey(key: string): RequestKey {
  const [workspace = "", namespace = "", name = ""] = key.split("/");
  return { workspace, namespace, name };
}

/** Request keys through a controller's queue, and the log fields they add. */
export const requestKeys: KeyCodec<RequestKey> = {
  format: formatKey,
  parse: parseKey,
  fields: (k) => ({ ...k }),
};

/** The key of an object (a request, or a CustomRun) in workspace `workspace`. */
export const keyOf = (
  workspace: string,
  obj: { metadata?: { namespace?: string; name?: string } },
): RequestKey => ({
  workspace,
  namespace: obj.metadata?.namespace ?? "",
  name: obj.metadata?.name ?? "",
});

/**
 * The internal PipelineRun's name: readable prefix + hash of (workspace, uid). Deterministic, so a crash
 * between "create" and "record in status" finds the same run again (409 on create) instead of a second.
 * At most 63 characters, since Tekton copies it into label values.
 */
export function pipelineRunName(workspace: string, requestName: string, uid: string): string {
  const hash = createHash("sha256").update(`${workspace}\0${uid}`).digest("hex").slice(0, 16);
  const prefix = requestName
    .slice(0, 40)
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/-+$/, "");
  return prefix ? `${prefix}-${hash}` : `ir-${hash}`;
}

/** Label values are at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends. */
export function isValidLabelValue(v: string): boolean {
  return v.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v);
}
