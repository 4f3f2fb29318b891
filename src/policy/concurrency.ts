// Concurrency keys: which requests are one logical operation (e.g. one release task's attempts), so
// that at most one run of it is live at a time. A key is a template over the request's namespace,
// labels and params; it is scoped to the workspace, namespace and service (a raw request's pipeline),
// so tenants never share one.
import { createHash } from "node:crypto";
import { parseDuration } from "./duration.ts";

export type ConcurrencyPolicy = "Queue" | "Supersede" | "Reuse";

/** spec.concurrency of an InternalService, or of the config's rawPipelineRequests. */
export interface ConcurrencySpec {
  key: string;
  policy?: ConcurrencyPolicy;
  reuseWithin?: string;
}

export interface ConcurrencyPlan {
  policy: ConcurrencyPolicy;
  /** The key as the caller may see it: sensitive params' values replaced, long keys cut. */
  key: string;
  /** What runs are labelled with: a digest of the scope and the whole key. */
  hash: string;
  /** Reuse: how long after it succeeded a run's results are handed to a new request. */
  reuseWithinMs: number;
}

export const defaultReuseWithinMs = 60 * 60 * 1000;
/** Longest key shown in a request's status (the digest covers the whole key). */
const shownKeyChars = 256;

// $(namespace), $(params.NAME), $(params['NAME']), $(labels.KEY), $(labels['KEY']). No nested
// quantifiers: linear on any input.
const reference = /\$\((?:(namespace)|(params|labels)(?:\.([^)'$]+)|\['([^']+)'\]))\)/g;

type Part = { text: string } | { namespace: true } | { params: string } | { labels: string };

/** The template's parts, or why it is not one (a `$` outside a reference, an unknown reference). */
export function parseKeyTemplate(template: string): Part[] | { error: string } {
  const parts: Part[] = [];
  let at = 0;
  for (const m of template.matchAll(reference)) {
    if (m.index > at) parts.push({ text: template.slice(at, m.index) });
    const name = (m[3] ?? m[4]) as string;
    if (m[1]) parts.push({ namespace: true });
    else parts.push(m[2] === "params" ? { params: name } : { labels: name });
    at = m.index + m[0].length;
  }
  if (at < template.length) parts.push({ text: template.slice(at) });
  const stray = parts.find((p) => "text" in p && p.text.includes("$"));
  if (stray)
    return {
      error: `concurrency.key ${JSON.stringify(template)} has a "$" outside a reference: use $(namespace), $(params.NAME) or $(labels['KEY'])`,
    };
  return parts;
}

export interface KeyInput {
  spec: ConcurrencySpec;
  workspace: string;
  namespace: string;
  /** The service's name, or a raw request's pipelineRef: one service's (or pipeline's) keys never
   *  match another's. */
  scope: string;
  labels: Record<string, string> | undefined;
  /** The params as checked (after the schema's defaults). */
  params: Record<string, string>;
  sensitiveParams: readonly string[];
}

/**
 * The request's concurrency key; `missing` names the label or param it needs but lacks (or has
 * empty), and then the request has no key; `error` when the template or window is invalid.
 */
export function concurrencyKey(
  input: KeyInput,
): { plan: ConcurrencyPlan } | { missing: string } | { error: string } {
  const parts = parseKeyTemplate(input.spec.key);
  if ("error" in parts) return parts;
  let reuseWithinMs = defaultReuseWithinMs;
  try {
    if (input.spec.reuseWithin !== undefined) reuseWithinMs = parseDuration(input.spec.reuseWithin);
  } catch (err) {
    return { error: `concurrency.reuseWithin: ${(err as Error).message}` };
  }
  const hidden = new Set(input.sensitiveParams);
  let whole = "";
  let shown = "";
  for (const part of parts) {
    let value: string | undefined;
    let secret = false;
    if ("text" in part) value = part.text;
    else if ("namespace" in part) value = input.namespace;
    else if ("params" in part) {
      value = input.params[part.params];
      secret = hidden.has(part.params);
      if (!value) return { missing: `param ${JSON.stringify(part.params)}` };
    } else {
      value = input.labels?.[part.labels];
      if (!value) return { missing: `label ${JSON.stringify(part.labels)}` };
    }
    whole += value;
    shown += secret ? "<redacted>" : value;
  }
  const hash = createHash("sha256")
    .update(JSON.stringify([input.workspace, input.namespace, input.scope, whole]))
    .digest("hex")
    .slice(0, 40);
  const key = shown.length > shownKeyChars ? `${shown.slice(0, shownKeyChars)}…` : shown;
  return { plan: { policy: input.spec.policy ?? "Queue", key, hash, reuseWithinMs } };
}
