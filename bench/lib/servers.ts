// The CPU of the processes that share the machine with the controller (the planes' servers, the
// bench itself) over one phase, so a result can say where a phase's CPU went per request.
import { readFile } from "node:fs/promises";
import { processUsage } from "./controller.ts";
import type { BenchContext } from "./scenarios.ts";
import { round } from "./stats.ts";

/** A server process's CPU over a phase, per request, and its memory at the end. */
export interface ServerFigures {
  name: string;
  cpuSeconds: number;
  cpuMsPerRequest: number;
  rssMb: number;
  peakRssMb: number;
}

export interface Proc {
  name: string;
  pid: number;
}

export async function serversDuring<T extends { requests: number }>(
  procs: Proc[],
  body: () => Promise<T>,
): Promise<{ result: T; servers: ServerFigures[] }> {
  const before = await Promise.all(procs.map((p) => processUsage(p.pid)));
  const result = await body();
  const after = await Promise.all(procs.map((p) => processUsage(p.pid)));
  const servers = procs.map((p, i) => {
    const cpu = (after[i]?.cpuSeconds ?? 0) - (before[i]?.cpuSeconds ?? 0);
    return {
      name: p.name,
      cpuSeconds: round(cpu),
      cpuMsPerRequest: round((cpu * 1000) / result.requests),
      rssMb: round(after[i]?.rssMb ?? 0, 1),
      peakRssMb: round(after[i]?.peakRssMb ?? 0, 1),
    };
  });
  return { result, servers };
}

/** The control planes' processes, told apart by their command lines. */
export async function planeProcs(ctx: BenchContext): Promise<Record<"etcd" | "public" | "private", Proc>> {
  const { planes } = ctx.bench;
  const found: Partial<Record<"etcd" | "public" | "private", Proc>> = {};
  for (const pid of planes.pids) {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    const port = (server: string) => `--secure-port=${new URL(server).port}`;
    if (cmdline.includes(port(planes.public.server))) found.public = { name: "kube-apiserver (public)", pid };
    else if (cmdline.includes(port(planes.private.server)))
      found.private = { name: "kube-apiserver (private)", pid };
    else if (cmdline.some((a) => a.startsWith("--data-dir=")))
      found.etcd = { name: "etcd (both planes)", pid };
  }
  if (!found.etcd || !found.public || !found.private) throw new Error("could not find the planes' processes");
  return found as Record<"etcd" | "public" | "private", Proc>;
}

/** The planes' processes and this one (the load, the executor and their watches; in the raw ceiling,
 *  the plain client): with the controller, all that shares the machine in scenario 1. */
export async function machineProcs(ctx: BenchContext): Promise<Proc[]> {
  const planes = await planeProcs(ctx);
  return [planes.public, planes.private, planes.etcd, { name: "bench (this process)", pid: process.pid }];
}
