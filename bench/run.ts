// `npm run bench`: the controller under load on real public and private control planes, next to the
// raw ceiling of the same API writes from a plain client. See bench/README.md.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { compiledCli } from "../envtest/binaries.ts";
import { type BaselineResult, rawBaseline } from "./lib/baseline.ts";
import { ControllerProcess, defaultControllerCmd } from "./lib/controller.ts";
import { hostile } from "./lib/hostile.ts";
import { type BenchKcp, kcpComparison, startBenchKcp } from "./lib/kcp.ts";
import { type BenchPlanes, startBenchPlanes } from "./lib/planes.ts";
import { evaluateTargets, markdown, type Results } from "./lib/report.ts";
import {
  type BenchContext,
  backlog,
  burst,
  customRuns,
  keyPolicies,
  keys,
  type LoadResult,
  scale,
} from "./lib/scenarios.ts";
import { machineProcs, type ServerFigures, serversDuring } from "./lib/servers.ts";
import { round } from "./lib/stats.ts";

const usage = `Usage: npm run bench -- [flags]     (or: node bench/run.ts [flags])

  --scenario S          burst | customruns | scale | hostile | backlog | keys | all (default all), or
                        kcp (not in all)
  --requests N          requests in scenario 1 and on top of scenarios 3 and 4, per policy in
                        scenario 7 (default 1000); in the kcp scenario, on each side (default 500)
  --namespaces N        remote namespaces the requests are spread over (default 50)
  --in-flight N         requests in flight at once (default 100)
  --sizes A,B,C         scenario 1 also at these sizes, to show linearity (default with "all":
                        250,1000,4000; "none" to skip)
  --customruns N        CustomRuns in scenario 2 (default 200)
  --existing N          finished requests present before the controller starts in scenario 3
                        (default 10000)
  --hostile N           maximum-size hostile objects present before the controller starts in
                        scenario 4 (default 10000)
  --backlog N           requests waiting (never picked up) when the controller starts in scenario 6,
                        served while --requests new ones arrive (default 100)
  --attempts N          consecutive requests per concurrency key in scenario 7 (default 4)
  --kcp-workspaces N    kcp scenario: tenant workspaces on kcp, and namespaces on the kube-apiserver
                        (default 50)
  --controller-cmd CMD  the controller's command line (default "${defaultControllerCmd}"); the bench
                        appends --kubeconfig, --workspace (kcp: --kcp-export), --private-kubeconfig, --namespace,
                        --leader-elect=false, --metrics-address, --health-address, --log-level=warn
  --out FILE            results JSON (default bench/results/<date>-<host>.json); Markdown next to it
  --render FILE         run nothing: re-check the targets of a results JSON and rewrite its Markdown
`;

const repoRoot = fileURLToPath(new URL("../", import.meta.url));
const { values } = parseArgs({
  options: {
    scenario: { type: "string", default: "all" },
    requests: { type: "string" },
    namespaces: { type: "string", default: "50" },
    "in-flight": { type: "string", default: "100" },
    sizes: { type: "string" },
    customruns: { type: "string", default: "200" },
    existing: { type: "string", default: "10000" },
    hostile: { type: "string", default: "10000" },
    backlog: { type: "string", default: "100" },
    attempts: { type: "string", default: "4" },
    "kcp-workspaces": { type: "string", default: "50" },
    "controller-cmd": { type: "string", default: defaultControllerCmd },
    out: { type: "string" },
    render: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const positive = (flag: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`bench: ${flag} must be a positive integer, got "${v}"\n`);
    process.exit(2);
  }
  return n;
};
const scenario = values.scenario;
if (!["burst", "customruns", "scale", "hostile", "backlog", "keys", "all", "kcp"].includes(scenario)) {
  process.stderr.write(
    `bench: --scenario must be burst, customruns, scale, hostile, backlog, keys, all or kcp\n\n${usage}`,
  );
  process.exit(2);
}
const requests = positive("--requests", values.requests ?? (scenario === "kcp" ? "500" : "1000"));
const kcpWorkspaces = positive("--kcp-workspaces", values["kcp-workspaces"]);
const namespaces = positive("--namespaces", values.namespaces);
const inFlight = positive("--in-flight", values["in-flight"]);
const customRunCount = positive("--customruns", values.customruns);
const existing = positive("--existing", values.existing);
const hostileCount = positive("--hostile", values.hostile);
const backlogCount = positive("--backlog", values.backlog);
const attempts = positive("--attempts", values.attempts);
const sizesFlag = values.sizes ?? (scenario === "all" ? "250,1000,4000" : "none");
const sizes = sizesFlag === "none" ? [] : sizesFlag.split(",").map((s) => positive("--sizes", s.trim()));
const runBurst = scenario === "all" || scenario === "burst";

const host = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model.trim() ?? "unknown",
  memoryGb: Math.round(totalmem() / 2 ** 30),
  node: process.versions.node,
  platform: `${process.platform}-${process.arch}`,
};
const date = new Date().toISOString().slice(0, 10);
const out =
  values.out ??
  join(
    repoRoot,
    "bench",
    "results",
    `${date}-${host.platform}-${host.cpus}cpu-${host.memoryGb}gb${scenario === "kcp" ? "-kcp" : ""}.json`,
  );
