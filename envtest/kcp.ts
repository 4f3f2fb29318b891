// Starts a real kcp (one shard, embedded etcd) on loopback ports for the tests that need one: each call
// gets its own root directory, copied from a prepared template (a kcp started once on a fresh
// directory and stopped), which cuts readiness from ~28 s to ~6 s. The template lives next to the
// binary (${XDG_CACHE_HOME:-~/.cache}/internal-service-controller/bin/kcp-<version>/template), is made
// in a temp directory and renamed into place, so concurrent test processes never see half of one.
// Every copy shares the template's CA, service-account signing key and admin token: test use only.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CoreV1Api, CustomObjectsApi, KubeConfig, type User } from "@kubernetes/client-node";
import { ensureKcp, ensureTools } from "./binaries.ts";
import { freePort } from "./controlplane.ts";
import { eventually } from "./wait.ts";

export interface KcpWorkspace {
  /** The workspace's own name, e.g. "provider". */
  name: string;
  /** Its path, e.g. "root:provider": what /clusters/<path> and APIBinding references take. */
  path: string;
  /** Its logical cluster id (Workspace spec.cluster): what virtual workspaces and kcp.io/cluster name. */
  logicalCluster: string;
  /** An admin kubeconfig whose server is this workspace (https://127.0.0.1:P/clusters/<path>). */
  kubeConfigPath: string;
  kubeConfig: KubeConfig;
}

export interface Kcp {
  /** The shard's base URL, https://127.0.0.1:<port> (workspaces are at /clusters/<path>). */
  url: string;
  /** The serving CA (PEM), and its file. */
  ca: string;
  caPath: string;
  /** kcp's admin kubeconfig (context "root", server <url>/clusters/root), and as a client-node config. */
  adminKubeConfigPath: string;
  adminKubeConfig: KubeConfig;
  /** The root directory this kcp runs on (removed by stop()). */
  dir: string;
  pid: number;
  /** How this kcp started: how long copying the template took, and from spawn until /readyz said 200. */
  startedFrom: "template" | "fresh";
  copyMs: number;
  readyMs: number;
  /** An admin KubeConfig for a workspace path, e.g. "root:provider". */
  kubeConfig(path: string): KubeConfig;
  /** A KubeConfig for any URL under this kcp (e.g. a virtual workspace's) that authenticates with a token. */
  tokenKubeConfig(server: string, token: string): KubeConfig;
  /** Creates a Workspace (type universal: it has a default namespace) and waits until it is Ready. */
  createWorkspace(name: string, parent?: string): Promise<KcpWorkspace>;
  /** Runs kubectl (built by build-binaries.sh tools) as admin in a workspace. Rejects on a non-zero exit. */
  kubectl(path: string, args: string[], stdin?: string): Promise<string>;
  /** `kubectl apply --server-side` of YAML (any kinds) in a workspace. */
  apply(path: string, yaml: string): Promise<string>;
  /** `kubectl kustomize <dir>`: a base rendered as kubectl renders it. */
  kustomize(dir: string): Promise<string>;
  /** A bound token (TokenRequest) for a ServiceAccount in a workspace. */
  createToken(
    path: string,
    namespace: string,
    serviceAccount: string,
    expirationSeconds?: number,
  ): Promise<string>;
  /** The last lines of kcp's log, for failure messages. */
  logTail(lines?: number): Promise<string>;
  /** SIGTERM (SIGKILL once its etcd has stopped, if kcp still runs), then removes the root directory. */
  stop(): Promise<void>;
}

export interface KcpOptions {
  /** Start on a fresh root directory, ignoring the template (to measure, or to test kcp's own setup). */
  fresh?: boolean;
  /** Extra `kcp start` flags. */
  args?: string[];
}

const readyTimeoutMs = 180_000;

