// How `isc request …` prints requests: tables, JSON/YAML, results (stdout or one file per result), ages.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { succeeded } from "../api/conditions.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { isTerminal } from "../requests/conditions.ts";
import { UsageError } from "./request-errors.ts";

export const succeededCondition = (r: InternalRequest) => succeeded(r.status);

/** Finished for good (a request the original Go controller still runs is not: see isTerminal). */
export const isFinished = (r: InternalRequest) => isTerminal(r.status);

/** The reason shown for a request: its condition's reason, or Pending before the controller saw it. */
export const reasonOf = (r: InternalRequest) => succeededCondition(r)?.reason ?? "Pending";
export const messageOf = (r: InternalRequest) =>
  succeededCondition(r)?.message ?? (succeededCondition(r) ? "" : "waiting for the controller");

export const serviceOf = (r: InternalRequest) =>
  r.spec?.service ?? (r.spec?.pipeline ? `pipeline:${r.spec.pipeline.pipelineRef?.resolver ?? "?"}` : "");

/** kubectl's short ages: 45s, 3m12s, 2h5m, 3d4h, 400d. */
export function age(timestamp: string | Date | undefined, now = Date.now()): string {
  if (timestamp === undefined) return "<unknown>";
  const seconds = Math.max(0, Math.floor((now - new Date(timestamp).getTime()) / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return `${minutes}m${seconds % 60 ? `${seconds % 60}s` : ""}`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return `${hours}h${minutes % 60 ? `${minutes % 60}m` : ""}`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 8) return `${days}d${hours % 24 ? `${hours % 24}h` : ""}`;
  return `${days}d`;
}

/** Left-aligned columns separated by three spaces, like kubectl. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return `${[header, ...rows].map(line).join("\n")}\n`;
}

export function requestTable(
  requests: InternalRequest[],
  opts: { wide?: boolean; allNamespaces?: boolean } = {},
): string {
  const header = ["NAME", "SERVICE", "SUCCEEDED", "REASON", "AGE"];
  if (opts.allNamespaces) header.unshift("NAMESPACE");
  if (opts.wide) header.push("PIPELINERUN", "MESSAGE");
  const rows = requests.map((r) => {
    const c = succeededCondition(r);
    const row = [
      r.metadata.name ?? "",
      serviceOf(r),
      c?.status ?? "-",
      reasonOf(r),
      age(r.metadata.creationTimestamp),
    ];
    if (opts.allNamespaces) row.unshift(r.metadata.namespace ?? "");
    if (opts.wide) row.push(r.status?.pipelineRun ?? "-", oneLine(messageOf(r)));
    return row;
  });
  return table(header, rows);
}

export const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ");

/** Prints objects as -o json|yaml|name (a single object as itself, several as a List). */
export function formatObjects(objects: InternalRequest[], output: string, single: boolean): string {
  switch (output) {
    case "name":
      return objects.map((o) => `${o.metadata.name}\n`).join("");
    case "json":
    case "yaml": {
      const value = single
        ? objects[0]
        : { apiVersion: "v1", kind: "List", items: objects, metadata: { resourceVersion: "" } };
      return output === "json" ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
    }
    default:
      throw new UsageError(`unknown output format "${output}"`);
  }
}

// Tekton result names: letters, digits, '_', '-', '.'; never a path.
const resultName = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * Writes results as one file per result (name = result name, content = value, no trailing newline),
 * into dir for one request, or dir/<request name>/ for several. Returns warnings for names that cannot
 * be file names.
 */
export function writeResultsDir(dir: string, requests: InternalRequest[]): string[] {
  const warnings: string[] = [];
  for (const r of requests) {
    const target = requests.length === 1 ? dir : join(dir, r.metadata.name ?? "");
    mkdirSync(target, { recursive: true });
    for (const [name, value] of Object.entries(r.status?.results ?? {})) {
      if (!resultName.test(name)) {
        warnings.push(
          `result ${JSON.stringify(name)} of ${r.metadata.name} is not a valid file name; skipped`,
        );
        continue;
      }
      writeFileSync(join(target, name), value);
    }
  }
  return warnings;
}

/** Results as JSON: the results object for one request, or an object keyed by request name. */
export function resultsJson(requests: InternalRequest[]): string {
  const value =
    requests.length === 1
      ? (requests[0]?.status?.results ?? {})
      : Object.fromEntries(requests.map((r) => [r.metadata.name, r.status?.results ?? {}]));
  return `${JSON.stringify(value, null, 2)}\n`;
}

export interface ResultsOptions {
  results: string;
  resultsDir?: string;
}

export function checkResultsOptions(opts: ResultsOptions): void {
  if (!["json", "none"].includes(opts.results))
    throw new UsageError(`--results must be json or none, got "${opts.results}"`);
}

/** Writes the results where the flags say; returns what to print on stdout. */
export function emitResults(requests: InternalRequest[], opts: ResultsOptions): string {
  if (opts.resultsDir) {
    for (const w of writeResultsDir(opts.resultsDir, requests)) process.stderr.write(`isc: warning: ${w}\n`);
  }
  return opts.results === "json" ? resultsJson(requests) : "";
}
