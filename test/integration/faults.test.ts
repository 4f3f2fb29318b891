// Reliability under faults, on control planes of its own (this file restarts API servers and cuts
// connections, which must not disturb other test files). Each test is bounded and stops by itself,
// and afterwards checks: every request reached exactly one terminal state, exactly one internal
// PipelineRun was ever created per accepted request, no request was lost, no process leaked.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { adminKubeConfig, mintIdentity } from "../../envtest/cluster.ts";
import { type ControlPlanes, startControlPlanes } from "../../envtest/controlplane.ts";
import { installCrds } from "../../envtest/lifecycle.ts";
import { eventually } from "../../envtest/wait.ts";
import { customRuns, internalRequests, ResourceClient } from "../../src/api/resources.ts";
import { type KubeConfig, loadKubeConfig } from "../../src/config/kubeconfig.ts";
import type { InternalRequest, InternalServiceSpec } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../../src/generated/tekton.ts";
import { requestUidLabel } from "../../src/requests/naming.ts";
import { Reflector } from "../../src/runtime/reflector.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import type { TestPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";
import { watchIsGone } from "../support/watch-gone.ts";

const service: InternalServiceSpec = {
  pipeline: { pipelineName: "publish" },
  paramsSchema: { type: "object", properties: { n: { type: "string" } } },
};

