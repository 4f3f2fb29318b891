// Shared by the test runner and `npm run env:*`: CRD installation and process teardown by pid.
import type { PlanesState } from "../support/planes.ts";
import { adminKubeConfig, applyCrds, projectCrds, tektonCrds } from "./cluster.ts";

/** Both planes get this project's CRDs and Tekton's: each side uses a subset of them. */
export async function installCrds(state: Pick<PlanesState, "public" | "private">): Promise<void> {
  const crds = [...(await projectCrds()), ...(await tektonCrds())];
  await Promise.all([state.public, state.private].map((plane) => applyCrds(adminKubeConfig(plane), crds)));
}

export async function stopProcesses(pids: number[]): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids.filter(alive)) signal(pid, "SIGKILL");
}
