// Which of a request's labels reach its internal PipelineRun. Tekton copies a run's labels to its
// TaskRuns and Pods, where quotas (tekton-kueue keys on the caller labels below), NetworkPolicies,
// Service selectors and mesh injection read them: a tenant's label is copied only when the platform
// owners allow its key. Pure, no I/O.
import type { InternalServicesConfigSpec } from "../generated/crds.ts";
import { listCapped, quote } from "./text.ts";

const callerPrefix = "internal-services.appstudio.openshift.io";

/** Labels Konflux's callers set on requests and its private side keys on: always propagated. */
export const defaultPropagatedLabels = [
  "pipelinerun-uid",
  "group-id",
  "pipeline-name",
  "rate-limited",
  "rate-limiting-group",
  "intention",
].map((name) => `${callerPrefix}/${name}`);

/** At most this many request labels are copied (characters of keys and values together). */
export const maxPropagatedChars = 4096;

export interface PropagatedLabels {
  labels: Record<string, string>;
  /** Request labels left out, by key (sorted). */
  dropped: string[];
}

/** The request labels allowed onto the run: the defaults, then the config's `propagateLabels` keys and
 *  prefixes. Everything else is left out (and named in `dropped`). */
export function propagatedLabels(
  requestLabels: Record<string, string> | undefined,
  config: InternalServicesConfigSpec["propagateLabels"],
): PropagatedLabels {
  const keys = new Set([...defaultPropagatedLabels, ...(config?.keys ?? [])]);
  // A prefix without "/" is a key prefix (DNS subdomain): "example.com" copies "example.com/…", never
  // "example.com.attacker.io/…".
  const prefixes = (config?.prefixes ?? []).map((p) => (p.includes("/") ? p : `${p}/`));
  const labels: Record<string, string> = {};
  const dropped: string[] = [];
  let chars = 0;
  for (const [key, value] of Object.entries(requestLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const allowed = keys.has(key) || prefixes.some((p) => key.startsWith(p));
    if (!allowed || chars + key.length + value.length > maxPropagatedChars) {
      if (!bookkeeping(key)) dropped.push(key);
      continue;
    }
    chars += key.length + value.length;
    labels[key] = value;
  }
  return { labels, dropped };
}

/** Labels the custom-task bridge puts on the requests it makes (Tekton's, linking them to their
 *  pipeline): never copied, and not worth a note. */
const bookkeeping = (key: string) =>
  key.startsWith("tekton.dev/") || key === `${callerPrefix}/customrun-attempt`;

/** A note for the request's status: which labels were not copied, and how to allow them. */
export function droppedLabelsNote(dropped: readonly string[]): string | undefined {
  if (dropped.length === 0) return undefined;
  const names = listCapped(
    dropped.map((k) => quote(k, 80)),
    5,
  );
  return `labels not copied to the internal PipelineRun: ${names} (the InternalServicesConfig's propagateLabels allows keys)`;
}