describe("faults", { timeout: 600_000 }, () => {
  let cp: ControlPlanes;
  let planes: TestPlanes;
  const fixtures: Fixture[] = [];
  /** Executors, proxies and processes a failed test may leave running: all stopped in after(). */
  const cleanups: (() => Promise<unknown>)[] = [];
  const track = <
    T extends { stop?: () => Promise<unknown>; kill?: (s?: NodeJS.Signals) => Promise<unknown> },
  >(
    x: T,
  ): T => {
    cleanups.push(() => (x.stop ? x.stop() : (x.kill?.("SIGKILL") ?? Promise.resolve())));
    return x;
  };
  before(async () => {
    // Watches served straight from etcd, compacted every 2 s: an old resourceVersion soon gets 410.
    cp = await startControlPlanes({
      apiserverArgs: ["--watch-cache=false", "--etcd-compaction-interval=2s"],
    });
    await installCrds(cp);
    planes = {
      public: cp.public,
      private: cp.private,
      publicAdmin: adminKubeConfig(cp.public),
      privateAdmin: adminKubeConfig(cp.private),
    };
  });
  after(async () => {
    await Promise.all(cleanups.map((c) => c().catch(() => undefined)));
    await Promise.all(fixtures.map((f) => f.stop()));
    await cp?.stop();
  });

  const setup = async (namespaces = 1) => {
    const f = await Fixture.create({
      planes,
      namespaces,
      // debug keeps every internal PipelineRun, so "exactly one per request" can be counted.
      config: (ns) => ({ allowList: ns, debug: true }),
      services: { publish: service },
      startController: false,
    });
    fixtures.push(f);
    return f;
  };
  /** A cluster-admin identity's kubeconfig that reaches the public plane through a fault proxy. */
  const viaProxy = async (namespace: string, name: string) => {
    const identity = await mintIdentity(cp.public, planes.publicAdmin, {
      namespace,
      name,
      clusterRoleName: "cluster-admin",
    });
    const proxy = track(await FaultProxy.start(cp.public));
    const token = identity.kubeConfig.getCurrentUser()?.token as string;
    const kubeConfig = loadKubeConfig(await proxy.writeKubeconfig(cp.dir, name, token), "test");
    return { proxy, kubeConfig };
  };
  /** A reflector of one namespace's requests, stopped after the test, its debug log kept. */
  const loggedReflector = (kubeConfig: KubeConfig, namespace: string) => {
    const lines: string[] = [];
    const reflector = new Reflector<InternalRequest>({
      kubeConfig,
      type: internalRequests,
      namespace,
      log: pino({ level: "debug" }, { write: (line: string) => lines.push(line) }),
    });
    track({ stop: async () => reflector.stop() });
    return { reflector, lines };
  };
  const processOptions = (
    f: Fixture,
    remote = cp.public.kubeconfigPath,
    privateKc = cp.private.kubeconfigPath,
  ) => ({
    remoteKubeconfig: remote,
    workspaces: [`public=${f.namespaces.join(",")}`],
    privateKubeconfig: privateKc,
    namespace: f.privateNs,
    extraArgs: ["--leader-elect=false", "--log-level=info"],
  });

  /** Every request terminal exactly once (Succeeded), one PipelineRun per request, none stray. */
  const assertExactlyOnce = async (f: Fixture, names: Map<string, string>) => {
    const all = (await Promise.all(f.namespaces.map(async (ns) => (await f.requests.list(ns)).items))).flat();
    assert.equal(all.length, names.size, "no request lost or added");
    for (const r of all) {
      assert.equal(
        r.status?.conditions?.[0]?.reason,
        "Succeeded",
        `${r.metadata.namespace}/${r.metadata.name}`,
      );
      assert.equal(r.status?.conditions?.filter((c) => c.type === "Succeeded").length, 1);
    }
    const runs = await f.tekton.list();
    const byRequest = new Map<string, V1PipelineRun[]>();
    for (const run of runs) {
      const uid = run.metadata?.labels?.[requestUidLabel] as string;
      byRequest.set(uid, [...(byRequest.get(uid) ?? []), run]);
    }
    assert.equal(runs.length, all.length, "exactly one internal PipelineRun per request");
    for (const r of all) assert.equal(byRequest.get(r.metadata.uid as string)?.length, 1, r.metadata.name);
  };

  const waitAllTerminal = (f: Fixture, count: number, timeoutMs = 180_000, logs?: () => string) =>
    eventually(
      async () => {
        const all = (
          await Promise.all(f.namespaces.map(async (ns) => (await f.requests.list(ns)).items))
        ).flat();
        const pending = all.filter(
          (r) => !r.status?.conditions?.[0] || r.status.conditions[0].status === "Unknown",
        );
        if (pending.length === 0 && all.length === count) return true;
        // Thrown, not returned: on timeout the failure then says which requests and where they
        // stand, with their internal PipelineRuns and what the controller logged about them.
        const runs = new Map((await f.tekton.list()).map((r) => [r.metadata?.name, r]));
        const sample = pending.slice(0, 5).map((r) => {
          const runName = r.status?.pipelineRun?.split("/")[1];
          const run = runName ? runs.get(runName) : undefined;
          const runState = run
            ? `run ${JSON.stringify(run.status?.conditions?.[0] ?? "no condition")} completionTime ${run.status?.completionTime ?? "-"} rv ${run.metadata?.resourceVersion}`
            : "no run";
          const lines = (logs?.() ?? "")
            .split("\n")
            .filter((l) => l.includes(`"${r.metadata.name}"`) || (runName && l.includes(runName)));
          return `${r.metadata.namespace}/${r.metadata.name} (finalizers ${JSON.stringify(r.metadata.finalizers ?? [])}, pipelineRun ${r.status?.pipelineRun ?? "-"}, ${r.status?.conditions?.[0]?.message ?? "no condition"}; ${runState}; controller logged:\n${lines.slice(-10).join("\n")})`;
        });
        throw new Error(
          `${all.length} of ${count} requests exist, ${pending.length} not terminal: ${sample.join("; ")}`,
        );
      },
      `${count} requests terminal`,
      timeoutMs,
      250,
    );

  it("survives 20 SIGKILLs at random moments under 300 requests (InternalRequests and CustomRuns)", async () => {
    const f = await setup(3);
    const executor = track(f.tekton.autoComplete());
    const runs = new ResourceClient<V1beta1CustomRun>(planes.publicAdmin, customRuns, "load");
    const names = new Map<string, string>();
    // The load: 200 InternalRequests and 100 CustomRuns (each making one more request), 20 at a time.
    const load = (async () => {
      const jobs = Array.from({ length: 300 }, (_, i) => i);
      const worker = async () => {
        for (let i = jobs.shift(); i !== undefined; i = jobs.shift()) {
          const ns = f.namespaces[i % f.namespaces.length] as string;
          if (i < 200) {
            await f.createRequest(
              `ir-${i}`,
              { service: "publish", params: { n: String(i) } },
              { namespace: ns },
            );
            names.set(`${ns}/ir-${i}`, "ir");
          } else {
            await runs.create(ns, {
              apiVersion: "tekton.dev/v1beta1",
              kind: "CustomRun",
              metadata: { name: `cr-${i}` },
              spec: {
                customRef: {
                  apiVersion: "appstudio.redhat.com/v1alpha1",
                  kind: "InternalRequest",
                  name: "publish",
                },
              },
            });
            names.set(`${ns}/cr-${i}-0`, "cr");
          }
        }
      };
      await Promise.all(Array.from({ length: 20 }, worker));
    })();

    let kills = 0;
    for (; kills < 20; kills++) {
      const controller = track(await ControllerProcess.start(processOptions(f)));
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200)); // a random moment: the fault itself
      await controller.kill("SIGKILL");
    }
    await load;
    const final = track(await ControllerProcess.start(processOptions(f)));
    await waitAllTerminal(f, 300, 180_000, () => final.logs);
    await assertExactlyOnce(f, names);
    for (let i = 200; i < 300; i++) {
      const ns = f.namespaces[i % f.namespaces.length] as string;
      const cr = await runs.get(ns, `cr-${i}`);
      assert.equal(cr.status?.conditions?.[0]?.reason, "Succeeded", `cr-${i}`);
      assert.equal(cr.status?.results?.length, 2);
    }
    await final.kill("SIGTERM");
    assert.equal((await final.exited).code, 0, "graceful shutdown exits 0");
    await executor.stop();
    assert.equal(kills, 20);
  });

  it("rides out restarts of the public, then the private API server mid-load", async () => {
    const f = await setup(1);
    const executor = track(f.tekton.autoComplete());
    const controller = track(await ControllerProcess.start(processOptions(f)));
    await controller.waitForReady();
    const names = new Map<string, string>();
    const create = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        await f.createRequest(`r-${i}`, { service: "publish" });
        names.set(`${f.namespaces[0]}/r-${i}`, "ir");
      }
    };
    await create(0, 30);
    await cp.restartApiserver("public");
    await create(30, 60);
    await cp.restartApiserver("private");
    await create(60, 90);
    await waitAllTerminal(f, 90, 180_000, () => controller.logs);
    await assertExactlyOnce(f, names);
    assert.equal(
      controller.child.exitCode,
      null,
      `the controller stayed up; logs:\n${controller.logs.slice(-2000)}`,
    );
    await controller.kill("SIGTERM");
    await executor.stop();
  });

  it("relists after 410 Gone when its watch resumes from a compacted resourceVersion", async () => {
    const f = await setup(1);
    const executor = track(f.tekton.autoComplete());
    const identity = await mintIdentity(cp.public, planes.publicAdmin, {
      namespace: f.namespaces[0] as string,
      name: "isc-via-proxy",
      clusterRoleName: "cluster-admin",
    });
    const proxy = track(await FaultProxy.start(cp.public));
    const remote = await proxy.writeKubeconfig(
      cp.dir,
      "public",
      identity.kubeConfig.getCurrentUser()?.token as string,
    );
    const controller = track(
      await ControllerProcess.start({
        ...processOptions(f, remote),
        workspaces: [`public=${f.namespaces[0]}`],
        extraArgs: ["--leader-elect=false", "--log-level=debug"],
      }),
    );
    await controller.waitForReady();
    await f.createRequest("before", { service: "publish" });
    await f.waitForReason("before", "Succeeded");

    // Cut the controller off, write while it is away, and wait until every resourceVersion it can
    // have seen is compacted away (the list's resourceVersion is the newest of them all).
    proxy.faults.down = true;
    proxy.dropAll();
    for (let i = 0; i < 20; i++) await f.createRequest(`while-away-${i}`, { service: "publish" });
    const current = (await f.requests.list(f.namespaces[0])).metadata.resourceVersion;
    await eventually(
      // A watch from that resourceVersion answers 410 once etcd has compacted past it.
      () => watchIsGone(planes.publicAdmin, f.namespaces[0] as string, current),
      "the controller's last resourceVersion compacted away",
      30_000,
      500,
    );
    proxy.faults.down = false;
    await waitAllTerminal(f, 21, 60_000, () => controller.logs);
    const watchLines = controller.logs.split("\n").filter((l) => /watch|list/.test(l));
    assert.match(
      watchLines.join("\n"),
      /410|too old|Expired|Gone/i,
      `the controller saw 410 Gone and relisted:\n${watchLines.join("\n")}`,
    );
    await assertExactlyOnce(f, new Map(Array.from({ length: 21 }, (_, i) => [String(i), "ir"])));
    await controller.kill("SIGTERM");
    await proxy.stop();
    await executor.stop();
  });

  it("lists in small pages where the server has no watch-list, and then watches as usual", async () => {
    const f = await setup(1);
    const ns = f.namespaces[0] as string;
    const { proxy, kubeConfig } = await viaProxy(ns, "reflector-no-watch-list");
    proxy.faults.refuseWatchList = true;
    // More than two pages of the fallback's size.
    await Promise.all(
      Array.from({ length: 25 }, (_, i) => f.createRequest(`old-${i}`, { service: "publish" })),
    );
    const seen = new Set<string>();
    const { reflector, lines } = loggedReflector(kubeConfig, ns);
    reflector.subscribe((key) => seen.add(key));
    await reflector.start();
    assert.equal(reflector.list().length, 25);
    assert.equal(seen.size, 25);
    assert.match(lines.join(""), /no watch-list here; listing in pages/);
    await f.createRequest("new", { service: "publish" });
    await eventually(() => reflector.get(`${ns}/new`), "a new request arrives on the watch");
  });

  it("reads the state in pages when a loaded server's watch-list ends in an error, and then watches", async () => {
    const f = await setup(1);
    const ns = f.namespaces[0] as string;
    const { proxy, kubeConfig } = await viaProxy(ns, "reflector-lagging-watch-list");
    proxy.faults.laggingWatchList = true;
    await Promise.all(
      Array.from({ length: 3 }, (_, i) => f.createRequest(`old-${i}`, { service: "publish" })),
    );
    const { reflector, lines } = loggedReflector(kubeConfig, ns);
    // Every watch-list fails: synced all the same, by a paged list after the first failure.
    await reflector.start();
    assert.equal(reflector.list().length, 3);
    assert.match(lines.join(""), /Too large resource version/);
    await f.createRequest("new", { service: "publish" });
    await eventually(() => reflector.get(`${ns}/new`), "a new request arrives on the watch");
  });

  it("a relist hands every object to its handler, also one whose newest version our own write cached", async () => {
    // The controller caches its own writes ahead of their watch events. When the watch is down at
    // that moment and must relist, the event is lost and the listed version equals the cached one:
    // the relist must still hand the key on, or a reconcile that relied on it never happens.
    const f = await setup(1);
    const ns = f.namespaces[0] as string;
    const { proxy, kubeConfig } = await viaProxy(ns, "reflector-via-proxy");
    const seen: string[] = [];
    const reflector = new Reflector<InternalRequest>({
      kubeConfig,
      type: internalRequests,
      namespace: ns,
      log: pino({ level: "silent" }),
    });
    reflector.subscribe((key) => seen.push(key));
    await f.createRequest("mine", { service: "publish" });
    await f.createRequest("other", { service: "publish" });
    await reflector.start();
    track({ stop: async () => reflector.stop() });
    assert.ok(reflector.get(`${ns}/mine`), "listed");

    proxy.faults.down = true;
    proxy.dropAll();
    const written = await f.requests.patchStatus(ns, "mine", {
      conditions: [
        {
          type: "Succeeded",
          status: "Unknown",
          reason: "Running",
          message: "ours",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        },
      ],
    });
    reflector.observe(written);
    const current = (await f.requests.list(ns)).metadata.resourceVersion;
    await eventually(
      () => watchIsGone(planes.publicAdmin, ns, current),
      "the reflector's last resourceVersion compacted away",
      30_000,
      500,
    );
    seen.length = 0;
    const lists = reflector.stats.lists;
    proxy.faults.down = false;
    await eventually(() => reflector.stats.lists > lists, "relisted", 60_000);
    assert.deepEqual(seen.sort(), [`${ns}/mine`, `${ns}/other`]);
    assert.equal(reflector.get(`${ns}/mine`)?.metadata?.resourceVersion, written.metadata?.resourceVersion);
    reflector.stop();
    await proxy.stop();
  });

  it("backs off against a slow, failing private API: no hot loop, no memory growth, nothing lost", async () => {
    const f = await setup(1);
    const executor = track(f.tekton.autoComplete());
    const identity = await mintIdentity(cp.private, planes.privateAdmin, {
      namespace: f.privateNs,
      name: "isc-via-proxy",
      clusterRoleName: "cluster-admin",
    });
    const proxy = track(await FaultProxy.start(cp.private));
    const privateKc = await proxy.writeKubeconfig(
      cp.dir,
      "private",
      identity.kubeConfig.getCurrentUser()?.token as string,
    );
    const controller = track(
      await ControllerProcess.start({
        ...processOptions(f, cp.public.kubeconfigPath, privateKc),
        inspect: true,
      }),
    );
    await controller.waitForReady();
    // Slow and flaky: latency, dropped connections, 5xx; rounds of work under it. The live heap
    // (after a forced GC, through the inspector) is compared after the first and the last round.
    // RSS is not the measure: V8 keeps heap it has grown into without that being a leak.
    Object.assign(proxy.faults, { latencyMs: 150, dropRate: 0.1, errorRate: 0.2 });
    const heap: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = round * 15; i < (round + 1) * 15; i++)
        await f.createRequest(`flaky-${i}`, { service: "publish" });
      await waitAllTerminal(f, (round + 1) * 15, 180_000, () => controller.logs);
      heap.push(await controller.heapUsedAfterGcMb());
    }
    assert.ok(proxy.stats.errors > 0 && proxy.stats.dropped > 0, "faults were injected");

    // Down altogether for a bounded window, with work pending: the request rate must stay bounded.
    Object.assign(proxy.faults, { latencyMs: 0, dropRate: 0, errorRate: 0, down: true });
    proxy.dropAll();
    for (let i = 45; i < 55; i++) await f.createRequest(`flaky-${i}`, { service: "publish" });
    const before = proxy.stats.requests;
    const windowMs = 8_000;
    await new Promise((r) => setTimeout(r, windowMs)); // the observation window itself
    const rate = (proxy.stats.requests - before) / (windowMs / 1000);
    assert.ok(rate < 20, `requests against a down API are backed off (${rate.toFixed(1)}/s)`);
    proxy.faults.down = false;
    await waitAllTerminal(f, 55, 120_000, () => controller.logs);
    await assertExactlyOnce(f, new Map(Array.from({ length: 55 }, (_, i) => [String(i), "ir"])));
    const [first = 0, , last = 0] = heap;
    assert.ok(last - first < 8, `no memory growth over the rounds (live heap ${heap.join(" -> ")} MB)`);
    assert.equal(controller.child.exitCode, null);
    await controller.kill("SIGTERM");
    await proxy.stop();
    await executor.stop();
  });
});
