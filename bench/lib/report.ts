// The results: targets checked against the figures, and the Markdown rendering of the JSON.
import type { BaselineResult } from "./baseline.ts";
import type { HostileResult } from "./hostile.ts";
import type { KcpResult, KcpSide } from "./kcp.ts";
import type { BacklogResult, KeysResult, LoadResult, ScaleResult } from "./scenarios.ts";
import type { ServerFigures } from "./servers.ts";
import { type Distribution, ratio, round } from "./stats.ts";

export interface Results {
  date: string;
  command: string;
  host: { cpus: number; cpuModel: string; memoryGb: number; node: string; platform: string };
  options: Record<string, unknown>;
  controllerCmd: string;
  durationS: number;
  burst?: LoadResult;
  linearity?: LoadResult[];
  customRuns?: LoadResult;
  scale?: ScaleResult;
  hostile?: HostileResult;
  backlog?: BacklogResult;
  /** Scenario 7: requests with a concurrency key, per policy. */
  keys?: KeysResult[];
  /** The kcp scenario: the same burst on kcp workspaces and on kube-apiserver namespaces. */
  kcp?: KcpResult;
  baseline?: BaselineResult;
  /** Raw ceiling in requests/s: the plain client's writes/s divided by the writes a request needs. */
  ceilingRequestsPerSecond?: number;
  /** The same ceiling with the bench's own two watches open (the load's and the executor's). */
  watchedBaseline?: BaselineResult;
  /** The CPU of the planes' processes and the bench's own, during scenario 1's burst and the ceiling. */
  machine?: { burst: ServerFigures[]; ceiling: ServerFigures[] };
  targets: Target[];
}

export interface Target {
  name: string;
  value: string;
  target: string;
  met: boolean | undefined;
}

const ms = (x: number) => (Number.isFinite(x) ? `${round(x, 1)} ms` : "—");
const num = (x: number | undefined, digits = 2) =>
  x !== undefined && Number.isFinite(x) ? `${round(x, digits)}` : "—";
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "—");

