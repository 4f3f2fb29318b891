// Concurrency keys on the real planes: at most one live run per logical operation (Queue, Supersede,
// Reuse), scoped per namespace, and never two live runs of one key across SIGKILLs.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually } from "../../envtest/wait.ts";
import type { InternalRequest, InternalServiceSpec } from "../../src/generated/crds.ts";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";
import { concurrencyKeyLabel, labelPrefix, supersededByAnnotation } from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";
import { LiveRuns } from "../support/live-runs.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const uidLabel = `${labelPrefix}/pipelinerun-uid`;
const nameLabel = `${labelPrefix}/pipeline-name`;
const releaseKey = `$(labels['${uidLabel}'])/$(labels['${nameLabel}'])`;
const attempt = (uid: string) => ({ labels: { [uidLabel]: uid, [nameLabel]: "push-to-registry" } });
const service = (policy: "Queue" | "Supersede" | "Reuse", key = releaseKey): InternalServiceSpec => ({
  pipeline: { pipelineName: `release-${policy.toLowerCase()}` },
  paramsSchema: { type: "object", properties: { advisory: { type: "string" } } },
  concurrency: { key, policy, ...(policy === "Reuse" ? { reuseWithin: "1h" } : {}) },
});
const message = (r: InternalRequest) => r.status?.conditions?.[0]?.message ?? "";

