// kcp workspaces under faults, on a real kcp (started by this file, its etcd compacted every 2 s and no
// watch cache, so an old resourceVersion soon answers 410) and the shared private plane: the controller
// as a process, killed between creating a private run and recording it, then restarted (exactly one
// run); and the cross-workspace watch of the virtual workspace resuming from a compacted
// resourceVersion (410 Gone, then a relist that hands on every request).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { type Kcp, type KcpWorkspace, startKcp } from "../../envtest/kcp.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { internalRequests, ResourceClient } from "../../src/api/resources.ts";
import { loadKubeConfig } from "../../src/config/kubeconfig.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { requestAnnotation, workspaceAnnotation } from "../../src/requests/naming.ts";
import { Reflector } from "../../src/runtime/reflector.ts";
import { clusterAnnotation } from "../../src/sources/kcp.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";
import { watchIsGone } from "../support/watch-gone.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const kcpDir = join(repoRoot, "deploy/kcp");
const exportName = "internal-services";

describe("kcp workspaces under faults", () => {
  const planes = testPlanes();
  let kcp: Kcp;
  let f: Fixture;
  let tenant: KcpWorkspace;
  /** A tenant whose only request goes while the controller is down. */
  let quiet: KcpWorkspace;
  let provider: KcpWorkspace;
  let token: string;
  let vw: string;
  let dir: string;
  let providerKubeconfig: string;

  const requests = (w = tenant) =>
    new ResourceClient<InternalRequest>(w.kubeConfig, internalRequests, "test");
  const create = (name: string, w = tenant) =>
    requests(w).create("default", {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name },
      spec: { service: "publish" },
    });
  const runsOf = async (name: string, w = tenant) =>
    (await f.tekton.list()).filter(
      (r) =>
        r.metadata?.annotations?.[workspaceAnnotation] === w.path &&
        r.metadata?.annotations?.[requestAnnotation] === `default/${name}`,
    );

  before(async () => {
    kcp = await startKcp({ args: ["--watch-cache=false", "--etcd-compaction-interval=2s"] });
    [provider, tenant, quiet] = await Promise.all([
      kcp.createWorkspace(exportName),
      kcp.createWorkspace("tenant"),
      kcp.createWorkspace("quiet"),
    ]);
    await kcp.apply(provider.path, await kcp.kustomize(kcpDir));
    const binding = await readFile(join(kcpDir, "apibinding-tenant.yaml"), "utf8");
    for (const w of [tenant, quiet]) await kcp.apply(w.path, binding);
    token = await kcp.createToken(
      provider.path,
      "internal-services-remote",
      "internal-service-controller-remote",
    );
    const slice = await eventually(
      async () => {
        const s = (await provider.kubeConfig.makeApiClient(CustomObjectsApi).getClusterCustomObject({
          group: "apis.kcp.io",
          version: "v1alpha1",
          plural: "apiexportendpointslices",
          name: exportName,
        })) as { status?: { endpoints?: { url: string }[] } };
        return s.status?.endpoints?.[0]?.url;
      },
      "the export's virtual workspace URL",
      60_000,
    );
    vw = slice;
    dir = await mkdtemp(join(tmpdir(), "isc-kcp-faults-"));
    providerKubeconfig = join(dir, "provider.kubeconfig");
    await writeFile(
      providerKubeconfig,
      kcp.tokenKubeConfig(`${kcp.url}/clusters/${provider.path}`, token).exportConfig(),
      { mode: 0o600 },
    );
    f = await Fixture.create({
      config: () => ({ allowList: [`${tenant.path}/default`, `${quiet.path}/default`] }),
      services: { publish: { pipeline: { pipelineName: "publish" } } },
      startController: false,
    });
    // The bound API is served in a tenant once the binding is: the first create shows it.
    for (const w of [tenant, quiet]) {
      await eventually(
        async () => {
          try {
            await create("probe", w);
            return true;
          } catch (err) {
            if (apiStatus(err)?.code === 404) return undefined;
            throw err;
          }
        },
        `InternalRequests served in ${w.path}`,
        60_000,
      );
      await requests(w).delete("default", "probe");
    }
  });
  after(async () => {
    await f?.stop();
    await kcp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const processOptions = (env?: Record<string, string>) => ({
    remoteKubeconfig: providerKubeconfig,
    workspaces: [],
    privateKubeconfig: planes.private.kubeconfigPath,
    namespace: f.privateNs,
    extraArgs: ["--leader-elect=false", `--kcp-export=${exportName}`, "--custom-tasks=false"],
    ...(env ? { env } : {}),
  });

  it("never creates a second private run after a crash between create and the status write", async () => {
    const crashing = await ControllerProcess.start(
      processOptions({ ISC_TEST_FAILPOINT: "crash-after-pipelinerun-create" }),
    );
    await create("crash-1");
    const exit = await crashing.exited;
    assert.equal(
      exit.signal,
      "SIGKILL",
      `the failpoint should have killed the process; logs:\n${crashing.logs}`,
    );
    const [run] = await eventually(async () => {
      const runs = await runsOf("crash-1");
      return runs.length > 0 ? runs : undefined;
    }, "the run created before the crash");
    assert.equal((await requests().get("default", "crash-1")).status?.pipelineRun, undefined);

    // Written while no controller runs: picked up after the restart too.
    await create("while-down");
    const restarted = await ControllerProcess.start(processOptions());
    await restarted.waitForReady();
    const adopted = await eventually(async () => {
      const r = await requests().get("default", "crash-1");
      return r.status?.pipelineRun ? r : undefined;
    }, `crash-1 adopted; logs:\n${restarted.logs}`);
    assert.equal(adopted.status?.pipelineRun, `${f.privateNs}/${run?.metadata?.name}`);
    assert.equal((await runsOf("crash-1")).length, 1, "exactly one run");
    await f.tekton.succeed(run?.metadata?.name as string);
    const [late] = await eventually(async () => {
      const runs = await runsOf("while-down");
      return runs.length > 0 ? runs : undefined;
    }, "the run of the request made while down");
    await f.tekton.succeed(late?.metadata?.name as string);
    for (const name of ["crash-1", "while-down"]) {
      await eventually(async () => {
        const r = await requests().get("default", name);
        return r.status?.conditions?.[0]?.reason === "Succeeded" ? r : undefined;
      }, `${name} Succeeded`);
      assert.equal((await runsOf(name)).length <= 1, true, `${name}: never two runs`);
    }
    await restarted.kill("SIGTERM");
  });

  it("cancels a run whose request went while it was down, in a workspace with no request left", async () => {
    const controller = await ControllerProcess.start(processOptions());
    await controller.waitForReady();
    await create("orphan", quiet);
    const [run] = await eventually(async () => {
      const runs = await runsOf("orphan", quiet);
      return runs.length > 0 ? runs : undefined;
    }, "the orphan's run");
    await eventually(async () => {
      const r = await requests(quiet).get("default", "orphan");
      return r.status?.pipelineRun ? r : undefined;
    }, "the run recorded");
    await controller.kill("SIGTERM");
    // While it is down the tenant deletes the request, and takes the controller's finalizer off too.
    await requests(quiet).mergePatch("default", "orphan", { metadata: { finalizers: null } });
    await requests(quiet)
      .delete("default", "orphan")
      .catch(() => undefined);
    await eventually(
      async () => ((await requests(quiet).list("default")).items.length === 0 ? true : undefined),
      "the orphan's request gone",
    );
    const restarted = await ControllerProcess.start(processOptions());
    await restarted.waitForReady();
    await eventually(
      async () => ((await runsOf("orphan", quiet)).length === 0 ? true : undefined),
      `the orphan's run cancelled and deleted; logs:\n${restarted.logs}`,
    );
    assert.match(
      restarted.logs,
      new RegExp(
        `request gone; internal PipelineRun cancelled[^\n]*${run?.metadata?.name}|${run?.metadata?.name}[^\n]*request gone; internal PipelineRun cancelled`,
      ),
    );
    await restarted.kill("SIGTERM");
  });

  it("relists after 410 Gone when the cross-workspace watch resumes from a compacted resourceVersion", async () => {
    // The watch the controller's kcp source runs (<vw>/clusters/*, keyed by logical cluster), through a
    // proxy that can cut it off.
    const proxy = await FaultProxy.start({
      name: "public",
      server: kcp.url,
      caPem: kcp.ca,
      kubeconfigPath: "",
    });
    const viaProxy = `${proxy.url}${new URL(vw).pathname}/clusters/*`;
    const path = join(dir, "via-proxy.kubeconfig");
    const kubeConfig: KubeConfig = kcp.tokenKubeConfig(viaProxy, token);
    kubeConfig.clusters[0] = {
      ...kubeConfig.clusters[0],
      caData: Buffer.from(proxy.caPem).toString("base64"),
    } as never;
    await writeFile(path, kubeConfig.exportConfig(), { mode: 0o600 });
    const seen: string[] = [];
    const reflector = new Reflector<InternalRequest>({
      kubeConfig: loadKubeConfig(path, "test"),
      type: internalRequests,
      key: (r) =>
        `${r.metadata?.annotations?.[clusterAnnotation]}/${r.metadata?.namespace}/${r.metadata?.name}`,
      log: pino({ level: "silent" }),
    });
    reflector.subscribe((key) => seen.push(key));
    await create("before-cut");
    await reflector.start();
    const key = (name: string) => `${tenant.logicalCluster}/default/${name}`;
    assert.ok(reflector.get(key("before-cut")), "listed");

    proxy.faults.down = true;
    proxy.dropAll();
    for (let i = 0; i < 5; i++) await create(`while-cut-${i}`);
    const current = (await requests().list("default")).metadata.resourceVersion;
    await eventually(
      () => watchIsGone(kcp.tokenKubeConfig(`${vw}/clusters/*`, token), undefined, current),
      "the reflector's last resourceVersion compacted away",
      30_000,
      500,
    );
    seen.length = 0;
    const lists = reflector.stats.lists;
    proxy.faults.down = false;
    await eventually(() => reflector.stats.lists > lists || undefined, "relisted", 60_000);
    for (const name of ["before-cut", ...Array.from({ length: 5 }, (_, i) => `while-cut-${i}`)])
      assert.ok(seen.includes(key(name)), `${name} handed on after the relist`);
    reflector.stop();
    await proxy.stop();
  });
});