export function evaluateTargets(r: Results): Target[] {
  const targets: Target[] = [];
  const rtt = r.baseline?.writeRtt;
  if (r.burst && r.ceilingRequestsPerSecond) {
    const share = r.burst.throughput / r.ceilingRequestsPerSecond;
    targets.push({
      name: `throughput (burst ${r.burst.requests})`,
      value: `${num(r.burst.throughput)} req/s = ${(share * 100).toFixed(0)}% of ceiling ${num(r.ceilingRequestsPerSecond)} req/s`,
      target: "≥ 50% of raw ceiling ÷ writes per request",
      met: share >= 0.5,
    });
  }
  // The tuned Go controller's figures on this machine kind (issue 14): to beat, per request.
  if (r.burst) {
    const l = r.burst;
    if (r.ceilingRequestsPerSecond) {
      const share = l.throughput / r.ceilingRequestsPerSecond;
      targets.push({
        name: `throughput ≥ 0.9× ceiling (burst ${l.requests}, ${l.inFlight} in flight)`,
        value: `${times(share)}`,
        target: "≥ 0.90×",
        met: share >= 0.9,
      });
    }
    targets.push({
      name: `API writes per request (burst ${l.requests})`,
      value: num(l.writes.controllerPerRequest),
      target: "≤ 5",
      met: l.writes.controllerPerRequest <= 5,
    });
    targets.push({
      name: `controller CPU per request (burst ${l.requests})`,
      value: `${num(l.controller.cpuMsPerRequest)} ms`,
      target: "≤ 4.5 ms",
      met: l.controller.cpuMsPerRequest <= 4.5,
    });
    targets.push({
      name: `peak RSS (burst ${l.requests})`,
      value: `${num(l.controller.peakRssMb, 1)} MB`,
      target: "≤ 100 MB",
      met: l.controller.peakRssMb <= 100,
    });
  }
  if (r.scale)
    targets.push({
      name: `peak RSS with ${r.scale.existing} finished requests watched`,
      value: `${num(r.scale.burst.controller.peakRssMb, 1)} MB`,
      target: "≤ 130 MB",
      met: r.scale.burst.controller.peakRssMb <= 130,
    });
  if (r.backlog) {
    const b = r.backlog;
    targets.push({
      name: `${b.backlog} requests waiting at start served while ${b.burst.requests} arrive: ready → PipelineRun max`,
      value: ms(b.readyToRun.max),
      target: "≤ 1 s",
      met: b.readyToRun.max <= 1_000,
    });
  }
  if (r.keys && r.keys.length > 0) {
    targets.push({
      name: `at most one live run per concurrency key (${r.keys.map((k) => `${k.policy} ${k.burst.requests} requests`).join(", ")}; ${r.keys[0]?.attempts} attempts per key)`,
      value: r.keys.map((k) => `${k.policy} ${k.maxLivePerKey}`).join(", "),
      target: "1",
      met: r.keys.every((k) => k.maxLivePerKey === 1),
    });
  }
  const stages = r.baseline?.stages;
  const overheads: [string, Distribution | undefined, Distribution | undefined][] = [
    ["create → PipelineRun created", r.burst?.overhead.createToRun, stages?.createToRun],
    ["PipelineRun done → request terminal", r.burst?.overhead.doneToTerminal, stages?.doneToTerminal],
    ["CustomRun created → done (executor excluded)", r.customRuns?.overhead.customRun, undefined],
  ];
  for (const [name, d, raw] of overheads) {
    if (!d) continue;
    if (rtt) {
      const sameStage = raw ? `; the plain client's same stage ${ms(raw.p50)}` : "";
      targets.push({
        name: `overhead p50, ${name}`,
        value: `${ms(d.p50)} = ${times(ratio(d.p50, rtt.p50))} raw write RTT p50 (${ms(rtt.p50)})${sameStage}`,
        target: "≤ 3× one raw write round trip",
        met: d.p50 <= 3 * rtt.p50,
      });
    }
    targets.push({
      name: `overhead p99, ${name}`,
      value: ms(d.p99),
      target: "≤ 250 ms at 100 in flight",
      met: d.p99 <= 250,
    });
  }
  if (r.scale) {
    const s = r.scale;
    targets.push({
      name: `peak RSS, ${s.existing} requests watched (+${s.burst.requests} burst)`,
      value: `${num(s.burst.controller.peakRssMb, 1)} MB`,
      target: "≤ 150 MB",
      met: s.burst.controller.peakRssMb <= 150,
    });
    targets.push({
      name: `time to ready, ${s.existing} existing requests`,
      value: `${num(s.readyMs / 1000)} s`,
      target: "≤ 10 s",
      met: s.readyMs <= 10_000,
    });
    // The heartbeat Lease (created, then renewed) is the controller's own, not a request's.
    const heartbeat = Object.entries(s.startupWritesByKind)
      .filter(([kind]) => kind.endsWith(" leases"))
      .reduce((n, [, count]) => n + count, 0);
    targets.push({
      name: `writes at startup for ${s.existing} finished requests`,
      value: `${s.startupWrites - heartbeat} (besides ${heartbeat} to the heartbeat Lease)`,
      target: "0",
      met: s.startupWrites - heartbeat === 0,
    });
  }
  const h = r.hostile;
  if (h) {
    const peak = Math.max(h.startup.peakRssMb, h.burst.controller.peakRssMb, h.restart.peakRssMb);
    targets.push({
      name: `peak RSS with ${h.objects} maximum-size hostile objects (start-up, burst on top, restart)`,
      value: `${num(h.startup.peakRssMb, 1)} / ${num(h.burst.controller.peakRssMb, 1)} / ${num(h.restart.peakRssMb, 1)} MB`,
      target: `within the Deployment's ${h.memoryLimitMb} Mi limit`,
      met: peak < h.memoryLimitMb,
    });
    targets.push({
      name: `allowed requests served among ${h.objects} hostile objects (burst ${h.burst.requests})`,
      value: `${num(h.burst.throughput)} req/s, ${h.burst.notSucceeded} not succeeded`,
      target: "every one succeeds",
      met: h.burst.notSucceeded === 0,
    });
  }
  if (r.kcp) {
    for (const side of [r.kcp.kube, r.kcp.kcp]) {
      const where = `${side.platform}, burst ${side.burst.requests} over ${side.burst.namespaces} ${side.platform === "kcp" ? "workspaces" : "namespaces"}`;
      const share = side.burst.throughput / side.ceilingRequestsPerSecond;
      targets.push({
        name: `throughput (${where})`,
        value: `${num(side.burst.throughput)} req/s = ${(share * 100).toFixed(0)}% of its ceiling ${num(side.ceilingRequestsPerSecond)} req/s`,
        target: "≥ 50% of raw ceiling ÷ writes per request",
        met: share >= 0.5,
      });
      const d = side.burst.overhead.createToRun;
      const rttP50 = side.baseline.writeRtt.p50;
      if (d)
        targets.push({
          name: `overhead p50, create → PipelineRun created (${where})`,
          value: `${ms(d.p50)} = ${times(ratio(d.p50, rttP50))} its raw write RTT p50 (${ms(rttP50)}); the plain client's same stage ${ms(side.baseline.stages.createToRun.p50)}`,
          target: "≤ 3× one raw write round trip",
          met: d.p50 <= 3 * rttP50,
        });
    }
  }
  const lin = [...(r.linearity ?? [])].sort((a, b) => a.requests - b.requests);
  if (lin.length >= 2) {
    const cpu = lin.map((l) => l.controller.cpuMsPerRequest);
    const writes = lin.map((l) => l.writes.controllerPerRequest);
    // Linear total cost = per-request cost that does not grow with size. It may fall: small runs pay
    // more of the JIT's warm-up per request.
    const growth = (xs: number[]) => Math.max(...xs.slice(1).map((x) => x / (xs[0] as number)));
    targets.push({
      name: `linear cost (${lin.map((l) => l.requests).join(" / ")} requests)`,
      value: `CPU ms/request ${cpu.map((x) => num(x)).join(" / ")} (larger runs vs the smallest: at most ${times(growth(cpu))}); writes/request ${writes.map((x) => num(x)).join(" / ")}`,
      target: "per-request cost does not grow with size (≤ 1.25× the smallest run's)",
      met: growth(cpu) <= 1.25 && growth(writes) <= 1.05,
    });
  }
  return targets;
}

