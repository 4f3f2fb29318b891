// `isc request get`, `list` and `describe`.

import type { CoreV1Event } from "@kubernetes/client-node";
import { call } from "../api/http.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { compareText } from "../policy/text.ts";
import { UsageError } from "./request-errors.ts";
import { bool, type Session, type Subcommand, str, type Values } from "./request-flags.ts";
import {
  age,
  checkResultsOptions,
  emitResults,
  formatObjects,
  oneLine,
  reasonOf,
  requestTable,
  succeededCondition,
  table,
} from "./request-output.ts";
import { resultsFlagsHelp } from "./request-wait-command.ts";

const getHelp = `Usage: isc request get NAME [flags]

Shows one request. By default prints its results as a JSON object on stdout (what a pipeline step
needs); -o shows the request itself.

Flags:
  -o, --output FORMAT   json, yaml, name, table or wide (table plus PipelineRun and message)
${resultsFlagsHelp}
`;

const listHelp = `Usage: isc request list [flags]

Lists requests as a table: NAME, SERVICE, SUCCEEDED, REASON, AGE.

Flags:
  -l, --selector SEL    only requests matching this label selector
  -A, --all-namespaces  requests in every namespace (adds a NAMESPACE column)
  -o, --output FORMAT   table (default), wide (plus PipelineRun and message), json, yaml or name
`;

const describeHelp = `Usage: isc request describe NAME

Shows a request in detail: its spec, status and conditions (with times), the internal PipelineRun it
runs as ("namespace/name" in the private cluster), results, dropped results and its Events.
`;

function oneName(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`${command}: give exactly one request name`);
  return positionals[0] as string;
}

export const getCommand: Subcommand = {
  help: getHelp,
  options: {
    output: { type: "string", short: "o" },
    results: { type: "string" },
    "results-dir": { type: "string" },
  },
  async run(session: Session, values: Values, positionals: string[]): Promise<number> {
    const name = oneName(positionals, "get");
    const output = str(values, "output");
    const resultsDir = str(values, "results-dir");
    const results = {
      results: str(values, "results") ?? (output || resultsDir ? "none" : "json"),
      resultsDir,
    };
    checkResultsOptions(results);
    if (output && results.results === "json")
      throw new UsageError("give -o or --results json, not both (both would print on stdout)");
    if (output && !["json", "yaml", "name", "table", "wide"].includes(output))
      throw new UsageError(`-o must be json, yaml, name, table or wide, got "${output}"`);
    const request = await session.client.get(session.namespace, name);
    let text = emitResults([request], results);
    if (output === "table" || output === "wide") text = requestTable([request], { wide: output === "wide" });
    else if (output) text = formatObjects([request], output, true);
    process.stdout.write(text);
    return 0;
  },
};

export const listCommand: Subcommand = {
  help: listHelp,
  options: {
    selector: { type: "string", short: "l" },
    "all-namespaces": { type: "boolean", short: "A" },
    output: { type: "string", short: "o" },
  },
  async run(session: Session, values: Values, positionals: string[]): Promise<number> {
    if (positionals.length > 0)
      throw new UsageError("list takes no arguments (use get NAME for one request)");
    const output = str(values, "output") ?? "table";
    if (!["json", "yaml", "name", "table", "wide"].includes(output))
      throw new UsageError(`-o must be table, wide, json, yaml or name, got "${output}"`);
    const allNamespaces = bool(values, "all-namespaces");
    const items = await session.client.listAll(
      allNamespaces ? undefined : session.namespace,
      str(values, "selector"),
    );
    items.sort(
      (a, b) =>
        compareText(a.metadata.namespace ?? "", b.metadata.namespace ?? "") ||
        compareText(a.metadata.name ?? "", b.metadata.name ?? ""),
    );
    if (output === "table" || output === "wide") {
      if (items.length === 0) {
        process.stderr.write(
          `No InternalRequests found${allNamespaces ? "" : ` in namespace "${session.namespace}"`}.\n`,
        );
        return 0;
      }
      process.stdout.write(requestTable(items, { wide: output === "wide", allNamespaces }));
    } else {
      process.stdout.write(formatObjects(items, output, false));
    }
    return 0;
  },
};

export const describeCommand: Subcommand = {
  help: describeHelp,
  options: {},
  async run(session: Session, _values: Values, positionals: string[]): Promise<number> {
    const name = oneName(positionals, "describe");
    const request = await session.client.get(session.namespace, name);
    const events = await call<{ items: CoreV1Event[] }>(
      session.kubeConfig,
      "GET",
      `/api/v1/namespaces/${session.namespace}/events`,
      {
        query: {
          fieldSelector: [
            `involvedObject.name=${name}`,
            "involvedObject.kind=InternalRequest",
            `involvedObject.uid=${request.metadata.uid}`,
          ].join(","),
        },
      },
    );
    process.stdout.write(describeRequest(request, events.items));
    return 0;
  },
};

