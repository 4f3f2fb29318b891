// The kcp scenario: the same burst against kcp workspaces and against namespaces on the public
// kube-apiserver, in one run, each next to its own raw ceiling. kcp: a real kcp (envtest/kcp.ts) with
// audit logging, the provider workspace root:internal-services with deploy/kcp applied, N tenant
// workspaces each binding the export with deploy/kcp/apibinding-tenant.yaml, and the controller
// process serving them with --kcp-export as the least-privilege ServiceAccount of deploy/kcp (a
// bound token). kube-apiserver: N namespaces, the controller as in scenario 1. The order alternates:
// burst on the kube-apiserver, burst on kcp, then the raw ceiling of each.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ensureKcp } from "../../envtest/binaries.ts";
import { type Kcp, type KcpWorkspace, startKcp } from "../../envtest/kcp.ts";
import { AuditLog, auditArgs, auditPolicyYaml } from "./audit.ts";
import { type BaselineResult, rawBaseline } from "./baseline.ts";
import { paths, RawClient } from "./http.ts";
import { benchUser } from "./planes.ts";
import {
  type BenchContext,
  createNamespaces,
  drive,
  type LoadResult,
  type LoadSetup,
  newTag,
  type RemoteSide,
  setupPrivate,
  withSetup,
} from "./scenarios.ts";
import { type Proc, planeProcs, type ServerFigures, serversDuring } from "./servers.ts";
import { pool, round, waitFor } from "./stats.ts";

export const exportName = "internal-services";
const providerName = "internal-services";
const identity = { namespace: "internal-services-remote", name: "internal-service-controller-remote" };
/** kcp's admin user (admin.kubeconfig's token): the tenants' identity in this bench. */
const kcpAdminUser = "kcp-admin";

export interface BenchKcp {
  kcp: Kcp;
  version: string;
  provider: KcpWorkspace;
  /** kcp's admin, for the whole shard (paths under /clusters/<path>). */
  admin: RawClient;
  auditFile: string;
  /** The controller's identity in kcp (deploy/kcp's ServiceAccount), as audit events name it. */
  controllerUser: string;
  stop(): Promise<void>;
}

