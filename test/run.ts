// The test command: starts the shared public and private control planes once, runs every test file
// (or the files given) under node:test with the planes' location in the environment, then tears the
// planes down, also on failure or Ctrl-C.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startControlPlanes } from "../envtest/controlplane.ts";
import { installCrds } from "../envtest/lifecycle.ts";
import { type PlanesState, planesStateEnv } from "./support/planes.ts";

const files = process.argv.slice(2);
const patterns = files.length > 0 ? files : ["test/**/*.test.ts"];
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`;

const startedAt = Date.now();
const planes = await startControlPlanes();
let child: ChildProcess | undefined;
let stopping: Promise<void> | undefined;
const stop = () => {
  stopping ??= planes.stop();
  return stopping;
};
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(`test runner: ${sig}, stopping tests and control planes`);
    child?.kill(sig);
    void stop().then(() => process.exit(128 + (sig === "SIGINT" ? 2 : 15)));
  });
}

let exitCode = 1;
try {
  console.error(`test runner: control planes ready in ${seconds(startedAt)}`);
  const state: PlanesState = {
    dir: planes.dir,
    public: planes.public,
    private: planes.private,
    pids: planes.pids,
  };
  const stateFile = join(planes.dir, "state.json");
  await writeFile(stateFile, JSON.stringify(state));
  const crdsAt = Date.now();
  await installCrds(state);
  console.error(`test runner: CRDs installed in ${seconds(crdsAt)}`);

  child = spawn(process.execPath, ["--test", "--test-concurrency=3", "--test-timeout=600000", ...patterns], {
    stdio: "inherit",
    env: { ...process.env, [planesStateEnv]: stateFile },
  });
  const running = child;
  exitCode = await new Promise<number>((resolve) =>
    running.on("exit", (code, sig) => resolve(code ?? (sig ? 1 : 0))),
  );
} catch (err) {
  console.error("test runner:", err);
} finally {
  await stop();
  console.error(`test runner: done in ${seconds(startedAt)}`);
}
process.exit(exitCode);
