// `npm run env:up` / `npm run env:down`: the two test control planes for interactive use.
import { readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { PlanesState } from "../support/planes.ts";
import { startControlPlanes } from "./controlplane.ts";
import { installCrds, stopProcesses } from "./lifecycle.ts";

const stateFile = join(
  process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"),
  "internal-service-controller",
  "env-state.json",
);

async function up(): Promise<void> {
  const existing = await readState();
  if (existing) {
    console.log(`already up (run \`npm run env:down\` first):\n${describe(existing)}`);
    return;
  }
  const started = Date.now();
  const planes = await startControlPlanes({ detached: true });
  const state: PlanesState = {
    dir: planes.dir,
    public: planes.public,
    private: planes.private,
    pids: planes.pids,
  };
  await writeFile(stateFile, JSON.stringify(state, null, 2));
  await installCrds(state);
  console.log(`control planes up in ${((Date.now() - started) / 1000).toFixed(1)}s\n${describe(state)}`);
}

async function down(): Promise<void> {
  const state = await readState();
  if (!state) {
    console.log("nothing to stop");
    return;
  }
  await stopProcesses(state.pids);
  await rm(state.dir, { recursive: true, force: true });
  await rm(stateFile, { force: true });
  console.log("control planes stopped");
}

function describe(state: PlanesState): string {
  return [
    `export KUBECONFIG_PUBLIC=${state.public.kubeconfigPath}   # ${state.public.server}`,
    `export KUBECONFIG_PRIVATE=${state.private.kubeconfigPath}   # ${state.private.server}`,
  ].join("\n");
}

async function readState(): Promise<PlanesState | undefined> {
  const text = await readFile(stateFile, "utf8").catch(() => undefined);
  return text ? (JSON.parse(text) as PlanesState) : undefined;
}

const command = process.argv[2];
if (command === "up") await up();
else if (command === "down") await down();
else {
  console.error("usage: node test/controlplane/env.ts up|down");
  process.exitCode = 2;
}