const when = (t: string | Date | undefined, now: number) =>
  t === undefined ? "-" : `${new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z")} (${age(t, now)} ago)`;

/** A value in a describe section: long values cut, continuation lines indented. */
function showValue(value: string, indent: string): string {
  const cut = value.length > 500 ? `${value.slice(0, 500)}… (${value.length} characters in all)` : value;
  return cut.replace(/\n/g, `\n${indent}`);
}

export function describeRequest(r: InternalRequest, events: CoreV1Event[], now = Date.now()): string {
  const lines: string[] = [];
  const field = (label: string, value: string) => lines.push(`${`${label}:`.padEnd(18)}${value}`);
  const map = (label: string, values: Record<string, string> | undefined, empty = "<none>") => {
    const entries = Object.entries(values ?? {});
    if (entries.length === 0) return field(label, empty);
    lines.push(`${label}:`);
    const width = Math.max(...entries.map(([k]) => k.length)) + 2;
    for (const [k, v] of entries)
      lines.push(`  ${`${k}:`.padEnd(width)}${showValue(v, " ".repeat(width + 2))}`);
  };
  const spec = r.spec ?? {};
  const status = r.status ?? {};
  field("Name", r.metadata.name ?? "");
  field("Namespace", r.metadata.namespace ?? "");
  const labels = Object.entries(r.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  field("Labels", labels.length > 0 ? labels.join(`\n${" ".repeat(18)}`) : "<none>");
  field("Created", when(r.metadata.creationTimestamp, now));
  if (spec.service) field("Service", spec.service);
  if (spec.pipeline) {
    const ref = spec.pipeline.pipelineRef;
    const params = (ref?.params ?? []).map((p) => `${p.name}=${p.value}`).join(", ");
    field("Pipeline", `resolver ${ref?.resolver ?? "?"}${params ? ` (${params})` : ""}`);
  }
  map("Params", spec.params);
  const timeouts = Object.entries(spec.timeouts ?? {}).map(([k, v]) => `${k}=${v}`);
  field("Timeouts", timeouts.length > 0 ? timeouts.join(", ") : "<default>");
  field("Service Account", spec.serviceAccount ?? "<default>");
  if (spec.status === "Cancelled") field("Cancel", "requested (spec.status: Cancelled)");

  const c = succeededCondition(r);
  field("Status", c ? `${reasonOf(r)} (Succeeded=${c.status})` : "Pending (not yet seen by the controller)");
  if (c?.message) field("Message", showValue(c.message, " ".repeat(18)));
  field("Started", when(status.startTime, now));
  if (status.completionTime) field("Completed", when(status.completionTime, now));
  field("PipelineRun", status.pipelineRun ? `${status.pipelineRun} (private cluster)` : "<none>");
  if (status.concurrency) {
    const { key, policy, request, pipelineRun } = status.concurrency;
    const other = request ? `; request ${request}, PipelineRun ${pipelineRun} (private cluster)` : "";
    field("Concurrency Key", `${key} (${policy}${other})`);
  }
  const conditions = status.conditions ?? [];
  if (conditions.length === 0) field("Conditions", "<none>");
  else {
    lines.push("Conditions:");
    const rows = conditions.map((x) => [
      x.type,
      x.status,
      x.reason,
      when(x.lastTransitionTime, now),
      oneLine(x.message ?? ""),
    ]);
    lines.push(indent(table(["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"], rows)));
  }
  map("Results", status.results);
  if (status.droppedResults?.length)
    field("Dropped Results", `${status.droppedResults.join(", ")} (too large to copy)`);
  if (events.length === 0) field("Events", "<none>");
  else {
    lines.push("Events:");
    const time = (e: CoreV1Event) =>
      e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp;
    const sorted = [...events].sort(
      (a, b) => new Date(time(a) ?? 0).getTime() - new Date(time(b) ?? 0).getTime(),
    );
    const rows = sorted.map((e) => [
      e.type ?? "",
      e.reason ?? "",
      `${age(time(e), now)}${(e.count ?? 1) > 1 ? ` (x${e.count})` : ""}`,
      e.source?.component ?? e.reportingComponent ?? "",
      oneLine(e.message ?? ""),
    ]);
    lines.push(indent(table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows)));
  }
  return `${lines.join("\n")}\n`;
}

const indent = (text: string) =>
  text
    .trimEnd()
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
