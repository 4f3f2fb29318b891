// From a CustomRun to the InternalRequest that fulfils one attempt of it (pure functions).
import { createHash } from "node:crypto";
import type { InternalRequest, InternalRequestSpec } from "../generated/crds.ts";
import type { ParamValue, V1beta1CustomRun } from "../generated/tekton.ts";
import { isValidLabelValue, labelPrefix } from "../requests/naming.ts";

export const requestApiVersion = "appstudio.redhat.com/v1alpha1";
export const requestKind = "InternalRequest";
export const customRunLabel = "tekton.dev/customRun";
export const attemptLabel = `${labelPrefix}/customrun-attempt`;

/** The labels Tekton puts on a CustomRun that link it to its PipelineRun and pipeline task. */
const copiedTektonLabels = [
  "tekton.dev/pipelineRun",
  "tekton.dev/pipelineRunUID",
  "tekton.dev/pipelineTask",
  "tekton.dev/memberOf",
];

/** Whether this CustomRun is for us; all others are ignored. */
export function isInternalRequestRun(run: V1beta1CustomRun): boolean {
  const ref = run.spec?.customRef ?? run.spec?.customSpec;
  if (!ref) return false;
  return ref.kind === requestKind || (ref.apiVersion ?? "").startsWith("appstudio.redhat.com/");
}

export type Planned =
  | { ok: true; spec: InternalRequestSpec }
  | { ok: false; reason: string; message: string };

/** The request spec a CustomRun asks for, or why the CustomRun is malformed. */
export function plannedSpec(run: V1beta1CustomRun): Planned {
  const ref = run.spec?.customRef ?? run.spec?.customSpec;
  if (ref?.apiVersion !== requestApiVersion || ref?.kind !== requestKind) {
    return {
      ok: false,
      reason: "UnsupportedKind",
      message: `this custom task handles apiVersion ${requestApiVersion}, kind ${requestKind}; got apiVersion "${ref?.apiVersion ?? ""}", kind "${ref?.kind ?? ""}"`,
    };
  }
  if ((run.spec?.workspaces?.length ?? 0) > 0) {
    return {
      ok: false,
      reason: "CustomRunWorkspaceNotSupported",
      message: "InternalRequest tasks cannot take workspaces: pass data through params and results",
    };
  }
  const params = encodeParams(run.spec?.params);
  if (!params.ok) return params;
  if (run.spec?.customRef) {
    const service = run.spec.customRef.name;
    if (!service) {
      return {
        ok: false,
        reason: "MissingServiceName",
        message:
          "taskRef must name the InternalService to call: taskRef: {apiVersion, kind: InternalRequest, name: <service>}",
      };
    }
    return {
      ok: true,
      spec: { service, ...(Object.keys(params.values).length ? { params: params.values } : {}) },
    };
  }
  const embedded = run.spec?.customSpec?.spec as InternalRequestSpec | undefined;
  if (!embedded || typeof embedded !== "object" || Array.isArray(embedded)) {
    return {
      ok: false,
      reason: "InvalidRequestSpec",
      message: "taskSpec.spec must be an InternalRequest spec (an object with service or pipeline)",
    };
  }
  if (
    typeof embedded.service !== "string" &&
    (typeof embedded.pipeline !== "object" || embedded.pipeline === null)
  ) {
    return {
      ok: false,
      reason: "InvalidRequestSpec",
      message: "taskSpec.spec must set service (a string) or pipeline (a pipelineRef)",
    };
  }
  const existing = embedded.params && typeof embedded.params === "object" ? embedded.params : {};
  // CustomRun params win: Tekton never substitutes variables inside the embedded spec, so params are
  // the only way dynamic values arrive.
  const merged = { ...existing, ...params.values };
  const { status: _ignored, ...rest } = embedded;
  return { ok: true, spec: { ...rest, ...(Object.keys(merged).length ? { params: merged } : {}) } };
}

/** Request params are strings: array and object values are passed JSON-encoded. */
function encodeParams(
  params: { name: string; value: ParamValue }[] | undefined,
): { ok: true; values: Record<string, string> } | { ok: false; reason: string; message: string } {
  const values: Record<string, string> = {};
  for (const p of params ?? []) {
    if (typeof p.name !== "string" || p.name === "")
      return { ok: false, reason: "InvalidParams", message: "every param needs a name" };
    values[p.name] = typeof p.value === "string" ? p.value : JSON.stringify(p.value);
  }
  return { ok: true, values };
}

/** Deterministic per attempt, at most 63 characters (the controller copies it into label values). */
export function requestName(customRunName: string, attempt: number): string {
  const plain = `${customRunName}-${attempt}`;
  if (plain.length <= 63) return plain;
  const hash = createHash("sha256").update(customRunName).digest("hex").slice(0, 8);
  return `${customRunName.slice(0, 63 - 10 - String(attempt).length).replace(/-+$/, "")}-${hash}-${attempt}`;
}

/** The CustomRun a request was made for: its controller owner reference (names can exceed label values). */
export function owningCustomRun(request: InternalRequest): string | undefined {
  const owner = request.metadata.ownerReferences?.find((o) => o.controller && o.kind === "CustomRun");
  return owner?.apiVersion.startsWith("tekton.dev/") ? owner.name : undefined;
}

export function requestFor(
  run: V1beta1CustomRun,
  spec: InternalRequestSpec,
  attempt: number,
): InternalRequest {
  const labels: Record<string, string> = {
    ...(isValidLabelValue(run.metadata?.name ?? "")
      ? { [customRunLabel]: run.metadata?.name as string }
      : {}),
    [attemptLabel]: String(attempt),
  };
  for (const key of copiedTektonLabels) {
    const value = run.metadata?.labels?.[key];
    if (value) labels[key] = value;
  }
  // Existing release tooling cleans up requests by the calling PipelineRun's uid.
  const prUid = run.metadata?.labels?.["tekton.dev/pipelineRunUID"];
  if (prUid) labels[`${labelPrefix}/pipelinerun-uid`] = prUid;
  return {
    apiVersion: requestApiVersion,
    kind: requestKind,
    metadata: {
      name: requestName(run.metadata?.name as string, attempt),
      namespace: run.metadata?.namespace,
      labels,
      ownerReferences: [
        {
          apiVersion: "tekton.dev/v1beta1",
          kind: "CustomRun",
          name: run.metadata?.name as string,
          uid: run.metadata?.uid as string,
          controller: true,
          blockOwnerDeletion: false,
        },
      ],
    },
    spec,
  };
}