const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`);
const argv = process.argv.slice(2).map(quote);
const command =
  process.env.npm_lifecycle_event === "bench"
    ? `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`
    : `node bench/run.ts ${argv.join(" ")}`.trim();

const startedAt = performance.now();
const log = (msg: string) =>
  process.stderr.write(
    `[bench ${((performance.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`,
  );

let bench: BenchPlanes | undefined;
let benchKcp: BenchKcp | undefined;
let stopping: Promise<void> | undefined;
const stopAll = () => {
  stopping ??= (async () => {
    await ControllerProcess.stopAll();
    await Promise.all([bench?.stop(), benchKcp?.stop()]);
  })();
  return stopping;
};
// "on", not "once": envtest's kcp kills kcp on a signal and raises it again, which must find this
// handler still there rather than end the process before the planes are stopped.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (!stopping) log(`${sig}: stopping the controller and the control planes`);
    void stopAll().then(() => process.exit(130));
  });
}

const summary = (l: LoadResult) =>
  `${l.throughput} req/s; create→run p50 ${l.overhead.createToRun?.p50} p99 ${l.overhead.createToRun?.p99} ms; ` +
  `done→terminal p50 ${l.overhead.doneToTerminal?.p50} p99 ${l.overhead.doneToTerminal?.p99} ms` +
  (l.overhead.customRun
    ? `; CustomRun p50 ${l.overhead.customRun.p50} p99 ${l.overhead.customRun.p99} ms`
    : "") +
  `; CPU ${l.controller.cpuMsPerRequest} ms/req; ${l.writes.controllerPerRequest} writes/req ` +
  `(${l.writes.controllerFailed} failed); peak RSS ${l.controller.peakRssMb} MB; not succeeded ${l.notSucceeded}`;

/** Checks the targets, writes the JSON and its Markdown (formatted like the repository), prints it. */
async function writeResults(results: Results, file: string): Promise<void> {
  results.targets = evaluateTargets(results);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  const md = `${file.replace(/\.json$/, "")}.md`;
  await writeFile(md, markdown(results));
  // The repository's formatter has the last word on committed results (npm run lint checks bench/ too).
  if (!relative(repoRoot, file).startsWith("..")) {
    const biome = join(repoRoot, "node_modules/@biomejs/biome/bin/biome");
    await promisify(execFile)(process.execPath, [biome, "format", "--write", file, md], {
      cwd: repoRoot,
    }).catch((err: Error) => log(`could not format the results with biome: ${err.message}`));
  }
  const text = await readFile(md, "utf8");
  process.stdout.write(`${text}\n`);
  log(`results: ${relative(process.cwd(), file)} and ${relative(process.cwd(), md)}`);
  const missed = results.targets.filter((t) => t.met === false);
  if (missed.length > 0) log(`targets missed: ${missed.map((t) => t.name).join("; ")}`);
}

if (values.render) {
  await writeResults(JSON.parse(await readFile(values.render, "utf8")) as Results, values.render);
  process.exit(0);
}

let exitCode = 0;
try {
  if (values["controller-cmd"].includes("dist/")) {
    log("building dist/ (npm run build) for the controller command");
    await compiledCli();
  }
  const workDir = await mkdtemp(join(tmpdir(), "isc-bench-"));
  log(`controller logs in ${workDir}`);
  bench = await startBenchPlanes(log);
  const ctx: BenchContext = { bench, controllerCmd: values["controller-cmd"], repoRoot, workDir, log };
  const results: Results = {
    date,
    command,
    host,
    options: {
      scenario,
      requests,
      namespaces,
      inFlight,
      sizes,
      customRuns: customRunCount,
      existing,
      hostile: hostileCount,
      backlog: backlogCount,
      attempts,
      ...(scenario === "kcp" ? { kcpWorkspaces } : {}),
    },
    controllerCmd: values["controller-cmd"],
    durationS: 0,
    targets: [],
  };

  let mixSource: LoadResult | undefined;
  let burstServers: ServerFigures[] = [];
  if (scenario === "kcp") {
    benchKcp = await startBenchKcp(repoRoot, log);
    results.kcp = await kcpComparison(ctx, benchKcp, requests, kcpWorkspaces, inFlight, summary);
  } else if (runBurst) {
    const all = [...new Set([...sizes, requests])].sort((a, b) => a - b);
    const linearity: LoadResult[] = [];
    for (const n of all) {
      log(`scenario 1, burst: ${n} requests over ${namespaces} namespaces, ${inFlight} in flight`);
      // The main burst also says where the machine's CPU went, next to the raw ceiling's (below).
      const measured =
        n === requests
          ? await serversDuring(await machineProcs(ctx), () => burst(ctx, n, namespaces, inFlight))
          : { result: await burst(ctx, n, namespaces, inFlight), servers: [] };
      const r = measured.result;
      log(`  ${summary(r)}`);
      if (n === requests) {
        results.burst = r;
        burstServers = measured.servers;
      }
      if (sizes.length > 0) linearity.push(r);
    }
    if (linearity.length > 0) results.linearity = linearity;
    mixSource = results.burst;
  } else {
    // The baseline needs the controller's write mix: calibrate on a small burst.
    const n = Math.min(requests, 200);
    log(`calibration: a burst of ${n} requests to measure the controller's writes per request`);
    mixSource = await burst(ctx, n, namespaces, inFlight);
    log(`  ${summary(mixSource)}`);
  }

  let baseline: BaselineResult | undefined;
  if (mixSource) {
    log(`raw ceiling: a plain client, ${requests} requests' writes, ${inFlight} in flight`);
    const mix = mixSource.writes.controllerByKind;
    const measured = await serversDuring(await machineProcs(ctx), () =>
      rawBaseline(ctx.bench, mix, requests, namespaces, inFlight, log),
    );
    baseline = measured.result;
    results.baseline = baseline;
    if (burstServers.length > 0) results.machine = { burst: burstServers, ceiling: measured.servers };
    // The harness's own watches cost the planes too, in every controller run: the same ceiling with
    // them open shows how much.
    log(`raw ceiling with the bench's two watches open (the load's and the executor's)`);
    const watched = await rawBaseline(ctx.bench, mix, requests, namespaces, inFlight, log, undefined, true);
    results.watchedBaseline = watched;
    log(`  ${watched.requestsPerSecond} req/s; ${watched.watchedEvents} events watched`);
    results.ceilingRequestsPerSecond = round(baseline.writesPerSecond / baseline.writesPerRequest);
    log(
      `  ${baseline.writesPerSecond} writes/s, ${baseline.requestsPerSecond} req/s at ${baseline.writesPerRequest} writes/request; ` +
        `write RTT p50 ${baseline.writeRtt.p50} p99 ${baseline.writeRtt.p99} ms`,
    );
  }

  if (scenario === "all" || scenario === "customruns") {
    log(`scenario 2, custom tasks: ${customRunCount} CustomRuns, ${inFlight} in flight`);
    results.customRuns = await customRuns(ctx, customRunCount, namespaces, inFlight);
    log(`  ${summary(results.customRuns)}`);
  }

  if (scenario === "all" || scenario === "hostile") {
    log(
      `scenario 4, hostile: ${hostileCount} maximum-size hostile objects, then the controller, then ${requests} requests on top`,
    );
    results.hostile = await hostile(ctx, hostileCount, requests, namespaces, inFlight);
    log(`  ${summary(results.hostile.burst)}`);
  }

  if (scenario === "all" || scenario === "scale") {
    log(`scenario 3, scale: ${existing} finished requests, then the controller, then ${requests} on top`);
    results.scale = await scale(ctx, existing, requests, namespaces, inFlight);
    log(`  ${summary(results.scale.burst)}`);
  }

  if (scenario === "all" || scenario === "backlog") {
    log(
      `scenario 6, backlog: ${backlogCount} requests waiting when the controller starts, ${requests} new ones arriving at once`,
    );
    results.backlog = await backlog(ctx, backlogCount, requests, namespaces, inFlight);
    const b = results.backlog;
    log(
      `  backlog ready → PipelineRun p50 ${b.readyToRun.p50} p99 ${b.readyToRun.p99} max ${b.readyToRun.max} ms; ${summary(b.burst)}`,
    );
  }

  if (scenario === "all" || scenario === "keys") {
    log(
      `scenario 7, keys: ${requests} requests per policy (${keyPolicies.join(", ")}), ${attempts} attempts per concurrency key`,
    );
    results.keys = await keys(ctx, requests, attempts, namespaces, inFlight);
    for (const k of results.keys)
      log(
        `  ${k.policy}: ${k.runsCreated} runs for ${k.keys} keys, at most ${k.maxLivePerKey} live per key; ${summary(k.burst)}`,
      );
  }

  results.durationS = round((performance.now() - startedAt) / 1000);
  await writeResults(results, out);
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  exitCode = 1;
} finally {
  await stopAll();
}
process.exit(exitCode);