function loadRows(name: string, l: LoadResult, rtt: Distribution | undefined): string[] {
  const rows: string[] = [];
  const dist = (label: string, d: Distribution) => {
    const ratios = rtt
      ? `${times(ratio(d.p50, rtt.p50))} / ${times(ratio(d.p95, rtt.p95))} / ${times(ratio(d.p99, rtt.p99))} / ${times(ratio(d.max, rtt.max))}`
      : "—";
    rows.push(
      `| ${name}: ${label} p50 / p95 / p99 / max | ${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.p99)} / ${ms(d.max)} | ${ratios} |`,
    );
  };
  if (l.overhead.createToRun) dist("create → PipelineRun created", l.overhead.createToRun);
  if (l.overhead.doneToTerminal) dist("PipelineRun done → terminal with results", l.overhead.doneToTerminal);
  if (l.overhead.customRun) dist("CustomRun created → done, executor excluded", l.overhead.customRun);
  rows.push(
    `| ${name}: end to end (executor included) p50 / p99 | ${ms(l.endToEnd.p50)} / ${ms(l.endToEnd.p99)} | |`,
  );
  return rows;
}

export function markdown(r: Results): string {
  const b = r.baseline;
  const rtt = b?.writeRtt;
  const out: string[] = [];
  out.push(`# Benchmark results, ${r.date}`);
  out.push("");
  out.push(
    `Host: ${r.host.cpus} × ${r.host.cpuModel}, ${r.host.memoryGb} GB, ${r.host.platform}, Node ${r.host.node}. ` +
      `Planes, controller and bench share the machine. Total run ${num(r.durationS / 60, 1)} min.`,
  );
  out.push("");
  out.push("```sh");
  out.push(r.command);
  out.push("```");
  out.push("");
  out.push(`Controller command: \`${r.controllerCmd}\``);
  out.push("");
  out.push("## Targets");
  out.push("");
  out.push("| target | value | wanted | met |");
  out.push("| --- | --- | --- | --- |");
  for (const t of r.targets)
    out.push(
      `| ${t.name} | ${t.value} | ${t.target} | ${t.met === undefined ? "—" : t.met ? "yes" : "**no**"} |`,
    );
  out.push("");
  if (b || r.burst || r.customRuns || r.scale || r.hostile || r.backlog) {
    out.push("## Figures and their ratio to the raw ceiling");
    out.push("");
    out.push("| figure | value | ratio to raw ceiling |");
    out.push("| --- | --- | --- |");
  }
  if (b) {
    out.push(
      `| raw ceiling: plain client, ${b.inFlight} in flight, ${num(b.writesPerRequest)} writes per request | ${num(b.writesPerSecond, 0)} writes/s, ${num(b.requestsPerSecond)} req/s | 1 |`,
    );
    if (rtt)
      out.push(
        `| raw write round trip p50 / p95 / p99 / max | ${ms(rtt.p50)} / ${ms(rtt.p95)} / ${ms(rtt.p99)} / ${ms(rtt.max)} | 1 |`,
      );
    for (const [name, d] of [
      ["create → PipelineRun created", b.stages?.createToRun],
      ["PipelineRun done → terminal", b.stages?.doneToTerminal],
    ] as const) {
      if (d)
        out.push(
          `| plain client, same writes in the same order: ${name} p50 / p95 / p99 / max | ${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.p99)} / ${ms(d.max)} | 1 |`,
        );
    }
  }
  const w = r.watchedBaseline;
  if (b && w) {
    const perRequest = w.writesPerSecond / w.writesPerRequest;
    const burstShare = r.burst ? ` (the burst: ${times(ratio(r.burst.throughput, perRequest))} of it)` : "";
    out.push(
      `| the same with the bench's two watches open, as in every controller run (the load's on the requests, the executor's on the runs): ${num(w.watchedEvents, 0)} events | ${num(w.writesPerSecond, 0)} writes/s, ${num(w.requestsPerSecond)} req/s | ${times(ratio(perRequest, r.ceilingRequestsPerSecond ?? Number.NaN))}${burstShare} |`,
    );
  }
  const l = r.burst;
  if (l) {
    out.push(
      `| burst ${l.requests} (${l.namespaces} namespaces, ${l.inFlight} in flight): throughput | ${num(l.throughput)} req/s | ${times(ratio(l.throughput, r.ceilingRequestsPerSecond ?? Number.NaN))} |`,
    );
    out.push(...loadRows(`burst ${l.requests}`, l, rtt));
    out.push(
      `| burst ${l.requests}: controller CPU | ${num(l.controller.cpuSeconds)} s (${num(l.controller.cpuMsPerRequest)} ms/request) | ${b ? times(ratio(l.controller.cpuSeconds, b.clientCpuSeconds)) : "—"} of the plain client's CPU |`,
    );
    out.push(`| burst ${l.requests}: controller peak RSS | ${num(l.controller.peakRssMb, 1)} MB | |`);
    out.push(
      `| burst ${l.requests}: API writes per request (controller; failed) | ${num(l.writes.controllerPerRequest)} (${num(l.writes.controllerFailed / l.requests)} failed) | ${b ? times(ratio(l.writes.controllerPerRequest + 2, b.writesPerRequest)) : "—"} (the baseline replays this mix + 2) |`,
    );
    out.push(
      `| burst ${l.requests}: reconciles per request; mean wait in the work queue; mean reconcile | ${num(l.controller.reconcilesPerRequest)}; ${ms(l.controller.queueWaitMeanMs)}; ${ms(l.controller.workMeanMs)} | |`,
    );
    out.push(`| burst ${l.requests}: time to ready (no requests) | ${ms(l.controller.readyMs)} | |`);
  }
  const c = r.customRuns;
  if (c) {
    out.push(
      `| custom tasks ${c.requests} CustomRuns: throughput | ${num(c.throughput)} runs/s | ${times(ratio(c.throughput, r.ceilingRequestsPerSecond ?? Number.NaN))} |`,
    );
    out.push(...loadRows(`custom tasks ${c.requests}`, c, rtt));
    out.push(
      `| custom tasks: controller CPU; writes per CustomRun | ${num(c.controller.cpuSeconds)} s (${num(c.controller.cpuMsPerRequest)} ms/run); ${num(c.writes.controllerPerRequest)} writes (${num(c.writes.controllerFailed / c.requests)} failed) | |`,
    );
  }
  const s = r.scale;
  if (s) {
    out.push(
      `| scale: time to ready with ${s.existing} finished requests | ${ms(s.readyMs)} | ${times(ratio(s.readyMs, s.rawListMs))} of a plain paged list of them (${ms(s.rawListMs)}) |`,
    );
    out.push(`| scale: controller writes at startup | ${s.startupWrites} | |`);
    out.push(
      `| scale: RSS after startup; peak RSS after the burst on top | ${num(s.rssMbAfterStartup, 1)} MB; ${num(s.burst.controller.peakRssMb, 1)} MB | |`,
    );
    out.push(
      `| scale: burst ${s.burst.requests} on top: throughput | ${num(s.burst.throughput)} req/s | ${times(ratio(s.burst.throughput, r.ceilingRequestsPerSecond ?? Number.NaN))} |`,
    );
    out.push(...loadRows(`scale burst ${s.burst.requests}`, s.burst, rtt));
    out.push(
      `| scale burst: controller CPU; writes per request | ${num(s.burst.controller.cpuSeconds)} s (${num(s.burst.controller.cpuMsPerRequest)} ms/request); ${num(s.burst.writes.controllerPerRequest)} | |`,
    );
  }
  const h = r.hostile;
  if (h) {
    const mix = Object.entries(h.mix)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ");
    out.push(
      `| hostile: ${h.objects} objects with ${h.objectParamsChars} characters of params each (${mix}), written in | ${num(h.populateS, 1)} s | |`,
    );
    for (const [name, p] of [
      ["start-up over them", h.startup],
      ["restart with them handled", h.restart],
    ] as const) {
      out.push(
        `| hostile, ${name}: ready; all handled; peak RSS; RSS and heap settled; writes | ${ms(p.readyMs)}; ${num(p.settleS, 1)} s later; ${num(p.peakRssMb, 1)} MB; ${num(p.rssMbSettled, 1)} MB and ${num(p.heapUsedMbSettled, 1)} MB; ${p.writes} | |`,
      );
    }
    out.push(
      `| hostile: burst ${h.burst.requests} on top: throughput; peak RSS | ${num(h.burst.throughput)} req/s; ${num(h.burst.controller.peakRssMb, 1)} MB | ${times(ratio(h.burst.throughput, r.ceilingRequestsPerSecond ?? Number.NaN))} |`,
    );
    out.push(...loadRows(`hostile burst ${h.burst.requests}`, h.burst, rtt));
  }
  const bl = r.backlog;
  if (bl) {
    const d = (x: Distribution) => `${ms(x.p50)} / ${ms(x.p99)} / ${ms(x.max)}`;
    out.push(
      `| backlog: ${bl.backlog} waiting at start, ready → PipelineRun p50 / p99 / max | ${d(bl.readyToRun)} | |`,
    );
    out.push(`| backlog: ready → terminal p50 / p99 / max | ${d(bl.readyToTerminal)} | |`);
    out.push(
      `| backlog: ${bl.burst.requests} new requests meanwhile: throughput | ${num(bl.burst.throughput)} req/s | ${times(ratio(bl.burst.throughput, r.ceilingRequestsPerSecond ?? Number.NaN))} |`,
    );
    out.push(...loadRows(`backlog burst ${bl.burst.requests}`, bl.burst, rtt));
  }
  const lin = r.linearity ?? [];
  if (lin.length > 0) {
    out.push("");
    out.push("## Linearity (scenario 1 at several sizes)");
    out.push("");
    out.push(
      "| requests | req/s | CPU ms/request | writes/request | reconciles/request | create → run p50 / p99 | done → terminal p50 / p99 | peak RSS |",
    );
    out.push("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const x of lin) {
      out.push(
        `| ${x.requests} | ${num(x.throughput)} | ${num(x.controller.cpuMsPerRequest)} | ${num(x.writes.controllerPerRequest)} | ${num(x.controller.reconcilesPerRequest)} | ${ms(x.overhead.createToRun?.p50 ?? Number.NaN)} / ${ms(x.overhead.createToRun?.p99 ?? Number.NaN)} | ${ms(x.overhead.doneToTerminal?.p50 ?? Number.NaN)} / ${ms(x.overhead.doneToTerminal?.p99 ?? Number.NaN)} | ${num(x.controller.peakRssMb, 1)} MB |`,
      );
    }
  }
  if (l && b && r.machine) out.push(...machineSection(l, b, r.machine));
  if (r.keys && r.keys.length > 0) out.push(...keysSection(r.keys));
  if (r.kcp) out.push(...kcpSection(r.kcp));
  if (l) {
    out.push("");
    out.push(`## The controller's writes per request (burst ${l.requests}, from the audit log)`);
    out.push("");
    out.push("| plane verb resource | per request | of which failed |");
    out.push("| --- | --- | --- |");
    for (const [kind, n] of Object.entries(l.writes.controllerByKind)) {
      out.push(`| ${kind} | ${num(n, 3)} | ${num(l.writes.controllerFailedByKind[kind] ?? 0, 3)} |`);
    }
  }
  out.push("");
  return out.join("\n");
}

