// Concurrency keys among several requests: a world of requests in one namespace, Tekton moved by
// hand, the private cache synced after every step, a restart as a new process over what exists.
// Each case is a way the key's promises could break (found in a red-team review) that must not.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { requestFor } from "../../src/customtask/request.ts";
import type {
  InternalRequest,
  InternalRequestSpec,
  InternalServiceSpec,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";
import { admit } from "../../src/policy/admit.ts";
import { concurrencyKeyLabel, pipelineRunName } from "../../src/requests/naming.ts";
import { RequestReconciler } from "../../src/requests/reconciler.ts";
import type { ReconcileResult } from "../../src/runtime/controller.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { MemoryResources } from "../support/memory-resources.ts";
import { MemoryRuns } from "../support/memory-runs.ts";

const log = pino({ level: "silent" });
const t0 = Date.parse("2026-03-01T10:00:00Z");
const at = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
const ns = "team-a";
const privateNs = "isc";

interface WorldOpts {
  service?: Partial<InternalServiceSpec>;
  config?: InternalServicesConfigSpec;
}

function world(opts: WorldOpts) {
  let now = t0;
  const clock = () => now;
  const requests = new MemoryResources<InternalRequest>(clock);
  const memory = new MemoryRuns(clock);
  const { runs, taskRuns } = memory;
  const byName = (name: string) => memory.byName(name);
  const sync = () => memory.sync();
  let service: InternalServiceSpec | undefined = {
    pipeline: { pipelineName: "sign-pipeline" },
    paramsSchema: { properties: { image: { type: "string" } } },
    ...opts.service,
  } as InternalServiceSpec;
  let config: InternalServicesConfigSpec = opts.config ?? { allowList: [ns] };
  // As the API server bumps it on every change of the service.
  let serviceVersion = 1;
  const make = () =>
    new RequestReconciler({
      workspaces: new Map([
        [
          "public",
          {
            name: "public",
            requests,
            getRequest: (key) => structuredClone(requests.objects.get(key)),
            observe: () => undefined,
            referrer: async () => undefined,
            events: { record: () => undefined },
          },
        ],
      ]),
      private: {
        namespace: privateNs,
        pipelineRuns: runs,
        taskRuns,
        findPipelineRun: (name) => structuredClone(byName(name)),
        watchesRunsIn: () => true,
        getService: (name) =>
          name === "sign" && service
            ? {
                apiVersion: "appstudio.redhat.com/v1alpha1",
                kind: "InternalService",
                metadata: {
                  name: "sign",
                  namespace: privateNs,
                  uid: "svc-1",
                  resourceVersion: String(serviceVersion),
                },
                spec: service,
              }
            : undefined,
        getConfig: () => ({
          apiVersion: "appstudio.redhat.com/v1alpha1",
          kind: "InternalServicesConfig",
          metadata: { name: "config", namespace: privateNs },
          spec: config,
        }),
        slots: memory.slots,
      },
      metrics: new Metrics({ processMetrics: false }),
      now: clock,
    });
  let reconciler = make();
  const put = (
    name: string,
    spec: Partial<InternalRequestSpec> = {},
    labels: Record<string, string> = {},
    createdAt = now,
    namespace = ns,
  ) =>
    requests.put({
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: {
        name,
        namespace,
        labels,
        creationTimestamp: at(createdAt) as unknown as Date,
      },
      spec: { service: "sign", params: { image: "quay.io/x@sha256:1" }, ...spec } as InternalRequestSpec,
    });
  const get = (name: string, namespace = ns) =>
    requests.objects.get(`${namespace}/${name}`) as InternalRequest;
  const runOf = (name: string, namespace = ns) => {
    const r = get(name, namespace);
    return byName(pipelineRunName("public", name, r.metadata.uid as string));
  };
  const reconcile = async (name: string, namespace = ns): Promise<ReconcileResult | undefined> => {
    const result = await reconciler.reconcile({ workspace: "public", namespace, name }, log);
    sync();
    return result;
  };
  const finishRun = (
    name: string,
    reason: "Succeeded" | "Failed" | "PipelineRunCancelled",
    results = {},
    namespace = ns,
  ) => {
    const r = runOf(name, namespace) as V1PipelineRun;
    assert.ok(r, `a run of ${name}`);
    r.status = {
      startTime: at(now),
      completionTime: at(now),
      conditions: [
        { type: "Succeeded", status: reason === "Succeeded" ? "True" : "False", reason, message: "" },
      ],
      results: Object.entries(results).map(([name, value]) => ({ name, value: value as string })),
    };
    sync();
  };
  const startRun = (name: string) => {
    const r = runOf(name) as V1PipelineRun;
    r.status = {
      startTime: at(now),
      conditions: [{ type: "Succeeded", status: "Unknown", reason: "Running", message: "" }],
    };
    sync();
  };
  const message = (name: string) =>
    get(name)?.status?.conditions?.find((c) => c.type === "Succeeded")?.message ?? "";
  const reason = (name: string) =>
    get(name)?.status?.conditions?.find((c) => c.type === "Succeeded")?.reason ?? "";
  const liveRuns = () =>
    [...runs.objects.values()].filter(
      (r) =>
        r.spec?.status !== "Cancelled" &&
        !r.status?.conditions?.some((c) => c.type === "Succeeded" && c.status !== "Unknown"),
    );
  return {
    requests,
    runs,
    put,
    get,
    runOf,
    reconcile,
    finishRun,
    startRun,
    message,
    reason,
    liveRuns,
    advance: (ms: number) => {
      now += ms;
    },
    wake: (hash: string) => reconciler.nextWaitingForKey(hash),
    wakeForSlot: (group: string) => reconciler.nextWaitingForSlot(group),
    /** A new process: empty in-memory state, the cache synced from what exists. */
    restart: () => {
      memory.restart();
      reconciler = make();
    },
    setService: (s: InternalServiceSpec | undefined) => {
      service = s;
      serviceVersion++;
    },
    setConfig: (c: InternalServicesConfigSpec) => {
      config = c;
    },
    hashOf: (name: string) => runOf(name)?.metadata?.labels?.[concurrencyKeyLabel],
  };
}

const queue = { concurrency: { key: "$(params.image)", policy: "Queue" as const } };

describe("concurrency slots among tenants", () => {
  test("a tenant with many requests waiting cannot hold another's back: the free slots go round the tenants", async () => {
    const other = "team-b";
    const w = world({ service: { maxConcurrentRuns: 1 }, config: { allowList: [ns, other] } });
    for (let i = 0; i < 5; i++) w.put(`a${i}`, {}, {}, t0 + i * 1000);
    w.put("b0", {}, {}, t0 + 10_000, other);
    for (let i = 0; i < 5; i++) await w.reconcile(`a${i}`);
    await w.reconcile("b0", other);
    assert.ok(w.runOf("a0"), "a0 runs");
    assert.match(w.message("a1"), /queued: service "sign" is running 1 of at most 1/);
    // a0 ends: team-b, which has had no slot yet, is woken first, and the others keep waiting.
    w.finishRun("a0", "Succeeded");
    assert.deepEqual(
      w.wakeForSlot("sign").map((k) => `${k.namespace}/${k.name}`),
      [`${other}/b0`],
    );
    // Every waiter looks again (its recheck), b0 last: b0 gets the slot all the same.
    for (let i = 1; i < 5; i++) await w.reconcile(`a${i}`);
    await w.reconcile("b0", other);
    assert.ok(w.runOf("b0", other), "b0 runs second");
    for (let i = 1; i < 5; i++) assert.equal(w.runOf(`a${i}`), undefined, `a${i} still waits`);
    // Then team-a again, oldest first.
    w.finishRun("b0", "Succeeded", {}, other);
    for (let i = 4; i >= 1; i--) await w.reconcile(`a${i}`);
    assert.ok(w.runOf("a1"), "a1 runs third");
    assert.equal(w.liveRuns().length, 1, "never more than the one slot");
  });

  test("a request made while others wait joins them rather than taking a free slot first", async () => {
    const other = "team-b";
    const w = world({ service: { maxConcurrentRuns: 1 }, config: { allowList: [ns, other] } });
    w.put("a0");
    w.put("a1", {}, {}, t0 + 1000);
    await w.reconcile("a0");
    await w.reconcile("a1");
    w.finishRun("a0", "Succeeded");
    // Before a1 looks again, a newcomer of team-a arrives: it queues behind a1.
    w.put("a2", {}, {}, t0 + 2000);
    await w.reconcile("a2");
    assert.equal(w.runOf("a2"), undefined, `a2 waits: ${w.message("a2")}`);
    assert.equal(
      w.message("a2"),
      'queued: service "sign" is running 0 of at most 1 concurrent runs; the free slots go first to requests that have waited longer or whose namespace has fewer runs',
    );
    await w.reconcile("a1");
    assert.ok(w.runOf("a1"), "a1, which waited, runs");
  });
});

describe("concurrency keys among requests", () => {
  test("a create that failed (5xx) is tried again: the request never waits for its own reserved run", async () => {
    const w = world({ service: queue });
    w.put("r1");
    // The private API server (or Tekton's webhook) fails the create once: 500 / 503 / a timeout.
    const create = w.runs.create.bind(w.runs);
    let fail = true;
    w.runs.create = async (namespace, body) => {
      if (fail) {
        // What the client throws for a 500 (see api/errors.ts).
        fail = false;
        throw Object.assign(new Error("Internal error occurred: failed calling webhook"), {
          code: 500,
          body: { reason: "InternalError", message: "failed calling webhook" },
        });
      }
      return create(namespace, body);
    };
    await assert.rejects(w.reconcile("r1"));
    // The controller's queue retries with backoff.
    w.advance(1000);
    await w.reconcile("r1");
    w.advance(5000);
    await w.reconcile("r1");
    assert.doesNotMatch(w.message("r1"), /waiting for request team-a\/r1 /, "waits for itself");
    assert.ok(w.runOf("r1"), "the retry creates the run");
  });

  test("draining a queue of 20 costs a few status writes per request, not one per request ahead", async () => {
    const w = world({ service: queue });
    const n = 20;
    for (let i = 0; i < n; i++) {
      w.put(`r${i}`, {}, {}, t0 + i * 1000);
    }
    // Everyone reconciles once: r0 runs, r1..r(n-1) wait.
    for (let i = 0; i < n; i++) await w.reconcile(`r${i}`);
    const before = w.requests.count("status");
    // Drain: the holder finishes; everyone reconciles on its 2s recheck (woken or not).
    for (let round = 0; round < n - 1; round++) {
      const holder = w.liveRuns()[0] as V1PipelineRun;
      const holderRequest = (
        holder.metadata?.annotations?.["internal-services.appstudio.openshift.io/request"] ?? ""
      ).split("/")[1] as string;
      w.finishRun(holderRequest, "Succeeded");
      w.advance(2000);
      for (let i = 0; i < n; i++) await w.reconcile(`r${i}`);
    }
    const writes = w.requests.count("status", before);
    // Each request: at most ~2 writes to start (accepted) + finish; the waiting messages should not be
    // rewritten for every request ahead in the queue.
    assert.ok(writes <= 4 * n, `status writes while draining ${n} waiters: ${writes}`);
  });

  test("a waiter whose labels change (another key) decides again at once", async () => {
    const w = world({
      service: { concurrency: { key: "$(labels['example.com/op'])", policy: "Queue" } },
    });
    w.put("r0", {}, { "example.com/op": "a" });
    w.put("r1", {}, { "example.com/op": "a" }, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("r1");
    assert.match(w.message("r1"), /queued: waiting for request team-a\/r0/);
    // The tenant fixes the label: r1 is another operation now; the watch reconciles it.
    await w.requests.mergePatch(ns, "r1", { metadata: { labels: { "example.com/op": "b" } } });
    await w.reconcile("r1");
    assert.ok(w.runOf("r1"), `r1 should now run (its key is "b"); message: ${w.message("r1")}`);
  });

  test("the service dropping its concurrency key: a waiter runs at once", async () => {
    const w = world({ service: queue });
    w.put("r0");
    w.put("r1", {}, {}, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("r1");
    // The service owners remove spec.concurrency: the services watch wakes every unstarted request.
    w.setService({
      pipeline: { pipelineName: "sign-pipeline" },
      paramsSchema: { properties: { image: { type: "string" } } },
    } as InternalServiceSpec);
    await w.reconcile("r1");
    assert.ok(w.runOf("r1"), `r1 should run now; r1: ${w.reason("r1")}: ${w.message("r1")}`);
  });

  test("the service deleted while a request waits: Rejected at once", async () => {
    const w = world({ service: queue });
    w.put("r0");
    w.put("r1", {}, {}, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("r1");
    w.setService(undefined);
    await w.reconcile("r1");
    assert.equal(w.reason("r1"), "Rejected", `r1: ${w.reason("r1")}: ${w.message("r1")}`);
  });

  test("Queue is oldest first: a request made after the waiters waits behind them", async () => {
    const w = world({ service: queue });
    w.put("r0");
    w.put("old-waiter", {}, {}, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("old-waiter");
    w.advance(60 * 60 * 1000);
    w.finishRun("r0", "Succeeded");
    // A newer request is reconciled (its create event) before the woken waiter gets its turn.
    w.put("newcomer");
    await w.reconcile("newcomer");
    await w.reconcile("old-waiter");
    assert.ok(w.runOf("old-waiter"), `the hour-old waiter runs first; it says: ${w.message("old-waiter")}`);
  });

  test("a waiter queued behind another runs once the one ahead ran and finished before it looked again", async () => {
    const w = world({ service: queue });
    w.put("r0");
    w.put("r1", {}, {}, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("r1");
    w.finishRun("r0", "Succeeded");
    // r2 arrives between r0's end and r1's turn: it queues behind r1, naming no run.
    w.put("r2", {}, {}, t0 + 2000);
    await w.reconcile("r2");
    assert.match(w.message("r2"), /queued: waiting behind request team-a\/r1/);
    await w.reconcile("r1");
    assert.ok(w.runOf("r1"), `r1 runs; it says: ${w.message("r1")}`);
    // r1's run ends before r2 looks again: no run holds the key, and r2 is first in line.
    w.finishRun("r1", "Succeeded");
    w.advance(2000);
    await w.reconcile("r2");
    assert.ok(w.runOf("r2"), `r2 runs; it says: ${w.message("r2")}`);
  });

  test("after a restart the oldest waiter is woken, whatever order the cache lists them in", async () => {
    const w = world({ service: queue });
    w.put("r0");
    w.put("a-oldest", {}, {}, t0 + 1000);
    w.put("z-newest", {}, {}, t0 + 2000);
    await w.reconcile("r0");
    await w.reconcile("a-oldest");
    await w.reconcile("z-newest");
    w.restart();
    // Informer lists come back in any order (here: the newest first).
    await w.reconcile("z-newest");
    await w.reconcile("a-oldest");
    w.finishRun("r0", "Succeeded");
    const woken = w.wake(w.hashOf("r0") as string).map((k) => k.name);
    assert.deepEqual(woken, ["a-oldest"], "the oldest waiter is woken");
  });

  test("raw requests for different pipelines never share a key (Reuse hands out nothing across them)", async () => {
    const w = world({
      config: {
        allowList: [ns],
        allowedPipelineSources: [{ resolver: "git", params: { pathInRepo: "*" } }],
        rawPipelineRequests: {
          concurrency: { key: "$(labels['example.com/release'])", policy: "Reuse" },
        } as never,
      },
    });
    const raw = (name: string) => ({
      service: undefined,
      pipeline: { pipelineRef: { resolver: "git", params: [{ name: "pathInRepo", value: name }] } },
      params: {},
    });
    w.put("sign-it", raw("sign.yaml") as never, { "example.com/release": "rel-1" });
    const r = await w.reconcile("sign-it");
    if (!w.runOf("sign-it")) {
      // Raw requests are configured differently in this repo: say so rather than pass.
      assert.fail(
        `raw request did not run: ${w.reason("sign-it")}: ${w.message("sign-it")} ${JSON.stringify(r)}`,
      );
    }
    w.finishRun("sign-it", "Succeeded", { signature: "sig" });
    await w.reconcile("sign-it");
    w.put("publish-it", raw("publish.yaml") as never, { "example.com/release": "rel-1" });
    await w.reconcile("publish-it");
    assert.ok(
      w.runOf("publish-it"),
      `another pipeline should run itself; got ${w.reason("publish-it")}: ${w.message("publish-it")} results ${JSON.stringify(w.get("publish-it").status?.results)}`,
    );
  });

  test("Supersede: a waiting request superseded by a newer one ends unrun", async () => {
    const w = world({ service: { concurrency: { key: "$(params.image)", policy: "Supersede" } } });
    w.put("a");
    await w.reconcile("a");
    w.startRun("a");
    w.put("b", {}, {}, t0 + 1000);
    await w.reconcile("b"); // cancels a's run, waits
    w.put("c", {}, {}, t0 + 2000);
    await w.reconcile("c"); // newest: should make b give way now
    w.finishRun("a", "PipelineRunCancelled");
    await w.reconcile("a");
    // The wake-up goes to the first waiter (b).
    await w.reconcile("b");
    await w.reconcile("c");
    assert.equal(
      w.runOf("b"),
      undefined,
      `b (superseded by c before it ran) should end unrun; b: ${w.reason("b")}: ${w.message("b")}; c: ${w.message("c")}`,
    );
  });
});

describe("concurrency keys among requests: names and lengths", () => {
  test("the documented custom-task key gives every CustomRun attempt the same key", () => {
    const customRun = {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: {
        name: "release-abc-sign",
        namespace: ns,
        uid: "cr-1",
        labels: {
          "tekton.dev/pipelineRun": "release-abc",
          "tekton.dev/pipelineRunUID": "pr-uid-1",
          "tekton.dev/pipelineTask": "sign",
        },
      },
      spec: {},
    };
    const request = requestFor(customRun as never, { service: "sign", params: { image: "x" } }, 1);
    const documented = "$(labels['tekton.dev/pipelineRunUID'])/$(labels['tekton.dev/pipelineTask'])";
    const admission = admit({
      workspace: "public",
      namespace: ns,
      request: request.spec,
      labels: request.metadata.labels,
      config: { allowList: [ns] },
      service: {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalService",
        metadata: { name: "sign", namespace: privateNs },
        spec: {
          pipeline: { pipelineName: "p" },
          paramsSchema: { properties: { image: { type: "string" } } },
          concurrency: { key: documented },
        },
      } as never,
    });
    assert.ok(admission.allowed);
    assert.ok(
      admission.run.concurrency,
      `no key; notes: ${admission.run.notes.join("; ")}; labels: ${JSON.stringify(request.metadata.labels)}`,
    );
  });

  test("Supersede: a request made again under the name of a deleted one never gives way to its own old run", async () => {
    // debug keeps runs (the same holds without it until the run sweep gets to the old run).
    const w = world({
      service: { concurrency: { key: "$(params.image)", policy: "Supersede" } },
      config: { allowList: [ns], debug: true },
    });
    w.put("x");
    await w.reconcile("x");
    w.startRun("x");
    // Deleted (e.g. by a tenant or a clean-up): the run sweep cancels the run, which takes a while to stop.
    await w.requests.delete(ns, "x");
    await w.reconcile("x");
    assert.equal(w.get("x"), undefined, "the old x is gone");
    assert.equal(w.runs.objects.size, 1, "its run is cancelled (but not yet stopped: still holds the key)");
    // The CustomRun reconciler sees its attempt's request missing and creates it again, same name.
    w.advance(1000);
    w.put("x");
    await w.reconcile("x");
    assert.notEqual(w.reason("x"), "Cancelled", `the new x: ${w.reason("x")}: ${w.message("x")}`);
  });

  test("status writes grow linearly with the queue length", async () => {
    const drain = async (n: number) => {
      const w = world({ service: queue });
      for (let i = 0; i < n; i++) w.put(`r${i}`, {}, {}, t0 + i * 1000);
      for (let i = 0; i < n; i++) await w.reconcile(`r${i}`);
      const before = w.requests.count("status");
      for (let round = 0; round < n - 1; round++) {
        const holder = w.liveRuns()[0] as V1PipelineRun;
        const name = (
          holder.metadata?.annotations?.["internal-services.appstudio.openshift.io/request"] ?? ""
        ).split("/")[1] as string;
        w.finishRun(name, "Succeeded");
        w.advance(2000);
        for (let i = 0; i < n; i++) await w.reconcile(`r${i}`);
      }
      return w.requests.count("status", before);
    };
    const [a, b] = [await drain(10), await drain(40)];
    assert.ok(b < 6 * a, `10 waiters: ${a} status writes; 40 waiters: ${b} (x${(b / a).toFixed(1)} for x4)`);
  });
});

describe("concurrency keys among requests: waiting and following", () => {
  const reuse = { concurrency: { key: "$(params.image)", policy: "Reuse" as const } };

  test("Reuse: the followed run deleted out of band: exactly one follower runs, the rest follow it", async () => {
    const w = world({ service: reuse });
    w.put("r0");
    await w.reconcile("r0");
    w.startRun("r0");
    for (let i = 1; i <= 5; i++) {
      w.put(`f${i}`, {}, {}, t0 + i * 1000);
      await w.reconcile(`f${i}`);
      assert.match(w.message(`f${i}`), /^following internal PipelineRun/);
    }
    const hash = w.hashOf("r0") as string;
    await w.runs.delete(privateNs, w.runOf("r0")?.metadata?.name as string);
    const woken = w.wake(hash);
    assert.equal(woken.length, 5);
    // All woken at once, interleaved as workers would (each reconcile awaits writes).
    await Promise.all(woken.map((k) => w.reconcile(k.name)));
    for (const k of woken) await w.reconcile(k.name);
    assert.equal(w.liveRuns().length, 1, "one live run");
    assert.equal(w.runs.count("create"), 2);
  });

  test("a waiting request's rechecks write nothing, and the queue timeout ends it naming the run", async () => {
    const w = world({ service: { ...queue, timeouts: { queue: "10m" } } as never });
    w.put("r0");
    w.put("r1", {}, {}, t0 + 1000);
    await w.reconcile("r0");
    await w.reconcile("r1");
    const before = w.requests.writes.length;
    for (let i = 0; i < 10; i++) {
      w.advance(2000);
      await w.reconcile("r1");
    }
    assert.equal(w.requests.writes.length, before, "no writes while waiting");
    w.advance(11 * 60_000);
    await w.reconcile("r1");
    assert.equal(w.reason("r1"), "TimedOut");
    assert.match(w.message("r1"), /for internal PipelineRun isc\/r0-/);
  });
});