/** Starts kcp on free loopback ports; the template is made first if this machine has none. */
export async function startKcp(options: KcpOptions = {}): Promise<Kcp> {
  const binary = await ensureKcp();
  const template = options.fresh ? undefined : await ensureKcpTemplate(binary);
  const scratch = await mkdtemp(join(tmpdir(), "isc-kcp-"));
  const dir = join(scratch, "root");
  const copying = Date.now();
  if (template) await cp(template, dir, { recursive: true, preserveTimestamps: true });
  const copyMs = Date.now() - copying;
  const log = join(scratch, "kcp.log");
  let running: Running | undefined;
  try {
    running = await launch(binary, dir, log, options.args ?? []);
  } catch (err) {
    await rm(scratch, { recursive: true, force: true });
    throw err;
  }
  const { child, url, readyMs, unguard } = running;
  const proc = running;

  const caPath = join(dir, "apiserver.crt");
  const adminKubeConfigPath = join(dir, "admin.kubeconfig");
  const admin = new KubeConfig();
  let ca: string;
  let adminUser: User;
  try {
    ca = await readFile(caPath, "utf8");
    admin.loadFromFile(adminKubeConfigPath);
    const user = admin.getCurrentUser();
    if (!user) throw new Error(`${adminKubeConfigPath} has no current user`);
    adminUser = user;
  } catch (err) {
    await terminate(proc);
    unguard();
    await rm(scratch, { recursive: true, force: true });
    throw err;
  }

  const configFor = (server: string, user: User) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "kcp", server, caData: Buffer.from(ca).toString("base64") }],
      users: [user],
      contexts: [{ name: "kcp", cluster: "kcp", user: user.name }],
      currentContext: "kcp",
    });
    return kc;
  };
  const kubeConfig = (path: string) => configFor(`${url}/clusters/${path}`, adminUser);
  const tokenKubeConfig = (server: string, token: string) => configFor(server, { name: "token", token });

  const kubeconfigFiles = join(scratch, "kubeconfigs");
  await mkdir(kubeconfigFiles);
  const writeKubeConfig = async (path: string) => {
    const file = join(kubeconfigFiles, `${path.replaceAll(":", "_")}.kubeconfig`);
    await writeFile(file, kubeConfig(path).exportConfig(), { mode: 0o600 });
    return file;
  };

  let kubectlPath: Promise<string> | undefined;
  const kubectlIn = async (kubeconfig: string | undefined, args: string[], stdin?: string) => {
    kubectlPath ??= ensureTools().then((d) => join(d, "kubectl"));
    const all = kubeconfig ? ["--kubeconfig", kubeconfig, ...args] : args;
    return run(await kubectlPath, all, stdin);
  };

  let stopping: Promise<void> | undefined;
  const kcp: Kcp = {
    url,
    ca,
    caPath,
    adminKubeConfigPath,
    adminKubeConfig: admin,
    dir,
    pid: child.pid as number,
    startedFrom: template ? "template" : "fresh",
    copyMs,
    readyMs,
    kubeConfig,
    tokenKubeConfig,
    async createWorkspace(name, parent = "root") {
      const api = kubeConfig(parent).makeApiClient(CustomObjectsApi);
      const ref = { group: "tenancy.kcp.io", version: "v1alpha1", plural: "workspaces", name };
      await api.createClusterCustomObject({
        ...ref,
        body: {
          apiVersion: "tenancy.kcp.io/v1alpha1",
          kind: "Workspace",
          metadata: { name },
          spec: { type: { name: "universal", path: "root" } },
        },
      });
      const ws = await eventually(
        async () => {
          const w = (await api.getClusterCustomObject(ref)) as {
            spec?: { cluster?: string };
            status?: { phase?: string };
          };
          return w.status?.phase === "Ready" && w.spec?.cluster ? w : undefined;
        },
        `workspace ${parent}:${name} Ready`,
        60_000,
      );
      const path = `${parent}:${name}`;
      return {
        name,
        path,
        logicalCluster: ws.spec?.cluster as string,
        kubeConfigPath: await writeKubeConfig(path),
        kubeConfig: kubeConfig(path),
      };
    },
    async kubectl(path, args, stdin) {
      return kubectlIn(await writeKubeConfig(path), args, stdin);
    },
    async apply(path, yaml) {
      return kubectlIn(await writeKubeConfig(path), ["apply", "--server-side", "-f", "-"], yaml);
    },
    kustomize(base) {
      return kubectlIn(undefined, ["kustomize", base]);
    },
    async createToken(path, namespace, serviceAccount, expirationSeconds = 3600) {
      const api = kubeConfig(path).makeApiClient(CoreV1Api);
      const res = await api.createNamespacedServiceAccountToken({
        name: serviceAccount,
        namespace,
        body: { spec: { audiences: [], expirationSeconds } },
      });
      return res.status?.token as string;
    },
    logTail: (lines = 40) => tail(log, lines),
    stop() {
      stopping ??= (async () => {
        await terminate(proc);
        unguard();
        await rm(scratch, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  return kcp;
}

/**
 * The prepared root directory for this kcp binary: made once (fresh start until ready, then stop) in
 * a temp directory beside it and renamed into place; a process that loses the race to another one
 * drops its own copy.
 */
export async function ensureKcpTemplate(binary?: string): Promise<string> {
  const bin = binary ?? (await ensureKcp());
  const template = join(dirname(bin), "template");
  if (existsSync(join(template, "admin.kubeconfig"))) return template;
  const started = Date.now();
  console.error(`kcp: preparing ${template} (once per machine and kcp version)`);
  const scratch = await mkdtemp(join(dirname(bin), "template.tmp-"));
  try {
    const dir = join(scratch, "root");
    await mkdir(dir);
    const running = await launch(bin, dir, join(scratch, "kcp.log"), []);
    await terminate(running);
    running.unguard();
    try {
      await rename(dir, template);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  console.error(`kcp: template prepared in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return template;
}

interface Running {
  child: ChildProcess;
  url: string;
  etcdPeerPort: number;
  readyMs: number;
  /** Drops the handlers that kill kcp when this process ends. */
  unguard(): void;
}

/**
 * kcp must not outlive the process that started it: killed on exit, and on SIGINT/SIGTERM, which are
 * then raised again (the handlers are gone by then, so the process ends as it would have).
 */
function guard(child: ChildProcess): () => void {
  const kill = () => child.kill("SIGKILL");
  const onSignal = (sig: NodeJS.Signals) => {
    kill();
    unguard();
    process.kill(process.pid, sig);
  };
  const unguard = () => {
    process.removeListener("exit", kill);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  };
  process.once("exit", kill);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return unguard;
}

async function launch(binary: string, dir: string, logFile: string, extraArgs: string[]): Promise<Running> {
  const [port, etcdClient, etcdPeer] = [await freePort(), await freePort(), await freePort()];
  const url = `https://127.0.0.1:${port}`;
  const args = [
    "start",
    `--root-directory=${dir}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${port}`,
    `--embedded-etcd-client-port=${etcdClient}`,
    `--embedded-etcd-peer-port=${etcdPeer}`,
    ...extraArgs,
  ];
  const started = Date.now();
  const log = openSync(logFile, "a");
  // As the control planes' etcd runs with --unsafe-no-fsync: test data need not survive a power cut.
  const env = { ...process.env, UNSAFE_E2E_HACK_DISABLE_ETCD_FSYNC: "true" };
  const child = spawn(binary, args, { stdio: ["ignore", log, log], env });
  closeSync(log);
  const unguard = guard(child);
  const deadline = started + readyTimeoutMs;
  const caPath = join(dir, "apiserver.crt");
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      unguard();
      throw new Error(
        `kcp exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${await tail(logFile)}`,
      );
    }
    // A copied template's admin.kubeconfig names the template's port until kcp writes it again (it
    // keeps the tokens in it: the file must not be removed).
    const kubeconfig = await readFile(join(dir, "admin.kubeconfig"), "utf8").catch(() => "");
    if (existsSync(caPath) && kubeconfig.includes(`server: ${url}/clusters/root\n`)) {
      const ca = await readFile(caPath, "utf8").catch(() => "");
      if (ca && (await readyz(`${url}/readyz`, ca))) break;
    }
    if (Date.now() > deadline) {
      await terminate({ child, etcdPeerPort: etcdPeer });
      unguard();
      throw new Error(`kcp was not ready within ${readyTimeoutMs / 1000}s:\n${await tail(logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, etcdPeerPort: etcdPeer, readyMs: Date.now() - started, unguard };
}

function readyz(url: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

/**
 * SIGTERM, then SIGKILL once the embedded etcd has stopped (its peer port, closed after the server
 * stopped, refuses connections) or after `graceMs`. kcp usually exits within 1-3 s, but now and then
 * (more often right after it became ready) it stops etcd before requests in flight have drained and
 * then waits for their 60 s timeout; with etcd stopped nothing is lost by killing it.
 */
async function terminate(running: Pick<Running, "child" | "etcdPeerPort">, graceMs = 15_000): Promise<void> {
  const { child } = running;
  if (child.exitCode !== null || child.signalCode !== null) return;
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  child.kill("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (!exited && Date.now() < deadline && (await portOpen(running.etcdPeerPort))) {
    await Promise.race([gone, new Promise((r) => setTimeout(r, 100))]);
  }
  if (!exited) child.kill("SIGKILL");
  await gone;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, timeout: 1000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function tail(file: string, lines = 40): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").slice(-lines).join("\n");
}

function run(cmd: string, args: string[], stdin?: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.stdin.end(stdin ?? "");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`kubectl ${args.join(" ")} failed (${code ?? signal}):\n${stderr}${stdout}`));
    });
  });
}