/**
 * Where the machine's CPU went in scenario 1's burst and in the raw ceiling: both keep the cores busy,
 * so throughput follows what each request costs all the processes together.
 */
function machineSection(l: LoadResult, b: BaselineResult, m: NonNullable<Results["machine"]>): string[] {
  const controller = { name: "controller", cpuSeconds: l.controller.cpuSeconds };
  const rows = [...m.burst.map((x) => x.name), controller.name];
  const find = (list: { name: string; cpuSeconds: number }[], name: string) =>
    list.find((x) => x.name === name)?.cpuSeconds;
  const cell = (cpu: number | undefined, requests: number, seconds: number) =>
    cpu === undefined ? "—" : `${num((cpu * 1000) / requests)} ms (${num(cpu / seconds)} cores)`;
  const total = (list: { cpuSeconds: number }[]) => list.reduce((sum, x) => sum + x.cpuSeconds, 0);
  const out = [
    "",
    `## Where the machine's CPU went (burst ${l.requests} and the raw ceiling)`,
    "",
    "CPU per request, and cores used on average over the phase.",
    "",
    `| process | burst ${l.requests} (${num(l.durationS, 1)} s) | raw ceiling (${num(b.durationS, 1)} s) |`,
    "| --- | --- | --- |",
  ];
  for (const name of rows)
    out.push(
      `| ${name} | ${cell(find([...m.burst, controller], name), l.requests, l.durationS)} | ${cell(find(m.ceiling, name), b.requests, b.durationS)} |`,
    );
  out.push(
    `| all of these | ${cell(total([...m.burst, controller]), l.requests, l.durationS)} | ${cell(total(m.ceiling), b.requests, b.durationS)} |`,
  );
  return out;
}