describe("concurrency keys", () => {
  let f: Fixture;
  let ns: string;
  let other: string;
  const runOf = (run: V1PipelineRun) => run.metadata?.annotations?.[`${labelPrefix}/request`];
  /** The private runs made for `request` (in namespace `namespace`). */
  const runsFor = async (request: string, namespace = ns) =>
    (await f.tekton.list()).filter((r) => runOf(r) === `${namespace}/${request}`);
  const oneRunFor = (request: string, namespace = ns) =>
    eventually(async () => (await runsFor(request, namespace))[0], `the run of ${request}`);

  before(async () => {
    f = await Fixture.create({
      namespaces: 2,
      config: (namespaces) => ({ allowList: namespaces }),
      services: {
        queue: service("Queue"),
        supersede: service("Supersede"),
        reuse: service("Reuse", "$(params.advisory)"),
      },
      startController: false,
    });
    await f.startController({ queuedRecheckMs: 60_000 });
    [ns, other] = f.namespaces as [string, string];
  });
  after(async () => {
    await f?.stop();
  });

  it("Queue: a second attempt waits for the first, naming it; other keys and namespaces do not", async () => {
    await f.createRequest("q-1", { service: "queue" }, attempt("uid-q"));
    const first = await oneRunFor("q-1");
    await f.createRequest("q-2", { service: "queue" }, attempt("uid-q"));
    const waiting = await f.waitForRequest(
      "q-2",
      (r) => r.status?.concurrency?.request !== undefined,
      "waits",
    );
    assert.equal(
      message(waiting),
      `queued: waiting for request ${ns}/q-1 (internal PipelineRun ${f.privateNs}/${first.metadata?.name}), which has the same concurrency key, to finish`,
    );
    assert.deepEqual(waiting.status?.concurrency, {
      key: "uid-q/push-to-registry",
      policy: "Queue",
      pipelineRun: `${f.privateNs}/${first.metadata?.name}`,
      request: `${ns}/q-1`,
    });
    assert.equal(waiting.status?.pipelineRun, undefined);
    // Another key, the same key in another namespace, and a request without the labels run at once.
    await f.createRequest("q-other-key", { service: "queue" }, attempt("uid-other"));
    await f.createRequest("q-other-ns", { service: "queue" }, { ...attempt("uid-q"), namespace: other });
    await f.createRequest("q-unkeyed", { service: "queue" });
    await oneRunFor("q-other-key");
    await oneRunFor("q-other-ns", other);
    const unkeyed = await f.waitForRequest("q-unkeyed", (r) => r.status?.pipelineRun !== undefined, "runs");
    assert.match(
      message(unkeyed),
      /no concurrency key \(the request has no label "[^"]+\/pipelinerun-uid"\)/,
    );
    assert.equal((await runsFor("q-2")).length, 0, "nothing run for the waiting attempt");

    // The first ends (a failure, as a retried task's first attempt would): the second runs, woken
    // by the run's end (the recheck timer is a minute here).
    await f.tekton.fail(first.metadata?.name as string, {
      name: "push",
      reason: "Failed",
      message: "registry down",
    });
    await f.waitForReason("q-1", "Failed");
    const second = await oneRunFor("q-2");
    assert.equal(
      second.metadata?.labels?.[concurrencyKeyLabel],
      first.metadata?.labels?.[concurrencyKeyLabel],
    );
    const started = await f.waitForRequest("q-2", (r) => r.status?.pipelineRun !== undefined, "started");
    assert.deepEqual(started.status?.concurrency, { key: "uid-q/push-to-registry", policy: "Queue" });
    await f.tekton.succeed(second.metadata?.name as string, [{ name: "digest", value: "sha256:2" }]);
    assert.equal((await f.waitForReason("q-2", "Succeeded")).status?.results?.digest, "sha256:2");
  });

  it("Supersede: the newer attempt cancels the older one's run, which ends Cancelled naming it", async () => {
    await f.createRequest("s-1", { service: "supersede" }, attempt("uid-s"));
    const first = await oneRunFor("s-1");
    // Creation times have one-second resolution: make s-2 clearly the newer.
    await eventually(
      async () => Date.now() - Date.parse(String(first.metadata?.creationTimestamp)) > 1_100,
      "a second passed",
    );
    await f.createRequest("s-2", { service: "supersede" }, attempt("uid-s"));
    const cancelled = await eventually(async () => {
      const run = await f.tekton.runs.get(f.privateNs, first.metadata?.name as string);
      return run.spec?.status === "Cancelled" ? run : undefined;
    }, "the older run cancelled");
    assert.equal(cancelled.metadata?.annotations?.[supersededByAnnotation], `${ns}/s-2`);
    const waiting = await f.waitForRequest(
      "s-2",
      (r) => r.status?.concurrency?.request !== undefined,
      "waits",
    );
    assert.match(
      message(waiting),
      new RegExp(`^superseding request ${ns}/s-1, which has the same concurrency key`),
    );
    assert.equal((await runsFor("s-2")).length, 0, "nothing started before the older run stopped");
    await f.tekton.markCancelled(first.metadata?.name as string);
    const older = await f.waitForReason("s-1", "Cancelled");
    assert.match(message(older), new RegExp(`^superseded by request ${ns}/s-2, which is newer`));
    const second = await oneRunFor("s-2");
    await f.tekton.succeed(second.metadata?.name as string);
    await f.waitForReason("s-2", "Succeeded");
    // Its run is gone once it finished: the next attempt runs at once.
    await f.createRequest("s-3", { service: "supersede" }, attempt("uid-s"));
    await f.waitForRequest("s-3", (r) => r.status?.pipelineRun !== undefined, "started");
  });

  it("Reuse: a follower takes the live run's results; a later request gets them without a run", async () => {
    await f.createRequest("r-1", { service: "reuse", params: { advisory: "RHSA-2026:1" } });
    const first = await oneRunFor("r-1");
    await f.createRequest("r-2", { service: "reuse", params: { advisory: "RHSA-2026:1" } });
    const following = await f.waitForRequest(
      "r-2",
      (r) => r.status?.concurrency?.request !== undefined,
      "follows",
    );
    assert.match(
      message(following),
      new RegExp(
        `^following internal PipelineRun ${f.privateNs}/${first.metadata?.name} of request ${ns}/r-1`,
      ),
    );
    await f.tekton.succeed(first.metadata?.name as string, [{ name: "advisory_url", value: "https://x/1" }]);
    for (const name of ["r-1", "r-2"])
      assert.deepEqual((await f.waitForReason(name, "Succeeded")).status?.results, {
        advisory_url: "https://x/1",
      });
    // Within reuseWithin: the run is kept, and hands its results out again.
    await f.createRequest("r-3", { service: "reuse", params: { advisory: "RHSA-2026:1" } });
    const reused = await f.waitForReason("r-3", "Succeeded");
    assert.deepEqual(reused.status?.results, { advisory_url: "https://x/1" });
    assert.match(
      message(reused),
      new RegExp(
        `^reused the results of internal PipelineRun ${f.privateNs}/${first.metadata?.name} \\(request ${ns}/r-1\\)`,
      ),
    );
    // Another advisory, or the same one from another namespace, runs.
    await f.createRequest(
      "r-4",
      { service: "reuse", params: { advisory: "RHSA-2026:1" } },
      { namespace: other },
    );
    await oneRunFor("r-4", other);
    assert.equal(
      (await runsFor("r-2")).length + (await runsFor("r-3")).length,
      0,
      "one run for three requests",
    );
  });
});

