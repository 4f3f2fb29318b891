// `npm run env:up` / `npm run env:down`: the two test control planes for interactive use.
// `up` leaves nothing running when it fails or is interrupted (Ctrl-C) after the planes started: it
// stops them before it exits, so a failed start never needs an `env:down`.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { PlanesState } from "./controlplane.ts";
import { startControlPlanes } from "./controlplane.ts";
import { installCrds, stopPlanes } from "./lifecycle.ts";

const stateFile = join(
  process.env.XDG_CACHE_HOME || join(homedir(), ".cache"),
  "internal-service-controller",
  "env-state.json",
);

async function up(): Promise<number> {
  const existing = await readState();
  if (existing) {
    console.log(`already up (run \`npm run env:down\` first):\n${describe(existing)}`);
    return 0;
  }
  // Before anything starts: a cache folder that cannot be created fails here, with nothing to stop.
  await mkdir(dirname(stateFile), { recursive: true });

  // The planes run detached (their own process group), so Ctrl-C would not reach them: this process
  // catches it, lets the start finish or fail, and stops whatever did start.
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (!interrupted) console.error(`env:up: ${sig}, stopping the control planes it started`);
    interrupted = sig;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const checkInterrupted = () => {
    if (interrupted) throw new Error(`interrupted by ${interrupted}`);
  };
  try {
    const started = Date.now();
    const planes = await startControlPlanes({ detached: true }); // stops its own processes if it fails
    let wroteState = false;
    try {
      checkInterrupted();
      const state: PlanesState = {
        dir: planes.dir,
        public: planes.public,
        private: planes.private,
        pids: planes.pids,
      };
      // Written as soon as the planes run, so `env:down` can stop them even if this process is killed.
      await writeFile(stateFile, JSON.stringify(state, null, 2));
      wroteState = true;
      await installCrds(state);
      checkInterrupted();
      console.log(`control planes up in ${((Date.now() - started) / 1000).toFixed(1)}s\n${describe(state)}`);
      return 0;
    } catch (err) {
      await planes.stop();
      if (wroteState) await rm(stateFile, { force: true });
      throw err;
    }
  } catch (err) {
    console.error(`env:up failed, nothing left running: ${err instanceof Error ? err.message : String(err)}`);
    return interrupted === "SIGINT" ? 130 : interrupted === "SIGTERM" ? 143 : 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function down(): Promise<number> {
  const state = await readState();
  if (!state) {
    console.log("nothing to stop");
    return 0;
  }
  await stopPlanes(state.pids, state.dir);
  await rm(state.dir, { recursive: true, force: true });
  await rm(stateFile, { force: true });
  console.log("control planes stopped");
  return 0;
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
if (command === "up") process.exitCode = await up();
else if (command === "down") process.exitCode = await down();
else {
  console.error("usage: node envtest/env.ts up|down");
  process.exitCode = 2;
}
