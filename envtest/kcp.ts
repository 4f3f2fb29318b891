// Starts a real kcp (one shard, embedded etcd) on loopback ports for the tests that need one: each call
// gets its own root directory, copied from a prepared template (a kcp started once on a fresh
// directory and stopped), which cuts readiness from ~28 s to ~6 s. The template lives next to the
// binary (${XDG_CACHE_HOME:-~/.cache}/internal-service-controller/bin/kcp-<version>/template), is made
// in a temp directory and renamed into place, so concurrent test processes never see half of one.
// Every copy shares the template's CA, service-account signing key and admin token: test use only.
// startShardedKcp() starts several shards behind one front proxy instead (see below; no template).
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CoreV1Api, CustomObjectsApi, KubeConfig, type User } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { ensureKcp, ensureKcpShards, ensureTools } from "./binaries.ts";
import { freePort, kubeconfigYaml } from "./controlplane.ts";
import {
  type KeyAndCert,
  newCertificateAuthority,
  newClientCertificate,
  newServiceAccountKeyPair,
  newServingCertificate,
} from "./pki.ts";
import { runCommand } from "./run-command.ts";
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

/** What a kcp endpoint (one shard, or the front proxy before several) offers a test, as its admin. */
export interface KcpClients {
  /** The base URL, https://127.0.0.1:<port> (workspaces are at /clusters/<path>). */
  url: string;
  /** The serving CA (PEM), and its file. */
  ca: string;
  caPath: string;
  /** An admin kubeconfig (context "root", server <url>/clusters/root), and as a client-node config. */
  adminKubeConfigPath: string;
  adminKubeConfig: KubeConfig;
  /** An admin KubeConfig for a workspace path, e.g. "root:provider". */
  kubeConfig(path: string): KubeConfig;
  /** A KubeConfig for any URL under this kcp (e.g. a virtual workspace's) that authenticates with a token. */
  tokenKubeConfig(server: string, token: string): KubeConfig;
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
  /** The last lines of kcp's log (of each process, when there are several), for failure messages. */
  logTail(lines?: number): Promise<string>;
  /** Stops every process, then removes the root directory. */
  stop(): Promise<void>;
}

export interface Kcp extends KcpClients {
  /** The root directory this kcp runs on (removed by stop()). */
  dir: string;
  pid: number;
  /** How this kcp started: how long copying the template took, and from spawn until /readyz said 200. */
  startedFrom: "template" | "fresh";
  copyMs: number;
  readyMs: number;
  /** Creates a Workspace (type universal: it has a default namespace) and waits until it is Ready. */
  createWorkspace(name: string, parent?: string): Promise<KcpWorkspace>;
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

  const clients = clientsFor(url, ca, adminUser, join(scratch, "kubeconfigs"));