describe("concurrency keys across SIGKILLs", () => {
  const planes = testPlanes();
  let f: Fixture;
  before(async () => {
    f = await Fixture.create({
      config: (namespaces) => ({ allowList: namespaces }),
      services: { queue: service("Queue"), supersede: service("Supersede") },
      startController: false,
    });
  });
  after(async () => {
    await f?.stop();
  });

  it("never two live runs of one key, and every queued attempt runs once, while the controller is killed", async () => {
    const opts = {
      remoteKubeconfig: planes.public.kubeconfigPath,
      workspaces: [`public=${f.namespaces[0]}`],
      privateKubeconfig: planes.private.kubeconfigPath,
      namespace: f.privateNs,
      extraArgs: ["--leader-elect=false"],
    };
    const watcher = await LiveRuns.watch(
      planes.privateAdmin,
      f.privateNs,
      (run) => run.metadata?.labels?.[concurrencyKeyLabel],
    );
    let controller: ControllerProcess | undefined;
    try {
      const queued = 8;
      await Promise.all(
        Array.from({ length: queued }, (_, i) =>
          f.createRequest(`k-${i}`, { service: "queue" }, attempt("uid-k")),
        ),
      );
      // First a crash right after a run is created, before its request records it.
      const crashing = await ControllerProcess.start({
        ...opts,
        env: { ISC_TEST_FAILPOINT: "crash-after-pipelinerun-create" },
      });
      assert.equal((await crashing.exited).signal, "SIGKILL", crashing.logs);
      controller = await ControllerProcess.start(opts);
      await controller.waitForReady();

      // Supersede attempts arrive a second apart while queued ones complete; kill twice more.
      const superseding = 3;
      const done = new Set<string>();
      let kills = 0;
      let made = 0;
      let lastMadeAt = 0;
      await eventually(
        async () => {
          if (made < superseding && Date.now() - lastMadeAt > 1_100) {
            await f.createRequest(`sup-${made++}`, { service: "supersede" }, attempt("uid-sup"));
            lastMadeAt = Date.now();
          }
          for (const run of await f.tekton.list()) {
            const name = run.metadata?.name as string;
            if (done.has(name) || run.status?.completionTime) continue;
            if (run.spec?.status === "Cancelled") await f.tekton.markCancelled(name);
            else if (runOf(run)?.includes("/k-")) await f.tekton.succeed(name);
            else continue;
            done.add(name);
          }
          if (kills < 2 && done.size >= 3 * (kills + 1)) {
            kills++;
            await controller?.kill("SIGKILL");
            controller = await ControllerProcess.start(opts);
            await controller.waitForReady();
          }
          const finished = await Promise.all(
            Array.from(
              { length: queued },
              async (_, i) =>
                (await f.requests.get(f.namespaces[0] as string, `k-${i}`)).status?.completionTime,
            ),
          );
          return (finished.every((t) => t !== undefined) && made === superseding) || undefined;
        },
        "every queued attempt finished",
        120_000,
        100,
      );
      for (let i = 0; i < queued; i++) await f.waitForReason(`k-${i}`, "Succeeded");
      // The newest superseding attempt runs; the older ones end Cancelled (run or not).
      const newest = `sup-${superseding - 1}`;
      // Tekton goes on stopping the runs the newest attempt cancels (the last may come after the
      // queued attempts are done).
      const described = async () => {
        const states = await Promise.all(
          Array.from({ length: superseding }, async (_, i) => {
            const r = await f.requests.get(f.namespaces[0] as string, `sup-${i}`);
            return `sup-${i}: ${r.status?.conditions?.[0]?.reason} ${r.status?.conditions?.[0]?.message}`;
          }),
        );
        return states.join("\n");
      };
      const run = await eventually(async () => {
        const runs = await f.tekton.list();
        for (const r of runs)
          if (r.spec?.status === "Cancelled" && !r.status?.completionTime)
            await f.tekton.markCancelled(r.metadata?.name as string);
        return runs.find((r) => runOf(r) === `${f.namespaces[0]}/${newest}`);
      }, "the newest attempt's run").catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await described()}`);
      });
      await f.tekton.succeed(run.metadata?.name as string);
      await f.waitForReason(newest, "Succeeded");
      for (let i = 0; i < superseding - 1; i++) await f.waitForReason(`sup-${i}`, "Cancelled");

      const keys = [...watcher.maxLive.keys()];
      assert.equal(keys.length, 2, "two keys");
      for (const key of keys) assert.equal(watcher.maxLive.get(key), 1, `at most one live run of key ${key}`);
      assert.equal(Math.max(...watcher.created.values()), queued, "exactly one run per queued attempt");
      assert.equal(kills, 2);
    } finally {
      watcher.stop();
      await controller?.kill("SIGTERM");
    }
  });
  const runOf = (run: V1PipelineRun) => run.metadata?.annotations?.[`${labelPrefix}/request`];
});
