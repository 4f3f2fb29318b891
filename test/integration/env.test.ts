// `npm run env:up` / `npm run env:down` as a newcomer runs them: with a cache folder that does not
// exist yet, and never leaving a process behind, also when the start fails or is interrupted. Each
// run gets a TMPDIR of its own, so the planes it starts are the processes whose command line (etcd's
// --data-dir, kube-apiserver's --cert-dir) mentions that folder.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiextensionsV1Api } from "@kubernetes/client-node";
import { ensureBinaries } from "../../envtest/binaries.ts";
import { adminKubeConfig } from "../../envtest/cluster.ts";
import { isRunning } from "../../envtest/lifecycle.ts";
import { runCommand } from "../../envtest/run-command.ts";
import { eventually } from "../../envtest/wait.ts";
import type { PlanesState } from "../support/planes.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const envScript = join(repoRoot, "envtest/env.ts");

/** Running (not exited) processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text) && isRunning(pid);
      } catch {
        return false; // gone meanwhile
      }
    });
}

describe("npm run env:up / env:down", { skip: !existsSync("/proc/self") && "needs Linux /proc" }, () => {
  const roots: string[] = [];
  after(async () => {
    // Whatever a failed assertion left running is stopped here, not left to the machine.
    for (const root of roots) {
      for (const pid of processesMentioning(root)) process.kill(pid, "SIGKILL");
      await rm(root, { recursive: true, force: true });
    }
  });

  /** A fresh TMPDIR for the planes and an XDG_CACHE_HOME that does not exist yet. */
  const sandbox = async () => {
    const root = await mkdtemp(join(tmpdir(), "isc-env-test-"));
    roots.push(root);
    const tmp = join(root, "tmp");
    await mkdir(tmp);
    const cache = join(root, "cache", "not-created-yet");
    const bin = await ensureBinaries(); // the machine's cache: a fresh XDG_CACHE_HOME must not rebuild
    const env = { ...process.env, XDG_CACHE_HOME: cache, TMPDIR: tmp, KUBEBUILDER_ASSETS: dirname(bin.etcd) };
    const stateFile = join(cache, "internal-service-controller", "env-state.json");
    return { tmp, cache, env, stateFile };
  };
  const npmRun = (script: string, env: NodeJS.ProcessEnv) =>
    runCommand("npm", ["run", "--silent", script], { cwd: repoRoot, env, timeoutMs: 150_000 });

  it("creates the cache folder, starts usable planes, and env:down leaves no process", async () => {
    const { tmp, cache, env, stateFile } = await sandbox();
    assert.equal(existsSync(cache), false);

    const up = await npmRun("env:up", env);
    assert.equal(up.code, 0, `env:up failed:\n${up.stdout}\n${up.stderr}`);
    assert.match(up.stdout, /control planes up in/);
    const state = JSON.parse(await readFile(stateFile, "utf8")) as PlanesState;
    assert.match(up.stdout, new RegExp(`KUBECONFIG_PUBLIC=${state.public.kubeconfigPath}`));
    assert.equal(state.pids.length, 3, "etcd and two kube-apiservers");
    assert.deepEqual(
      processesMentioning(tmp).sort((a, b) => a - b),
      [...state.pids].sort((a, b) => a - b),
      "env:up left the planes running",
    );
    // They outlive env:up, serve, and have the CRDs installed.
    for (const plane of [state.public, state.private]) {
      const crd = await adminKubeConfig(plane)
        .makeApiClient(ApiextensionsV1Api)
        .readCustomResourceDefinition({ name: "internalrequests.appstudio.redhat.com" });
      assert.equal(crd.metadata?.name, "internalrequests.appstudio.redhat.com");
    }

    const again = await npmRun("env:up", env);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /already up/);

    const down = await npmRun("env:down", env);
    assert.equal(down.code, 0, `env:down failed:\n${down.stdout}\n${down.stderr}`);
    assert.match(down.stdout, /control planes stopped/);
    assert.deepEqual(processesMentioning(tmp), [], "env:down left processes running");
    assert.equal(existsSync(state.dir), false, "env:down removed the planes' folder");
    assert.equal(existsSync(stateFile), false, "env:down removed the state file");
  });

  it("stops the planes it started when a step after the start fails", async () => {
    const { tmp, env, stateFile } = await sandbox();
    // The state file cannot be written (a folder is in its place): that fails after the planes run.
    await mkdir(stateFile, { recursive: true });

    const up = await npmRun("env:up", env);
    assert.equal(up.code, 1, `env:up should fail:\n${up.stdout}\n${up.stderr}`);
    assert.match(up.stderr, /env:up failed, nothing left running: .*EISDIR/);
    assert.deepEqual(processesMentioning(tmp), [], "a failed env:up left processes running");
    const left = (await readdir(tmp)).filter((entry) => entry.startsWith("isc-controlplanes-"));
    assert.deepEqual(left, [], "a failed env:up removed the planes' folder");
  });

  it("stops the planes it started when interrupted (Ctrl-C) during the start", async () => {
    const { tmp, env, stateFile } = await sandbox();
    const child = spawn(process.execPath, [envScript, "up"], { cwd: repoRoot, env, stdio: "pipe" });
    let output = "";
    for (const stream of [child.stdout, child.stderr]) {
      stream.on("data", (b: Buffer) => {
        output += b.toString();
      });
    }
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      // The planes run detached (a Ctrl-C in the terminal does not reach them): interrupt env:up as
      // soon as the first of them is running.
      await eventually(() => processesMentioning(tmp).length > 0, "env:up to start etcd", 60_000);
      child.kill("SIGINT");
      assert.equal(await exited, 130, output);
    } finally {
      child.kill("SIGKILL");
    }
    assert.match(output, /SIGINT, stopping the control planes it started/);
    assert.deepEqual(processesMentioning(tmp), [], "an interrupted env:up left processes running");
    assert.equal(existsSync(stateFile), false, "an interrupted env:up leaves no state file behind");
  });
});
