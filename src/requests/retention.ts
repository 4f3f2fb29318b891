// Finished requests that clean up after themselves (opt-in, the config's requestRetention): how long
// a workspace keeps them, the pace deletions keep to, and whether a Tekton run that is still going
// refers to one (then it stays).

import { apiStatus, ignoreNotFound, isNotFound } from "../api/errors.ts";
import { ResourceClient, type ResourceType } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { InternalRequest, InternalServicesConfigSpec } from "../generated/crds.ts";
import { parseDuration } from "../policy/duration.ts";
import { globMatch } from "../policy/glob.ts";
import { labelPrefix } from "./naming.ts";

const defaultDeletionsPerMinute = 300;
/** Konflux's caller label: the uid of the release PipelineRun that made the request. */
const pipelineRunUidLabel = `${labelPrefix}/pipelinerun-uid`;

/** How long finished requests of `workspace` are kept; undefined: forever. */
export function keepFinishedMs(
  config: InternalServicesConfigSpec | undefined,
  workspace: string,
): number | undefined {
  const retention = config?.requestRetention;
  if (!retention) return undefined;
  const exception = retention.workspaces?.find((w) => globMatch(w.workspace, workspace));
  const keep = exception ? exception.keepFinished : retention.keepFinished;
  if (keep === undefined) return undefined;
  try {
    return parseDuration(keep);
  } catch {
    return undefined; // the CRD's pattern admits only durations; anything else keeps the request
  }
}

/** Deletions spread evenly: each one gets its own moment, at most `perMinute` a minute. */
export class DeletionPace {
  #next = 0;

  /** The moment the next deletion may happen (reserved for the caller). */
  reserve(now: number, config: InternalServicesConfigSpec | undefined): number {
    const perMinute = config?.requestRetention?.maxDeletionsPerMinute ?? defaultDeletionsPerMinute;
    const at = Math.max(now, this.#next);
    this.#next = at + 60_000 / perMinute;
    return at;
  }
}

const tekton = (plural: string, kind: string, version = "v1"): ResourceType => ({
  group: "tekton.dev",
  version,
  plural,
  kind,
});
const runTypes: Record<string, ResourceType> = {
  CustomRun: tekton("customruns", "CustomRun", "v1beta1"),
  PipelineRun: tekton("pipelineruns", "PipelineRun"),
  TaskRun: tekton("taskruns", "TaskRun"),
};

interface TektonRun {
  metadata: { name?: string; uid?: string; ownerReferences?: { kind: string; name: string }[] };
  status?: { conditions?: { type?: string; status?: string }[] };
}

const going = (run: TektonRun | undefined) =>
  run !== undefined &&
  (run.status?.conditions?.find((c) => c.type === "Succeeded")?.status ?? "Unknown") === "Unknown";

/** Reads Tekton runs where requests live (404 for a kind that is not served there counts as none). */
async function get(kc: KubeConfig, kind: string, namespace: string, name: string) {
  const client = new ResourceClient<TektonRun>(kc, runTypes[kind] as ResourceType);
  try {
    return await ignoreNotFound(client.get(namespace, name));
  } catch (err) {
    if (apiStatus(err)?.code === 404 && !isNotFound(err)) return undefined; // no such kind
    throw err;
  }
}

/**
 * The Tekton run still going that `request` belongs to, named for a log line; undefined when none.
 * Owners come first (the bridge's CustomRun, or a run a caller made the owner); then the PipelineRun
 * the pipelinerun-uid label names, found through its TaskRuns, which Tekton labels with its uid.
 * A read that fails (e.g. 403) throws: the request is then kept.
 */
export async function liveReferrer(kc: KubeConfig, request: InternalRequest): Promise<string | undefined> {
  const namespace = request.metadata.namespace as string;
  for (const ref of request.metadata.ownerReferences ?? []) {
    if (!ref.apiVersion.startsWith("tekton.dev/") || !runTypes[ref.kind]) continue;
    const run = await get(kc, ref.kind, namespace, ref.name);
    if (run?.metadata.uid === ref.uid && going(run)) return `${ref.kind} ${ref.name}`;
  }
  const uid = request.metadata.labels?.[pipelineRunUidLabel];
  if (!uid) return undefined;
  const taskRuns = new ResourceClient<TektonRun>(kc, runTypes.TaskRun as ResourceType);
  let page: TektonRun[];
  try {
    page = (await taskRuns.list(namespace, { labelSelector: `tekton.dev/pipelineRunUID=${uid}`, limit: 1 }))
      .items;
  } catch (err) {
    if (apiStatus(err)?.code === 404) return undefined; // Tekton not served here
    throw err;
  }
  const owner = page[0]?.metadata.ownerReferences?.find((o) => o.kind === "PipelineRun");
  if (!owner) return undefined;
  const pipelineRun = await get(kc, "PipelineRun", namespace, owner.name);
  return pipelineRun?.metadata.uid === uid && going(pipelineRun) ? `PipelineRun ${owner.name}` : undefined;
}
