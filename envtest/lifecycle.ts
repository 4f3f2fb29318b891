// Shared by the test runner and `npm run env:*`: CRD installation and process teardown by pid.
import { existsSync, readFileSync } from "node:fs";
import { adminKubeConfig, applyCrds, projectCrds, tektonCrds } from "./cluster.ts";
import type { PlanesState } from "./controlplane.ts";

/** Both planes get this project's CRDs and Tekton's: each side uses a subset of them. */
export async function installCrds(state: Pick<PlanesState, "public" | "private">): Promise<void> {
  const crds = [...(await projectCrds()), ...(await tektonCrds())];
  await Promise.all([state.public, state.private].map((plane) => applyCrds(adminKubeConfig(plane), crds)));
}

/**
 * Stops the processes of a PlanesState (pids in start order, etcd first): the kube-apiservers, then
 * etcd, which they need to shut down quickly (see startControlPlanes' stop).
 */
export async function stopPlanes(pids: number[], mustMention?: string): Promise<void> {
  await stopProcesses(pids.slice(1), mustMention);
  await stopProcesses(pids.slice(0, 1), mustMention);
}

/**
 * SIGTERM, then SIGKILL after 10 s, and waits until they are gone. An exited process that its parent
 * has not reaped yet (a zombie: the detached planes of `env:up` are reaped by init, whenever it gets to
 * it) counts as gone. With `mustMention`, a pid whose command line (Linux /proc) does not contain it is
 * left alone: after a reboot the pids of an old state file may belong to other processes.
 */
export async function stopProcesses(pids: number[], mustMention?: string): Promise<void> {
  const ours = mustMention === undefined ? pids : pids.filter((pid) => commandLineMentions(pid, mustMention));
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of ours) signal(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (ours.some(isRunning) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of ours.filter(isRunning)) signal(pid, "SIGKILL");
}

/** Whether the process exists and has not exited (a zombie has exited). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = procFile(pid, "stat");
  // "pid (comm) S ...": the state follows the last ")", as comm may hold spaces and parentheses.
  return stat === undefined || stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

function commandLineMentions(pid: number, text: string): boolean {
  const cmdline = procFile(pid, "cmdline");
  if (cmdline !== undefined) return cmdline.includes(text);
  return !existsSync("/proc/self"); // no /proc (macOS): there is no telling, so signal it as before
}

function procFile(pid: number, name: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${name}`, "utf8");
  } catch {
    return undefined;
  }
}