/** Scenario 7: what a concurrency key costs, per policy. */
function keysSection(keys: KeysResult[]): string[] {
  const out: string[] = [];
  out.push("");
  out.push("## Concurrency keys (scenario 7)");
  out.push("");
  out.push(
    `Each policy on a fresh controller: ${keys[0]?.burst.requests} requests to a service with \`concurrency.key\` over a label, ` +
      `${keys[0]?.attempts} consecutive requests per key in one namespace, ${keys[0]?.burst.inFlight} in flight. ` +
      "Reuse keeps its succeeded runs for `reuseWithin` (1h): their deletion is not in its writes. " +
      "Create → run counts from the later of the request's creation and the key's previous run done.",
  );
  out.push("");
  out.push(
    "| policy | requests | attempts per key | runs created | max live per key | not succeeded | writes/request | CPU ms/request | peak RSS | throughput | create → run p50 / p99 |",
  );
  out.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const k of keys) {
    const l = k.burst;
    const d = l.overhead.createToRun;
    out.push(
      `| ${k.policy} | ${l.requests} | ${k.attempts} | ${k.runsCreated} | ${k.maxLivePerKey} | ${l.notSucceeded} | ${num(l.writes.controllerPerRequest)} (${num(l.writes.controllerFailed / l.requests)} failed) | ${num(l.controller.cpuMsPerRequest)} | ${num(l.controller.peakRssMb, 1)} MB | ${num(l.throughput)} req/s | ${d ? `${ms(d.p50)} / ${ms(d.p99)}` : "—"} |`,
    );
  }
  out.push("");
  out.push(`| plane verb resource | ${keys.map((k) => k.policy).join(" | ")} |`);
  out.push(`| --- | ${keys.map(() => "---").join(" | ")} |`);
  const kinds = [...new Set(keys.flatMap((k) => Object.keys(k.burst.writes.controllerByKind)))].sort();
  for (const kind of kinds) {
    const cell = (k: KeysResult) => {
      const n = k.burst.writes.controllerByKind[kind];
      const failed = k.burst.writes.controllerFailedByKind[kind];
      return n === undefined ? "—" : `${num(n, 3)}${failed ? ` (${num(failed, 3)} failed)` : ""}`;
    };
    out.push(`| ${kind} | ${keys.map(cell).join(" | ")} |`);
  }
  return out;
}

