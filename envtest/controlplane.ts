// Starts one etcd and two kube-apiservers ("public" and "private") on loopback, as controller-runtime's
// envtest does, with RBAC on and a fresh PKI per plane. Everything lives in one temp dir that stop()
// removes.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { ensureBinaries } from "./binaries.ts";
import {
  type KeyAndCert,
  newCertificateAuthority,
  newClientCertificate,
  newServiceAccountKeyPair,
  newServingCertificate,
} from "./pki.ts";

export type PlaneName = "public" | "private";

export interface Plane {
  name: PlaneName;
  server: string;
  /** Kubeconfig with cluster-admin credentials (group system:masters), context named after the plane. */
  kubeconfigPath: string;
  caPem: string;
}

/** Where running planes are, as written to a state file for other processes (tests, env:down). */
export interface PlanesState {
  dir: string;
  public: Plane;
  private: Plane;
  pids: number[];
}

export interface ControlPlanes extends PlanesState {
  /** Stops one plane's kube-apiserver (SIGKILL) and starts it again on the same port and storage. */
  restartApiserver(name: PlaneName): Promise<void>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Leave the processes running after this process exits (for `npm run env:up`). */
  detached?: boolean;
  /** Extra kube-apiserver flags for both planes (e.g. --watch-cache=false for fault tests). */
  apiserverArgs?: string[];
  /** Extra etcd flags (e.g. a larger --quota-backend-bytes for the hostile benchmark). */
  etcdArgs?: string[];
}

const readyTimeoutMs = 120_000;

export async function startControlPlanes(options: StartOptions = {}): Promise<ControlPlanes> {
  const bin = await ensureBinaries();
  const dir = await mkdtemp(join(tmpdir(), "isc-controlplanes-"));
  const children: ChildProcess[] = [];
  const stop = async () => {
    // children[0] is etcd. The kube-apiservers go first: with etcd stopped under them, each takes
    // about 10 s to shut down instead of about 1.5 s.
    const [etcd, ...apiservers] = children;
    await Promise.all(apiservers.map(terminate));
    if (etcd) await terminate(etcd);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const etcdUrl = await startEtcd(bin.etcd, dir, children, options);
    const [publicPlane, privatePlane] = await Promise.all(
      (["public", "private"] as const).map((name) =>
        startApiserver(name, bin.kubeApiserver, etcdUrl, dir, children, options),
      ),
    );
    const planes = { public: publicPlane, private: privatePlane } as Record<PlaneName, RunningApiserver>;
    return {
      dir,
      public: planes.public.plane,
      private: planes.private.plane,
      pids: children.map((c) => c.pid as number),
      restartApiserver: (name) => planes[name].restart(),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startEtcd(
  binary: string,
  dir: string,
  children: ChildProcess[],
  options: StartOptions,
): Promise<string> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = launch(
    binary,
    [
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=default=${peer}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
      ...(options.etcdArgs ?? []),
    ],
    join(dir, "etcd.log"),
    options,
  );
  children.push(child);
  await waitUntil("etcd", child, join(dir, "etcd.log"), () => httpOk(`${url}/health`));
  return url;
}

interface RunningApiserver {
  plane: Plane;
  restart(): Promise<void>;
}

async function startApiserver(
  name: PlaneName,
  binary: string,
  etcdUrl: string,
  root: string,
  children: ChildProcess[],
  options: StartOptions,
): Promise<RunningApiserver> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const ca = await newCertificateAuthority(`isc-${name}-ca`);
  const serving = await newServingCertificate(ca);
  const admin = await newClientCertificate(ca, "isc-admin", ["system:masters"]);
  const serviceAccount = newServiceAccountKeyPair();
  const file = (base: string) => join(dir, base);
  await Promise.all([
    writeFile(file("ca.crt"), ca.certPem),
    writeFile(file("serving.crt"), serving.certPem),
    writeFile(file("serving.key"), serving.keyPem, { mode: 0o600 }),
    writeFile(file("sa.pub"), serviceAccount.publicPem),
    writeFile(file("sa.key"), serviceAccount.privatePem, { mode: 0o600 }),
  ]);
  const port = await freePort();
  const server = `https://127.0.0.1:${port}`;
  const log = file("kube-apiserver.log");
  const args = [
    `--etcd-servers=${etcdUrl}`,
    `--etcd-prefix=/registry-${name}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${file("serving.crt")}`,
    `--tls-private-key-file=${file("serving.key")}`,
    `--client-ca-file=${file("ca.crt")}`,
    `--secure-port=${port}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    "--authorization-mode=RBAC",
    "--service-cluster-ip-range=10.0.0.0/24",
    `--service-account-issuer=https://${name}.isc.test`,
    `--service-account-key-file=${file("sa.pub")}`,
    `--service-account-signing-key-file=${file("sa.key")}`,
    "--allow-privileged=true",
    "--disable-admission-plugins=ServiceAccount",
    "--endpoint-reconciler-type=none",
    ...(options.apiserverArgs ?? []),
  ];
  let child: ChildProcess;
  const launchAndWait = async () => {
    child = launch(binary, args, log, options);
    children.push(child);
    const running = child;
    await waitUntil(`kube-apiserver (${name})`, running, log, () =>
      httpOk(`${server}/readyz`, ca.certPem, admin),
    );
  };
  await launchAndWait();
  const kubeconfigPath = file("kubeconfig");
  await writeFile(kubeconfigPath, kubeconfigYaml(name, server, ca.certPem, admin), { mode: 0o600 });
  const restart = async () => {
    const old = child;
    if (old.exitCode === null && old.signalCode === null) {
      const exited = new Promise<void>((resolve) => old.once("exit", () => resolve()));
      old.kill("SIGKILL");
      await exited;
    }
    children.splice(children.indexOf(old), 1);
    await launchAndWait();
  };
  return { plane: { name, server, kubeconfigPath, caPem: ca.certPem }, restart };
}

/** A kubeconfig with one cluster, user and context, all named `name`; credentials are embedded. */
export function kubeconfigYaml(
  name: string,
  server: string,
  caPem: string,
  credentials: KeyAndCert | { token: string },
  namespace?: string,
): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const user =
    "token" in credentials
      ? { token: credentials.token }
      : { "client-certificate-data": b64(credentials.certPem), "client-key-data": b64(credentials.keyPem) };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name, cluster: { server, "certificate-authority-data": b64(caPem) } }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: name, user: name, ...(namespace ? { namespace } : {}) } }],
    "current-context": name,
  });
}

function launch(binary: string, args: string[], logFile: string, options: StartOptions): ChildProcess {
  const log = openSync(logFile, "a");
  const child = spawn(binary, args, { stdio: ["ignore", log, log], detached: options.detached ?? false });
  if (options.detached) child.unref();
  return child;
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function waitUntil(
  what: string,
  child: ChildProcess,
  logFile: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${what} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${await tail(logFile)}`,
      );
    }
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} was not ready within ${readyTimeoutMs / 1000}s:\n${await tail(logFile)}`);
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").slice(-30).join("\n");
}

function httpOk(url: string, caPem?: string, client?: KeyAndCert): Promise<boolean> {
  return new Promise((resolve) => {
    const tls = url.startsWith("https:") ? { ca: caPem, cert: client?.certPem, key: client?.keyPem } : {};
    const get = url.startsWith("https:") ? request : httpRequest;
    const req = get(url, { ...tls, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}