  let stopping: Promise<void> | undefined;
  const kcp: Kcp = {
    ...clients,
    caPath,
    adminKubeConfigPath,
    adminKubeConfig: admin,
    dir,
    pid: child.pid as number,
    startedFrom: template ? "template" : "fresh",
    copyMs,
    readyMs,
    createWorkspace: (name, parent = "root") => clients.createWorkspace(name, { parent }),
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

/** A workspace's placement: the labels of the Shard it must be scheduled on (Workspace spec.location). */
interface WorkspaceOptions {
  parent?: string;
  shardLabels?: Record<string, string>;
}

/** Admin clients, workspaces, kubectl and tokens for one kcp endpoint (a shard, or a front proxy). */
function clientsFor(url: string, ca: string, adminUser: User, kubeconfigFiles: string) {
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
  const writeKubeConfig = async (path: string) => {
    await mkdir(kubeconfigFiles, { recursive: true });
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
  return {
    url,
    ca,
    kubeConfig,
    tokenKubeConfig,
    async createWorkspace(name: string, options: WorkspaceOptions = {}): Promise<KcpWorkspace> {
      const parent = options.parent ?? "root";
      const api = kubeConfig(parent).makeApiClient(CustomObjectsApi);
      const ref = { group: "tenancy.kcp.io", version: "v1alpha1", plural: "workspaces", name };
      const location = options.shardLabels
        ? { location: { selector: { matchLabels: options.shardLabels } } }
        : {};
      await api.createClusterCustomObject({
        ...ref,
        body: {
          apiVersion: "tenancy.kcp.io/v1alpha1",
          kind: "Workspace",
          metadata: { name },
          spec: { type: { name: "universal", path: "root" }, ...location },
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
    async kubectl(path: string, args: string[], stdin?: string) {
      return kubectlIn(await writeKubeConfig(path), args, stdin);
    },
    async apply(path: string, yaml: string) {
      return kubectlIn(await writeKubeConfig(path), ["apply", "--server-side", "-f", "-"], yaml);
    },
    kustomize(base: string) {
      return kubectlIn(undefined, ["kustomize", base]);
    },
    async createToken(path: string, namespace: string, serviceAccount: string, expirationSeconds = 3600) {
      const api = kubeConfig(path).makeApiClient(CoreV1Api);
      const res = await api.createNamespacedServiceAccountToken({
        name: serviceAccount,
        namespace,
        body: { spec: { audiences: [], expirationSeconds } },
      });
      return res.status?.token as string;
    },
  };
}

// ---- Several shards behind one front proxy ----
//
// What kcp's cmd/sharded-test-server sets up (v0.30.0), on free loopback ports instead of its fixed
// ones (6443 for the proxy, 6444+n for the shards, 8010-8012 for the cache, 2379-... for etcd), so
// that several test processes can each run one: a cache server (cmd/cache-server, its own embedded
// etcd; the shards share APIExports, Shards, WorkspaceTypes and the RBAC that grants binding to or
// serving an export through it), the root shard, further shards (--shard-name,
// --root-shard-kubeconfig-file: each registers its Shard object in root), and cmd/kcp-front-proxy,
// which routes /clusters/<path> to the shard that holds it.
// One PKI for all (made here, per start): a serving CA (every server's certificate), a client CA
// (admin, the shards' own identity, the logical-cluster admins), the request-header CA (the proxy's
// identity to the shards, which trust the user it names) and one service-account key pair. With
// --service-account-lookup=false a ServiceAccount's legacy token (a token Secret) works on every
// shard; its bound (TokenRequest) tokens only on its own: kcp v0.30.0 always looks their account up,
// on the shard the request reaches.

export interface KcpShard {
  /** The Shard object's name: "root" for the first, then "shard-1", ... */
  name: string;
  /** Its own URL (its virtual workspaces are at <url>/services/...; the endpoint slice names it). */
  url: string;
  /** The label this harness gives its Shard object (isc.test/shard=<name>), for Workspace placement. */
  labels: Record<string, string>;
  pid: number;
  /** From spawn until its /readyz said 200. */
  readyMs: number;
}

export interface ShardedKcp extends KcpClients {
  /** The front proxy's URL: what people and the controller's kubeconfig use. */
  url: string;
  shards: KcpShard[];
  /** The scratch directory (PKI, kubeconfigs, each process's root directory and log). */
  dir: string;
  /** The cache server's /readyz, the front proxy's, and from the first spawn until every Shard was registered. */
  cacheReadyMs: number;
  proxyReadyMs: number;
  readyMs: number;
  /** Creates a Workspace (type universal) on the named shard (default: kcp chooses) and waits until Ready. */
  createWorkspace(name: string, options?: { parent?: string; shard?: string }): Promise<KcpWorkspace>;
  /** The shard that holds a logical cluster, asked of each shard directly (as system:masters). */
  shardOf(logicalCluster: string): Promise<string | undefined>;
  /**
   * A KubeConfig for any URL under this kcp that authenticates with a new client certificate of the
   * client CA every shard and the proxy trust (user `user`, groups `groups`): an identity that, unlike a
   * ServiceAccount's, every shard knows.
   */
  certKubeConfig(server: string, user: string, groups?: string[]): Promise<KubeConfig>;
}

export interface ShardedKcpOptions {
  /** How many shards, the root one included (default 2). */
  shards?: number;
  /** Extra `kcp start` flags for every shard. */
  shardArgs?: string[];
}

const shardLabel = "isc.test/shard";

/** Starts a cache server, `shards` kcp shards and a front proxy before them, on free loopback ports. */
export async function startShardedKcp(options: ShardedKcpOptions = {}): Promise<ShardedKcp> {
  const count = options.shards ?? 2;
  const binDir = await ensureKcpShards();
  const scratch = await mkdtemp(join(tmpdir(), "isc-kcp-shards-"));
  const procs: Proc[] = [];
  const started = Date.now();
  const env = { ...process.env, UNSAFE_E2E_HACK_DISABLE_ETCD_FSYNC: "true" };
  const stopAll = async () => {
    // The proxy first (it watches the shards), then the shards, then the cache they write to.
    const byRole = (role: Proc["role"]) => procs.filter((p) => p.role === role);
    for (const role of ["proxy", "shard", "cache"] as const) await Promise.all(byRole(role).map(terminate));
    for (const p of procs) p.unguard();
    await rm(scratch, { recursive: true, force: true });
  };
  try {
    const file = (name: string) => join(scratch, name);
    const write = async (name: string, text: string) => {
      await writeFile(file(name), text, { mode: 0o600 });
      return file(name);
    };
    // The PKI.
    const [servingCa, clientCa, requestHeaderCa] = await Promise.all([
      newCertificateAuthority("kcp-serving-ca"),
      newCertificateAuthority("kcp-client-ca"),
      newCertificateAuthority("kcp-front-proxy-requestheader-ca"),
    ]);
    const [serving, admin, shardClient, logicalClusterAdmin, externalLogicalClusterAdmin, proxyClient] =
      await Promise.all([
        newServingCertificate(servingCa),
        newClientCertificate(clientCa, "kcp-admin", ["system:kcp:admin"]),
        newClientCertificate(clientCa, "kcp-shard", ["system:masters"]),
        newClientCertificate(clientCa, "logical-cluster-admin", ["system:kcp:logical-cluster-admin"]),
        newClientCertificate(clientCa, "external-logical-cluster-admin", [
          "system:kcp:external-logical-cluster-admin",
        ]),
        newClientCertificate(requestHeaderCa, "kcp-front-proxy", []),
      ]);
    const serviceAccount = newServiceAccountKeyPair();
    const caPath = await write("serving-ca.crt", servingCa.certPem);
    const clientCaPath = await write("client-ca.crt", clientCa.certPem);
    const requestHeaderCaPath = await write("requestheader-ca.crt", requestHeaderCa.certPem);
    const servingCert = await write("serving.crt", serving.certPem);
    const servingKey = await write("serving.key", serving.keyPem);
    const shardClientCert = await write("shard-client.crt", shardClient.certPem);
    const shardClientKey = await write("shard-client.key", shardClient.keyPem);
    const proxyClientCert = await write("proxy-client.crt", proxyClient.certPem);
    const proxyClientKey = await write("proxy-client.key", proxyClient.keyPem);
    const saPublic = await write("service-account.pub", serviceAccount.publicPem);
    const saPrivate = await write("service-account.key", serviceAccount.privatePem);

    const [proxyPort, cachePort, ...shardPorts] = await freePorts(2 + count);
    const proxyUrl = `https://127.0.0.1:${proxyPort}`;
    const cacheUrl = `https://127.0.0.1:${cachePort}`;
    const shardUrls = shardPorts.map((p) => `https://127.0.0.1:${p}`);
    const rootUrl = shardUrls[0] as string;
    const shardNames = shardUrls.map((_, i) => (i === 0 ? "root" : `shard-${i}`));

    const cacheKubeconfig = await write(
      "cache.kubeconfig",
      kubeconfigYaml("cache", cacheUrl, servingCa.certPem, shardClient),
    );
    // The root shard as system:masters; kcp reads the context "shard-base", the proxy the current one.
    const rootShardKubeconfig = await write(
      "root-shard.kubeconfig",
      kubeconfigYaml("shard-base", rootUrl, servingCa.certPem, shardClient),
    );
    // How the proxy reaches every shard (the server is replaced by each shard's URL).
    const shardsKubeconfig = await write(
      "shards.kubeconfig",
      kubeconfigYaml("base", rootUrl, servingCa.certPem, shardClient),
    );
    const logicalClusterAdminKubeconfig = await write(
      "logical-cluster-admin.kubeconfig",
      kubeconfigYaml("base", rootUrl, servingCa.certPem, logicalClusterAdmin),
    );
    const externalLogicalClusterAdminKubeconfig = await write(
      "external-logical-cluster-admin.kubeconfig",
      kubeconfigYaml("base", proxyUrl, servingCa.certPem, externalLogicalClusterAdmin),
    );
    const adminKubeConfigPath = await write(
      "admin.kubeconfig",
      kubeconfigYaml("root", `${proxyUrl}/clusters/root`, servingCa.certPem, admin),
    );
    const tls = [`--tls-cert-file=${servingCert}`, `--tls-private-key-file=${servingKey}`];

    // The cache server.
    const [cacheEtcdClient, cacheEtcdPeer] = await freePorts(2);
    const cache = spawnGuarded("cache", join(binDir, "cache-server"), file("cache.log"), env, cacheEtcdPeer, [
      `--root-directory=${file("cache")}`,
      "--bind-address=127.0.0.1",
      `--secure-port=${cachePort}`,
      `--embedded-etcd-client-port=${cacheEtcdClient}`,
      `--embedded-etcd-peer-port=${cacheEtcdPeer}`,
      ...tls,
    ]);
    procs.push(cache);
    await waitReady(cache, `${cacheUrl}/readyz`, servingCa.certPem);
    const cacheReadyMs = Date.now() - started;

    // The shards: all at once (the others register with the root shard once it answers).
    const shardProcs: Proc[] = [];
    for (const [i, shardUrl] of shardUrls.entries()) {
      const [etcdClient, etcdPeer] = await freePorts(2);
      const name = shardNames[i] as string;
      const args = [
        "start",
        `--root-directory=${file(name)}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${shardPorts[i]}`,
        `--embedded-etcd-client-port=${etcdClient}`,
        `--embedded-etcd-peer-port=${etcdPeer}`,
        ...tls,
        `--client-ca-file=${clientCaPath}`,
        `--requestheader-client-ca-file=${requestHeaderCaPath}`,
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        `--service-account-key-file=${saPublic}`,
        `--service-account-signing-key-file=${saPrivate}`,
        `--service-account-private-key-file=${saPrivate}`,
        "--service-account-lookup=false",
        `--shard-base-url=${shardUrl}`,
        `--shard-external-url=${proxyUrl}`,
        `--shard-virtual-workspace-ca-file=${caPath}`,
        `--shard-client-cert-file=${shardClientCert}`,
        `--shard-client-key-file=${shardClientKey}`,
        `--logical-cluster-admin-kubeconfig=${logicalClusterAdminKubeconfig}`,
        `--external-logical-cluster-admin-kubeconfig=${externalLogicalClusterAdminKubeconfig}`,
        `--cache-kubeconfig=${cacheKubeconfig}`,
        ...(i === 0 ? [] : [`--shard-name=${name}`, `--root-shard-kubeconfig-file=${rootShardKubeconfig}`]),
        ...(options.shardArgs ?? []),
      ];
      const proc = spawnGuarded("shard", join(binDir, "kcp"), file(`${name}.log`), env, etcdPeer, args, name);
      procs.push(proc);
      shardProcs.push(proc);
    }
    const shardReady = await Promise.all(
      shardProcs.map(async (p, i) => {
        await waitReady(p, `${shardUrls[i]}/readyz`, servingCa.certPem);
        return Date.now() - p.startedAt;
      }),
    );

    // The front proxy: /clusters/ by its index of the shards' workspaces (the backend named here is
    // not used), /services/ to the root shard's virtual workspaces.
    const mapping = (path: string, backend: string) => ({
      path,
      backend,
      backend_server_ca: caPath,
      proxy_client_cert: proxyClientCert,
      proxy_client_key: proxyClientKey,
    });
    const mappingFile = await write(
      "mapping.yaml",
      stringify([mapping("/services/", rootUrl), mapping("/clusters/", rootUrl)]),
    );
    const proxyStarted = Date.now();
    const proxy = spawnGuarded("proxy", join(binDir, "kcp-front-proxy"), file("proxy.log"), env, undefined, [
      "--bind-address=127.0.0.1",
      `--secure-port=${proxyPort}`,
      `--mapping-file=${mappingFile}`,
      `--root-directory=${file("proxy")}`,
      `--root-kubeconfig=${rootShardKubeconfig}`,
      `--shards-kubeconfig=${shardsKubeconfig}`,
      `--client-ca-file=${clientCaPath}`,
      ...tls,
    ]);
    procs.push(proxy);
    await waitReady(proxy, `${proxyUrl}/readyz`, servingCa.certPem, admin);
    const proxyReadyMs = Date.now() - proxyStarted;

    const adminKubeConfig = new KubeConfig();
    adminKubeConfig.loadFromFile(adminKubeConfigPath);
    const adminUser = adminKubeConfig.getCurrentUser() as User;
    const clients = clientsFor(proxyUrl, servingCa.certPem, adminUser, file("kubeconfigs"));

    // Every shard registered in root (through the proxy), labelled for Workspace placement.
    const shardsApi = clients.kubeConfig("root").makeApiClient(CustomObjectsApi);
    const shardRef = { group: "core.kcp.io", version: "v1alpha1", plural: "shards" };
    await eventually(
      async () => {
        const list = (await shardsApi.listClusterCustomObject(shardRef)) as {
          items: { metadata: { name: string } }[];
        };
        const names = new Set(list.items.map((i) => i.metadata.name));
        return shardNames.every((n) => names.has(n));
      },
      `Shards ${shardNames.join(", ")} registered in root`,
      readyTimeoutMs,
    );
    for (const name of shardNames)
      await clients.kubectl("root", ["label", "--overwrite", "shard", name, `${shardLabel}=${name}`]);
    const readyMs = Date.now() - started;

    const shards: KcpShard[] = shardNames.map((name, i) => ({
      name,
      url: shardUrls[i] as string,
      labels: { [shardLabel]: name },
      pid: shardProcs[i]?.child.pid as number,
      readyMs: shardReady[i] as number,
    }));
    let stopping: Promise<void> | undefined;
    // A process that dies under a test fails it with ECONNREFUSED: say which one, and what it logged.
    for (const p of procs) {
      p.child.once("exit", (code, signal) => {
        if (stopping) return;
        void tail(p.logFile, 30).then((last) =>
          process.stderr.write(
            `kcp: ${p.name} exited (${code ?? signal}) while in use; its log ends:\n${last}\n`,
          ),
        );
      });
    }
    const sharded: ShardedKcp = {
      ...clients,
      caPath,
      adminKubeConfigPath,
      adminKubeConfig,
      shards,
      dir: scratch,
      cacheReadyMs,
      proxyReadyMs,
      readyMs,
      createWorkspace(name, opts = {}) {
        const shard = opts.shard === undefined ? undefined : shards.find((s) => s.name === opts.shard);
        if (opts.shard !== undefined && !shard) throw new Error(`no shard ${opts.shard}`);
        return clients.createWorkspace(name, { parent: opts.parent, shardLabels: shard?.labels });
      },
      async shardOf(logicalCluster) {
        for (const shard of shards) {
          const url = `${shard.url}/clusters/${logicalCluster}/apis/core.kcp.io/v1alpha1/logicalclusters/cluster`;
          if ((await httpStatus(url, servingCa.certPem, shardClient)) === 200) return shard.name;
        }
        return undefined;
      },
      async certKubeConfig(server, user, groups = []) {
        const cert = await newClientCertificate(clientCa, user, groups);
        const kc = new KubeConfig();
        kc.loadFromString(kubeconfigYaml(user, server, servingCa.certPem, cert));
        return kc;
      },
      async logTail(lines = 40) {
        const logs = ["cache", ...shardNames, "proxy"].map(
          async (n) => `--- ${n}\n${await tail(file(`${n}.log`), lines)}`,
        );
        return (await Promise.all(logs)).join("\n");
      },
      stop() {
        stopping ??= stopAll();
        return stopping;
      },
    };
    return sharded;
  } catch (err) {
    const logs = await Promise.all(procs.map(async (p) => `--- ${p.name}\n${await tail(p.logFile, 20)}`));
    await stopAll();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs.join("\n")}`);
  }
}

interface Proc {
  role: "cache" | "shard" | "proxy";
  name: string;
  child: ChildProcess;
  logFile: string;
  startedAt: number;
  /** Its embedded etcd's peer port (terminate() waits for it to close), if it has one. */
  etcdPeerPort?: number;
  /** Why it could not be spawned. */
  error?: Error;
  unguard(): void;
}

function spawnGuarded(
  role: Proc["role"],
  binary: string,
  logFile: string,
  env: NodeJS.ProcessEnv,
  etcdPeerPort: number | undefined,
  args: string[],
  name: string = role,
): Proc {
  const log = openSync(logFile, "a");
  const child = spawn(binary, args, { stdio: ["ignore", log, log], env });
  closeSync(log);
  const proc: Proc = {
    role,
    name,
    child,
    logFile,
    startedAt: Date.now(),
    etcdPeerPort,
    unguard: guard(child),
  };
  child.once("error", (err) => {
    proc.error = err;
  });
  return proc;
}

/** Polls `url` until it answers 200, failing when the process exits first or after readyTimeoutMs. */
async function waitReady(proc: Proc, url: string, ca: string, client?: KeyAndCert): Promise<void> {
  const deadline = proc.startedAt + readyTimeoutMs;
  for (;;) {
    const { child } = proc;
    if (proc.error) throw new Error(`${proc.name} could not start: ${proc.error.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${proc.name} exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    }
    if ((await httpStatus(url, ca, client)) === 200) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} was not ready within ${readyTimeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < n && tries < n * 10; tries++) ports.add(await freePort());
  if (ports.size < n) throw new Error(`could not find ${n} free ports`);
  return [...ports];
}

function httpStatus(url: string, ca: string, client?: KeyAndCert): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { ca, cert: client?.certPem, key: client?.keyPem, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
    req.on("timeout", () => req.destroy());
    req.end();
  });
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
async function terminate(
  running: { child: ChildProcess; etcdPeerPort?: number },
  graceMs = 15_000,
): Promise<void> {
  const { child } = running;
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  child.kill("SIGTERM");
  const deadline = Date.now() + graceMs;
  // Without an etcd (the front proxy), until it exits or the grace ends.
  while (
    !exited &&
    Date.now() < deadline &&
    (running.etcdPeerPort === undefined || (await portOpen(running.etcdPeerPort)))
  ) {
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

/** kubectl's output; rejects, with what it said, when it fails. */
async function run(cmd: string, args: string[], stdin?: string): Promise<string> {
  const r = await runCommand(cmd, args, { stdin });
  if (r.code === 0) return r.stdout;
  throw new Error(`kubectl ${args.join(" ")} failed (${r.code ?? r.signal}):\n${r.stderr}${r.stdout}`);
}

/** The phase of a workspace's APIBinding `name` (e.g. "Bound"), undefined while it has none. */
export async function bindingPhase(kubeConfig: KubeConfig, name: string): Promise<string | undefined> {
  const binding = (await kubeConfig.makeApiClient(CustomObjectsApi).getClusterCustomObject({
    group: "apis.kcp.io",
    version: "v1alpha2",
    plural: "apibindings",
    name,
  })) as { status?: { phase?: string } };
  return binding.status?.phase;
}