/** The kcp scenario: the two sides next to each other, each with its own raw ceiling. */
function kcpSection(k: KcpResult): string[] {
  const out: string[] = [];
  const { kube, kcp } = k;
  const both = (f: (s: KcpSide) => string) => `${f(kube)} | ${f(kcp)}`;
  const rel = (f: (s: KcpSide) => number) => times(ratio(f(kcp), f(kube)));
  const row = (name: string, f: (s: KcpSide) => string, r?: (s: KcpSide) => number) =>
    out.push(`| ${name} | ${both(f)} | ${r ? rel(r) : ""} |`);
  const pair = (d: Distribution | undefined) => (d ? `${ms(d.p50)} / ${ms(d.p99)}` : "—");
  const overRtt = (d: Distribution | undefined, s: KcpSide) =>
    d
      ? `${pair(d)} (${times(ratio(d.p50, s.baseline.writeRtt.p50))} / ${times(ratio(d.p99, s.baseline.writeRtt.p99))} its raw write RTT)`
      : "—";
  out.push("");
  out.push(`## kcp workspaces and kube-apiserver namespaces: the same burst, each with its raw ceiling`);
  out.push("");
  out.push(
    `${k.requests} InternalRequests, ${k.inFlight} in flight, over ${k.workspaces} kcp workspaces (kcp ${k.kcpVersion}, ` +
      `one shard, namespace "default" of each, the controller with \`--kcp-export\` as deploy/kcp's ServiceAccount) and over ` +
      `${k.workspaces} namespaces of the public kube-apiserver (the controller with \`--workspace\`, a cluster-admin ServiceAccount). ` +
      `The same private plane and executor on both. Order: ${k.order.join(", ")}. ` +
      `Setup: kcp ready in ${num(k.setup.kcpReadyMs / 1000, 1)} s (${k.setup.kcpStartedFrom} root directory), ` +
      `${k.workspaces} workspaces Ready in ${num(k.setup.workspacesS, 1)} s, the export bound and served in all in ${num(k.setup.bindS, 1)} s. ` +
      `The kcp side's raw ceiling creates the requests in the workspaces as kcp's admin and makes the controller's writes ` +
      `through the export's virtual workspace as its ServiceAccount; "public" in the write kinds is kcp there.`,
  );
  out.push("");
  out.push(
    `| figure | kube-apiserver, ${k.workspaces} namespaces | kcp, ${k.workspaces} workspaces | kcp ÷ kube |`,
  );
  out.push("| --- | --- | --- | --- |");
  row(
    "raw ceiling: plain client, writes/s; req/s at the writes a request needs",
    (s) =>
      `${num(s.baseline.writesPerSecond, 0)} writes/s; ${num(s.ceilingRequestsPerSecond)} req/s at ${num(s.baseline.writesPerRequest)}`,
    (s) => s.ceilingRequestsPerSecond,
  );
  row(
    "raw write round trip p50 / p99",
    (s) => pair(s.baseline.writeRtt),
    (s) => s.baseline.writeRtt.p50,
  );
  row(
    "plain client, same writes in the same order: create → PipelineRun created p50 / p99",
    (s) => pair(s.baseline.stages.createToRun),
    (s) => s.baseline.stages.createToRun.p50,
  );
  row(
    "throughput (× its own raw ceiling)",
    (s) =>
      `${num(s.burst.throughput)} req/s (${times(ratio(s.burst.throughput, s.ceilingRequestsPerSecond))})`,
    (s) => s.burst.throughput,
  );
  row(
    "create → PipelineRun created p50 / p99",
    (s) => overRtt(s.burst.overhead.createToRun, s),
    (s) => s.burst.overhead.createToRun?.p50 ?? Number.NaN,
  );
  row(
    "PipelineRun done → terminal with results p50 / p99",
    (s) => overRtt(s.burst.overhead.doneToTerminal, s),
    (s) => s.burst.overhead.doneToTerminal?.p50 ?? Number.NaN,
  );
  row(
    "end to end (executor included) p50 / p99",
    (s) => pair(s.burst.endToEnd),
    (s) => s.burst.endToEnd.p50,
  );
  row("not succeeded", (s) => `${s.burst.notSucceeded}`);
  row(
    "controller API writes per request (failed)",
    (s) =>
      `${num(s.burst.writes.controllerPerRequest)} (${num(s.burst.writes.controllerFailed / s.burst.requests)})`,
    (s) => s.burst.writes.controllerPerRequest,
  );
  row("requests the server made to itself for the controller's writes, per request", (s) =>
    num(s.burst.writes.forwardedPerRequest ?? 0),
  );
  if (kcp.burst.writes.forwardedWarrantsMax !== undefined)
    out.push(
      `| warrants each of those carried, mean / most (kcp ${k.kcpVersion} appends one per virtual-workspace request to the token's cached authentication, kept 10 s: docs/kcp.md) | — | ${num(kcp.burst.writes.forwardedWarrantsMean, 1)} / ${kcp.burst.writes.forwardedWarrantsMax} | |`,
    );

  row(
    "controller CPU per request",
    (s) => `${num(s.burst.controller.cpuMsPerRequest)} ms`,
    (s) => s.burst.controller.cpuMsPerRequest,
  );
  row(
    "controller peak RSS",
    (s) => `${num(s.burst.controller.peakRssMb, 1)} MB`,
    (s) => s.burst.controller.peakRssMb,
  );
  row(
    "controller time to ready; RSS when ready",
    (s) => `${ms(s.burst.controller.readyMs)}; ${num(s.burst.controller.rssMbAtReady, 1)} MB`,
    (s) => s.burst.controller.readyMs,
  );
  row(
    "reconciles per request; mean wait in the work queue; mean reconcile",
    (s) =>
      `${num(s.burst.controller.reconcilesPerRequest)}; ${ms(s.burst.controller.queueWaitMeanMs)}; ${ms(s.burst.controller.workMeanMs)}`,
    (s) => s.burst.controller.workMeanMs,
  );
  const servers = Math.max(kube.servers.length, kcp.servers.length);
  for (let i = 0; i < servers; i++) {
    const name = (s: KcpSide) => s.servers[i]?.name ?? "—";
    const label = name(kube) === name(kcp) ? name(kube) : `${name(kube)} / ${name(kcp)}`;
    row(
      `server CPU per request; RSS at the end (peak): ${label}`,
      (s) => {
        const x = s.servers[i];
        return x ? `${num(x.cpuMsPerRequest)} ms; ${num(x.rssMb, 0)} MB (${num(x.peakRssMb, 0)} MB)` : "—";
      },
      (s) => s.servers[i]?.cpuMsPerRequest ?? Number.NaN,
    );
  }
  for (let i = 0; i < servers; i++) {
    const name = (s: KcpSide) => s.baselineServers[i]?.name ?? "—";
    const label = name(kube) === name(kcp) ? name(kube) : `${name(kube)} / ${name(kcp)}`;
    row(
      `raw ceiling: server CPU per request: ${label}`,
      (s) => {
        const x = s.baselineServers?.[i];
        return x ? `${num(x.cpuMsPerRequest)} ms` : "—";
      },
      (s) => s.baselineServers?.[i]?.cpuMsPerRequest ?? Number.NaN,
    );
  }
  const a = kcp.adminBaseline;
  if (a) {
    const server = a.servers[0];
    out.push(
      `| reference: the kcp raw ceiling with the controller's writes through the virtual workspace as kcp's admin instead of the ServiceAccount: req/s; write RTT p50 / p99; ${server?.name ?? "server"} CPU per request | | ${num(a.ceilingRequestsPerSecond)} req/s; ${pair(a.baseline.writeRtt)}; ${num(server?.cpuMsPerRequest)} ms | |`,
    );
  }
  out.push("");
  out.push("### The controller's writes per request (from the audit logs)");
  out.push("");
  out.push("| plane verb resource | kube-apiserver | kcp |");
  out.push("| --- | --- | --- |");
  const kinds = [
    ...new Set([
      ...Object.keys(kube.burst.writes.controllerByKind),
      ...Object.keys(kcp.burst.writes.controllerByKind),
    ]),
  ].sort();
  for (const kind of kinds) {
    const cell = (s: KcpSide) => {
      const n = s.burst.writes.controllerByKind[kind];
      const failed = s.burst.writes.controllerFailedByKind[kind];
      return n === undefined ? "—" : `${num(n, 3)}${failed ? ` (${num(failed, 3)} failed)` : ""}`;
    };
    out.push(`| ${kind} | ${cell(kube)} | ${cell(kcp)} |`);
  }
  return out;
}
