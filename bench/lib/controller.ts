// The controller under test, as a separate process started from a command line (any implementation of
// the InternalRequest contract can be measured), with its CPU time and memory sampled from /proc.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { freePort } from "../../envtest/controlplane.ts";
import { sleep } from "./stats.ts";

/**
 * As the shipped image and Deployment run it: the compiled CLI, with the Deployment's NODE_OPTIONS
 * (heap sized to its 256Mi memory limit). The bench builds dist/ first when a command uses it.
 */
export const defaultControllerCmd =
  "node --max-semi-space-size=2 --max-old-space-size=96 dist/cli/main.js controller";
const clockTicksPerSecond = 100; // USER_HZ on Linux

export interface ControllerOptions {
  /** Command line; a leading `node` is this Node binary. The harness appends its flags. */
  cmd: string;
  cwd: string;
  /** The remote side's kubeconfig: a kube-apiserver's, or a kcp provider workspace's. */
  publicKubeconfig: string;
  privateKubeconfig: string;
  /** Remote namespaces to serve in workspace "public" (its current context). */
  namespaces?: string[];
  /** An APIExport to serve every bound kcp workspace of (`--kcp-export`; the current context). */
  kcpExport?: string;
  privateNamespace: string;
  logFile: string;
}

export interface Usage {
  cpuSeconds: number;
  rssMb: number;
  /** Peak resident set since the process started (VmHWM; max of samples for a process tree). */
  peakRssMb: number;
  /** Anonymous resident memory now (RssAnon: heap and buffers, not the mapped binary). */
  rssAnonMb: number;
}

export class ControllerProcess {
  static readonly #running = new Set<ControllerProcess>();
  readonly child: ChildProcess;
  readonly metricsPort: number;
  readonly healthPort: number;
  readonly spawnedAt: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #sampler: NodeJS.Timeout | undefined;
  #peakSampledKb = 0;
  #lastUsage: Usage = { cpuSeconds: 0, rssMb: 0, peakRssMb: 0, rssAnonMb: 0 };

  private constructor(child: ChildProcess, metricsPort: number, healthPort: number, spawnedAt: number) {
    this.child = child;
    this.metricsPort = metricsPort;
    this.healthPort = healthPort;
    this.spawnedAt = spawnedAt;
    this.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    ControllerProcess.#running.add(this);
    void this.exited.then(() => ControllerProcess.#running.delete(this));
    this.#sampler = setInterval(() => void this.usage().catch(() => undefined), 100);
  }

  static async start(opts: ControllerOptions): Promise<ControllerProcess> {
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const [command = "", ...args] = opts.cmd.split(/\s+/).filter(Boolean);
    const binary = command === "node" ? process.execPath : command;
    const flags = [
      `--kubeconfig=${opts.publicKubeconfig}`,
      ...(opts.namespaces ? [`--workspace=public=${opts.namespaces.join(",")}`] : []),
      ...(opts.kcpExport ? [`--kcp-export=${opts.kcpExport}`] : []),
      `--private-kubeconfig=${opts.privateKubeconfig}`,
      `--namespace=${opts.privateNamespace}`,
      "--leader-elect=false",
      `--metrics-address=127.0.0.1:${metricsPort}`,
      `--health-address=127.0.0.1:${healthPort}`,
      "--log-level=warn",
    ];
    const out = createWriteStream(opts.logFile, { flags: "a" });
    const spawnedAt = performance.now();
    const child = spawn(binary, [...args, ...flags], { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    if (!child.pid) throw new Error(`could not start the controller: ${opts.cmd}`);
    return new ControllerProcess(child, metricsPort, healthPort, spawnedAt);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Polls /readyz; resolves with ms from spawn to the first 200. */
  async waitReady(timeoutMs = 120_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    while (performance.now() < deadline && !exited) {
      try {
        const res = await fetch(`http://127.0.0.1:${this.healthPort}/readyz`);
        await res.text();
        if (res.status === 200) return performance.now() - this.spawnedAt;
      } catch {
        // not listening yet
      }
      await sleep(20);
    }
    throw new Error(
      exited ? "the controller exited before it was ready" : "the controller was not ready in time",
    );
  }

  /** Sum of a metric over its label sets, from /metrics (0 before its first sample; NaN if not exposed). */
  async metric(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    const text = await res.text();
    const family = name.replace(/_(sum|count|bucket)$/, "");
    let sum = text.includes(`# HELP ${name} `) || text.includes(`# HELP ${family} `) ? 0 : Number.NaN;
    for (const line of text.split("\n")) {
      if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
        sum = (Number.isNaN(sum) ? 0 : sum) + Number(line.split(" ").at(-1));
      }
    }
    return sum;
  }

  /** CPU seconds and memory of the process and its descendants, now. */
  async usage(): Promise<Usage> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.#lastUsage;
    const { ticks, rssKb, hwmKb, anonKb } = await readProcs(await processTree(this.pid));
    this.#peakSampledKb = Math.max(this.#peakSampledKb, rssKb);
    this.#lastUsage = {
      cpuSeconds: ticks / clockTicksPerSecond,
      rssMb: rssKb / 1024,
      peakRssMb: Math.max(hwmKb, this.#peakSampledKb) / 1024,
      rssAnonMb: anonKb / 1024,
    };
    return this.#lastUsage;
  }

  /** Stops every controller this process started (on Ctrl-C or failure). */
  static async stopAll(): Promise<void> {
    await Promise.all([...ControllerProcess.#running].map((c) => c.stop()));
  }

  /** SIGTERM, then SIGKILL after 15 s. */
  async stop(): Promise<void> {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** CPU ticks and memory (kB) of some processes, summed (VmHWM: the largest). */
async function readProcs(pids: number[]) {
  let ticks = 0;
  let rssKb = 0;
  let hwmKb = 0;
  let anonKb = 0;
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      rssKb += kb(status, "VmRSS");
      anonKb += kb(status, "RssAnon");
      hwmKb = Math.max(hwmKb, kb(status, "VmHWM"));
    } catch {
      // exited meanwhile
    }
  }
  return { ticks, rssKb, hwmKb, anonKb };
}

/** CPU seconds, resident and peak resident memory of a process this bench did not start (a server). */
export async function processUsage(
  pid: number,
): Promise<{ cpuSeconds: number; rssMb: number; peakRssMb: number }> {
  const { ticks, rssKb, hwmKb } = await readProcs([pid]);
  return { cpuSeconds: ticks / clockTicksPerSecond, rssMb: rssKb / 1024, peakRssMb: hwmKb / 1024 };
}

function kb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return m ? Number(m[1]) : 0;
}

async function processTree(root: number): Promise<number[]> {
  const pids = [root];
  for (let i = 0; i < pids.length && i < 64; i++) {
    const pid = pids[i] as number;
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
    for (const tid of tasks) {
      const children = await readFile(`/proc/${pid}/task/${tid}/children`, "utf8").catch(() => "");
      for (const c of children.split(" ").filter(Boolean)) pids.push(Number(c));
    }
  }
  return pids;
}
