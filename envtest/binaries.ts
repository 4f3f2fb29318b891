// Finds (or builds, the first time) kube-apiserver and etcd; see build-binaries.sh. Also builds the
// controller as the image runs it (compiled dist/), for tests and benchmarks that measure it so.
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const script = fileURLToPath(new URL("build-binaries.sh", import.meta.url));

export interface Binaries {
  etcd: string;
  kubeApiserver: string;
}

/** Build progress goes to stderr; resolves with the binaries' paths. */
export async function ensureBinaries(): Promise<Binaries> {
  const dir = await build("kube");
  return { etcd: `${dir}/etcd`, kubeApiserver: `${dir}/kube-apiserver` };
}

/** Tekton's pipelines controller (cmd/controller), built once like the control-plane binaries. */
export function ensureTektonController(): Promise<string> {
  return build("tekton");
}

/** kubectl and jq (gojq), for tests that run Task step scripts. Resolves with their directory. */
export function ensureTools(): Promise<string> {
  return build("tools");
}

/** kcp (cmd/kcp), built once from the wrapper module in envtest/kcp/. Resolves with the binary's path. */
export function ensureKcp(): Promise<string> {
  return build("kcp");
}

/** kcp, kcp-front-proxy and cache-server, for several shards behind one front proxy; their directory. */
export function ensureKcpShards(): Promise<string> {
  return build("kcp-shards");
}

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
let compiled: Promise<string> | undefined;

/** Compiles the controller into dist/ (once per process); resolves with the CLI's path. */
export function compiledCli(): Promise<string> {
  compiled ??= promisify(execFile)(
    process.execPath,
    [`${repoRoot}/node_modules/typescript/bin/tsc`, "-p", "tsconfig.build.json"],
    { cwd: repoRoot },
  ).then(() => `${repoRoot}/dist/cli/main.js`);
  return compiled;
}

function build(target: "kube" | "tekton" | "tools" | "kcp" | "kcp-shards"): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script, target], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    // "close", not "exit": only then has all of its stdout been read (on a loaded machine "exit" can
    // come first, and the path printed last would be missed).
    child.on("close", (code) => {
      const path = out.trim().split("\n").at(-1);
      if (code !== 0 || !path) {
        reject(new Error(`building ${target} binaries failed (exit ${code}); see the messages above`));
        return;
      }
      resolve(path);
    });
  });
}