/** A kcp with audit logging, and the provider workspace with deploy/kcp applied. */
export async function startBenchKcp(repoRoot: string, log: (msg: string) => void): Promise<BenchKcp> {
  const dir = await mkdtemp(join(tmpdir(), "isc-bench-kcp-"));
  const policyFile = join(dir, "audit-policy.yaml");
  const auditFile = join(dir, "audit.log");
  await writeFile(policyFile, auditPolicyYaml);
  await writeFile(auditFile, "");
  const binary = await ensureKcp();
  // The same policy and backend as the kube-apiservers', to a file of its own. A file is rotated at
  // --audit-log-maxsize MB, and 0 means lumberjack's default of 100, which a burst of 500 passes
  // (kcp's events carry the warrants, tens of kilobytes each): 1 TiB instead, i.e. never.
  const args = auditArgs(policyFile).map((a) =>
    a === "--audit-log-path=-"
      ? `--audit-log-path=${auditFile}`
      : a === "--audit-log-maxsize=0"
        ? "--audit-log-maxsize=1048576"
        : a,
  );
  let kcp: Kcp | undefined;
  try {
    kcp = await startKcp({ args });
    log(`kcp ready in ${(kcp.readyMs / 1000).toFixed(1)}s (from the ${kcp.startedFrom} root directory)`);
    const provider = await kcp.createWorkspace(providerName);
    await kcp.apply(provider.path, await kcp.kustomize(join(repoRoot, "deploy/kcp")));
    const user = kcp.adminKubeConfig.getCurrentUser();
    if (!user?.token) throw new Error("kcp's admin kubeconfig has no token");
    const admin = new RawClient({ name: "kcp", server: kcp.url, caPem: kcp.ca, token: user.token });
    log(`provider workspace ${provider.path}: deploy/kcp applied`);
    const running = kcp;
    return {
      kcp,
      version: /kcp-(v[^/]+)/.exec(binary)?.[1] ?? "unknown",
      provider,
      admin,
      auditFile,
      controllerUser: `system:serviceaccount:${identity.namespace}:${identity.name}`,
      stop: async () => {
        admin.close();
        await running.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await kcp?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface KcpSide {
  /** "kcp" or "kube-apiserver". */
  platform: string;
  burst: LoadResult;
  baseline: BaselineResult;
  /** Raw ceiling in requests/s: the plain client's writes/s divided by the writes a request needs. */
  ceilingRequestsPerSecond: number;
  /** The servers' CPU during the burst (the remote side's first), and during the raw ceiling. */
  servers: ServerFigures[];
  baselineServers: ServerFigures[];
  /**
   * kcp: the same raw ceiling with the controller's writes made through the virtual workspace as
   * kcp's admin instead of the ServiceAccount, to show what the identity costs there.
   */
  adminBaseline?: { baseline: BaselineResult; ceilingRequestsPerSecond: number; servers: ServerFigures[] };
}

export interface KcpResult {
  kcpVersion: string;
  /** Tenant workspaces on kcp, and namespaces on the kube-apiserver. */
  workspaces: number;
  requests: number;
  inFlight: number;
  setup: {
    kcpReadyMs: number;
    kcpStartedFrom: string;
    /** Creating the tenant workspaces (until Ready), binding the export in each (until Bound and served). */
    workspacesS: number;
    bindS: number;
  };
  /** The phases, in the order they ran. */
  order: string[];
  kube: KcpSide;
  kcp: KcpSide;
}

/** Tenant workspaces ws-0..count-1, each binding the export; resolves once the API is served in each. */
async function tenants(
  ctx: BenchContext,
  k: BenchKcp,
  count: number,
): Promise<{ workspaces: KcpWorkspace[]; workspacesS: number; bindS: number }> {
  const started = performance.now();
  const workspaces: KcpWorkspace[] = new Array(count);
  await pool(count, 10, async (i) => {
    workspaces[i] = await k.kcp.createWorkspace(`ws-${i}`);
  });
  const workspacesS = (performance.now() - started) / 1000;
  ctx.log(`  ${count} tenant workspaces Ready in ${workspacesS.toFixed(1)}s`);

  const binding = parse(await readFile(join(ctx.repoRoot, "deploy/kcp/apibinding-tenant.yaml"), "utf8"));
  const bindStarted = performance.now();
  await pool(count, 10, async (i) => {
    const prefix = `/clusters/${(workspaces[i] as KcpWorkspace).path}`;
    await k.admin.retrying("POST", `${prefix}/apis/apis.kcp.io/v1alpha2/apibindings`, binding);
  });
  // Bound, and the InternalRequest API served (a list answers 200, not 404).
  const served = new Set<number>();
  const ok = await waitFor(
    async () => {
      await pool(count, 10, async (i) => {
        if (served.has(i)) return;
        const prefix = `/clusters/${(workspaces[i] as KcpWorkspace).path}`;
        // 404 until the API is served; 429 while kcp (re)initializes its storage for it.
        const notYet = [404, 429, 503];
        try {
          const b = await k.admin.call(
            "GET",
            `${prefix}/apis/apis.kcp.io/v1alpha2/apibindings/${exportName}`,
            undefined,
            undefined,
            notYet,
          );
          if ((JSON.parse(b.text) as { status?: { phase?: string } }).status?.phase !== "Bound") return;
          const list = await k.admin.call(
            "GET",
            `${prefix}${paths.requests("default")}?limit=1`,
            undefined,
            undefined,
            notYet,
          );
          if (list.status === 200) served.add(i);
        } catch {
          // not yet (a connection kcp dropped while busy): the next round asks again
        }
      });
      return served.size === count;
    },
    180_000,
    250,
  );
  if (!ok) throw new Error(`the export was bound in ${served.size} of ${count} workspaces after 180 s`);
  const bindS = (performance.now() - bindStarted) / 1000;
  ctx.log(`  the export bound and served in all ${count} in ${bindS.toFixed(1)}s`);
  return { workspaces, workspacesS, bindS };
}

/** The export's virtual workspace URL (its endpoint slice's, once a workspace has bound it). */
async function virtualWorkspace(k: BenchKcp): Promise<string> {
  let url: string | undefined;
  await waitFor(
    async () => {
      const res = await k.admin.call(
        "GET",
        `/clusters/${k.provider.path}/apis/apis.kcp.io/v1alpha1/apiexportendpointslices/${exportName}`,
      );
      url = (JSON.parse(res.text) as { status?: { endpoints?: { url?: string }[] } }).status?.endpoints?.[0]
        ?.url;
      return url !== undefined;
    },
    60_000,
    250,
  );
  if (!url) throw new Error(`the endpoint slice ${exportName} lists no URL`);
  return url;
}

const baselineLine = (b: BaselineResult) =>
  `${b.writesPerSecond} writes/s, ${b.requestsPerSecond} req/s at ${b.writesPerRequest} writes/request; write RTT p50 ${b.writeRtt.p50} p99 ${b.writeRtt.p99} ms`;

/**
 * `count` requests over `workspaces` kcp workspaces and as many kube-apiserver namespaces, `inFlight`
 * at a time, each with a fresh controller; then each side's raw ceiling. `summary` prints a burst.
 */
export async function kcpComparison(
  ctx: BenchContext,
  k: BenchKcp,
  count: number,
  workspaceCount: number,
  inFlight: number,
  summary: (l: LoadResult) => string,
): Promise<KcpResult> {
  const { bench } = ctx;
  const procs = await planeProcs(ctx);
  const kcpProc: Proc = { name: "kcp (its etcd embedded)", pid: k.kcp.pid };
  // The remote server, then the shared ones, then the other side's remote server: idle meanwhile, but
  // on the same cores.
  const kubeProcs = [procs.public, procs.etcd, procs.private, { ...kcpProc, name: "kcp, idle meanwhile" }];
  const kcpProcs = [
    kcpProc,
    procs.etcd,
    procs.private,
    { ...procs.public, name: "kube-apiserver (public), idle meanwhile" },
  ];
  const order: string[] = [];

  // kcp: tenants, the controller's kubeconfig (the ServiceAccount's bound token), its private side.
  ctx.log(`kcp: ${workspaceCount} tenant workspaces binding ${exportName}`);
  const { workspaces, workspacesS, bindS } = await tenants(ctx, k, workspaceCount);
  const token = await k.kcp.createToken(k.provider.path, identity.namespace, identity.name, 7200);
  const kubeconfig = join(ctx.workDir, "kcp-provider.kubeconfig");
  await writeFile(
    kubeconfig,
    k.kcp.tokenKubeConfig(`${k.kcp.url}/clusters/${k.provider.path}`, token).exportConfig(),
    { mode: 0o600 },
  );
  const kcpTag = newTag(`kcp${count}`);
  const kcpPrivateNs = await setupPrivate(
    bench.raw.private,
    kcpTag,
    workspaces.map((w) => `${w.path}/default`),
  );
  const remote: RemoteSide = {
    raw: k.admin,
    slots: workspaces.map((w) => ({ prefix: `/clusters/${w.path}`, namespace: "default" })),
    watchKubeConfigs: workspaces.map((w) => w.kubeConfig),
    audit: new AuditLog(
      { public: k.auditFile, private: bench.auditFiles.private },
      { public: k.controllerUser, private: bench.controllerUser },
      { public: kcpAdminUser, private: benchUser },
    ),
  };

  // kube-apiserver: as many namespaces, the controller as in scenario 1.
  const kubeTag = newTag(`kube${count}`);
  const namespaces = await createNamespaces(bench.raw.public, kubeTag, workspaceCount);
  const kubePrivateNs = await setupPrivate(bench.raw.private, kubeTag, namespaces);

  const run = (setup: LoadSetup, servers: Proc[]) =>
    serversDuring(servers, () => drive(ctx, setup, "requests", count, inFlight));

  ctx.log(
    `kube-apiserver: burst of ${count} requests over ${workspaceCount} namespaces, ${inFlight} in flight`,
  );
  const kube = await withSetup(ctx, kubeTag, namespaces, kubePrivateNs, (setup) => run(setup, kubeProcs));
  order.push("kube-apiserver burst");
  ctx.log(`  ${summary(kube.result)}`);

  ctx.log(`kcp: burst of ${count} requests over ${workspaceCount} workspaces, ${inFlight} in flight`);
  const kcp = await withSetup(
    ctx,
    kcpTag,
    workspaces.map((w) => w.path),
    kcpPrivateNs,
    (setup) => run(setup, kcpProcs),
    { kubeconfig, export: exportName, remote },
  );
  kcp.result.scenario = "kcp";
  order.push("kcp burst");
  ctx.log(`  ${summary(kcp.result)}`);

  ctx.log(`kube-apiserver: raw ceiling, a plain client, ${count} requests' writes, ${inFlight} in flight`);
  const kubeBaseline = await serversDuring(kubeProcs, () =>
    rawBaseline(bench, kube.result.writes.controllerByKind, count, workspaceCount, inFlight, ctx.log),
  );
  order.push("kube-apiserver raw ceiling");
  ctx.log(`  ${baselineLine(kubeBaseline.result)}`);

  // The plain client as the tenants and the controller: creates in the workspaces as kcp's admin, the
  // controller's writes through the virtual workspace as its ServiceAccount, in the same workspaces.
  const vwUrl = await virtualWorkspace(k);
  const kcpBaselineAs = async (who: string, client: RawClient) => {
    try {
      return await serversDuring(kcpProcs, () =>
        rawBaseline(bench, kcp.result.writes.controllerByKind, count, workspaceCount, inFlight, ctx.log, {
          create: k.admin,
          write: client,
          slots: workspaces.map((w) => ({
            namespace: "default",
            createPrefix: `/clusters/${w.path}`,
            writePrefix: `/clusters/${w.logicalCluster}`,
            workspace: w.path,
          })),
        }),
      );
    } finally {
      client.close();
      order.push(`kcp raw ceiling (${who})`);
    }
  };
  ctx.log(
    `kcp: raw ceiling through the virtual workspace as the ServiceAccount, ${count} requests' writes, ${inFlight} in flight`,
  );
  const kcpBaseline = await kcpBaselineAs(
    "the ServiceAccount",
    new RawClient({ name: "kcp-vw", server: vwUrl, caPem: k.kcp.ca, token }),
  );
  ctx.log(`  ${baselineLine(kcpBaseline.result)}`);
  ctx.log(`kcp: the same through the virtual workspace as kcp's admin, for reference`);
  const adminToken = k.kcp.adminKubeConfig.getCurrentUser()?.token as string;
  const adminBaseline = await kcpBaselineAs(
    "kcp's admin",
    new RawClient({ name: "kcp-vw-admin", server: vwUrl, caPem: k.kcp.ca, token: adminToken }),
  );
  ctx.log(`  ${baselineLine(adminBaseline.result)}`);

  const ceiling = (b: BaselineResult) => round(b.writesPerSecond / b.writesPerRequest);
  const side = (
    platform: string,
    r: { result: LoadResult; servers: ServerFigures[] },
    baseline: { result: BaselineResult; servers: ServerFigures[] },
  ): KcpSide => ({
    platform,
    burst: r.result,
    baseline: baseline.result,
    ceilingRequestsPerSecond: ceiling(baseline.result),
    servers: r.servers,
    baselineServers: baseline.servers,
  });
  return {
    kcpVersion: k.version,
    workspaces: workspaceCount,
    requests: count,
    inFlight,
    setup: {
      kcpReadyMs: k.kcp.readyMs,
      kcpStartedFrom: k.kcp.startedFrom,
      workspacesS: round(workspacesS),
      bindS: round(bindS),
    },
    order,
    kube: side("kube-apiserver", kube, kubeBaseline),
    kcp: {
      ...side("kcp", kcp, kcpBaseline),
      adminBaseline: {
        baseline: adminBaseline.result,
        ceilingRequestsPerSecond: ceiling(adminBaseline.result),
        servers: adminBaseline.servers,
      },
    },
  };
}
