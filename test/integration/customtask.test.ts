// The custom-task bridge with CustomRuns shaped exactly as Tekton creates them (the end-to-end file
// runs Tekton's real controller): results, failure, cancel, timeout, retries, malformed input.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createNamespace, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { customRuns, ResourceClient } from "../../src/api/resources.ts";
import type { InternalServiceSpec } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1beta1CustomRunSpec } from "../../src/generated/tekton.ts";
import { startManager } from "../../src/manager.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";

const service: InternalServiceSpec = {
  pipeline: { pipelineName: "sign" },
  paramsSchema: {
    type: "object",
    required: ["digest"],
    properties: { digest: { type: "string", pattern: "^sha256:" }, tags: { type: "string" } },
  },
};

const ref = (name?: string) => ({
  apiVersion: "appstudio.redhat.com/v1alpha1",
  kind: "InternalRequest",
  ...(name ? { name } : {}),
});

describe("custom task bridge", () => {
  const fixtures: Fixture[] = [];
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });
  const setup = async () => {
    const f = await Fixture.create({ config: (ns) => ({ allowList: ns }), services: { sign: service } });
    fixtures.push(f);
    const runs = new ResourceClient<V1beta1CustomRun>(f.publicKc, customRuns, "test");
    const ns = f.namespaces[0] as string;
    const create = (name: string, spec: V1beta1CustomRunSpec) =>
      runs.create(ns, {
        apiVersion: "tekton.dev/v1beta1",
        kind: "CustomRun",
        metadata: {
          name,
          labels: {
            "tekton.dev/pipelineRun": "release-1",
            "tekton.dev/pipelineRunUID": "uid-release-1",
            "tekton.dev/pipelineTask": "sign",
            "tekton.dev/memberOf": "tasks",
          },
        },
        spec,
      });
    const waitDone = (name: string) =>
      eventually(async () => {
        const r = await runs.get(ns, name);
        const c = r.status?.conditions?.[0];
        return c && c.status !== "Unknown" ? r : undefined;
      }, `CustomRun ${name} done`);
    return { f, runs, ns, create, waitDone };
  };

  it("taskRef form: one InternalRequest owned by the CustomRun; its results become task results", async () => {
    const { f, ns, create, waitDone } = await setup();
    const cr = await create("release-1-sign", {
      customRef: ref("sign"),
      params: [
        { name: "digest", value: "sha256:aaaa" },
        { name: "tags", value: ["v1", "latest"] },
      ],
    });
    const [run] = await f.tekton.waitForRuns(1);
    const request = await f.requests.get(ns, "release-1-sign-0");
    assert.deepEqual(request.spec, {
      service: "sign",
      params: { digest: "sha256:aaaa", tags: JSON.stringify(["v1", "latest"]) },
    });
    assert.equal(request.metadata.ownerReferences?.[0]?.uid, cr.metadata?.uid);
    assert.equal(request.metadata.ownerReferences?.[0]?.controller, true);
    assert.equal(request.metadata.labels?.["tekton.dev/pipelineRun"], "release-1");
    assert.equal(request.metadata.labels?.["tekton.dev/pipelineTask"], "sign");
    assert.equal(request.metadata.labels?.["tekton.dev/customRun"], "release-1-sign");
    assert.deepEqual(
      (await f.requests.list(ns, { labelSelector: "tekton.dev/pipelineRun=release-1" })).items.length,
      1,
    );

    await f.waitForRequest("release-1-sign-0", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.progress(run?.metadata?.name as string, 1, 3);
    await eventually(async () => {
      const c = (await f.requests.get(ns, "release-1-sign-0")).status?.conditions?.[0];
      return c?.message === "1/3 tasks completed";
    }, "progress on the request");
    await f.tekton.succeed(run?.metadata?.name as string, [
      { name: "signature", value: "sig" },
      { name: "digests", value: ["sha256:1", "sha256:2"] },
    ]);
    const done = await waitDone("release-1-sign");
    const c = done.status?.conditions?.[0];
    assert.equal(c?.type, "Succeeded");
    assert.equal(c?.status, "True");
    assert.deepEqual(done.status?.results, [
      { name: "digests", value: '["sha256:1","sha256:2"]' },
      { name: "signature", value: "sig" },
    ]);
    assert.ok(done.status?.startTime && done.status.completionTime);
    const extra = done.status?.extraFields as Record<string, unknown>;
    assert.equal(extra.request, `${ns}/release-1-sign-0`);
    assert.equal(extra.pipelineRun, `${f.privateNs}/${run?.metadata?.name}`);
    assert.equal(extra.workspace, "public");
  });

  it("works for CustomRun names longer than a label value (up to Tekton's 63 + hash)", async () => {
    const { f, ns, create, waitDone } = await setup();
    const name = `release-with-a-very-long-pipelinerun-name-and-task-${"x".repeat(30)}`; // 81 characters
    await create(name, { customRef: ref("sign"), params: [{ name: "digest", value: "sha256:aaaa" }] });
    const [run] = await f.tekton.waitForRuns(1);
    const request = (await f.requests.list(ns)).items[0];
    assert.ok(request?.metadata.name);
    assert.ok(request.metadata.name.length <= 63);
    assert.equal(
      request.metadata.labels?.["tekton.dev/customRun"],
      undefined,
      "not a valid label value, so left out",
    );
    await f.waitForRequest(request.metadata.name, (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string, [{ name: "signature", value: "long" }]);
    assert.deepEqual((await waitDone(name)).status?.results, [{ name: "signature", value: "long" }]);
  });

  it("taskSpec form: the embedded spec, with CustomRun params merged over it", async () => {
    const { f, ns, create, waitDone } = await setup();
    await create("embedded", {
      customSpec: { ...ref(), spec: { service: "sign", params: { digest: "sha256:old", tags: "keep" } } },
      params: [{ name: "digest", value: "sha256:new" }],
    });
    const [run] = await f.tekton.waitForRuns(1);
    const request = await f.requests.get(ns, "embedded-0");
    assert.deepEqual(request.spec.params, { digest: "sha256:new", tags: "keep" });
    await f.waitForRequest("embedded-0", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string, [{ name: "ok", value: "yes" }]);
    assert.deepEqual((await waitDone("embedded")).status?.results, [{ name: "ok", value: "yes" }]);
  });

  it("a failed request fails the CustomRun with its reason and message, results still copied", async () => {
    const { f, create, waitDone } = await setup();
    await create("fails", { customRef: ref("sign"), params: [{ name: "digest", value: "sha256:aaaa" }] });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("fails-0", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.fail(
      run?.metadata?.name as string,
      { name: "sign", reason: "Failed", message: "HSM unavailable" },
      [{ name: "result", value: "HSM unavailable" }],
    );
    const done = await waitDone("fails");
    assert.equal(done.status?.conditions?.[0]?.status, "False");
    assert.equal(done.status?.conditions?.[0]?.reason, "Failed");
    assert.match(done.status?.conditions?.[0]?.message ?? "", /HSM unavailable/);
    assert.deepEqual(done.status?.results, [{ name: "result", value: "HSM unavailable" }]);
  });

  it("cancelling the CustomRun cancels the request and its internal PipelineRun", async () => {
    const { f, runs, ns, create, waitDone } = await setup();
    await create("cancelled", { customRef: ref("sign"), params: [{ name: "digest", value: "sha256:aaaa" }] });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("cancelled-0", (r) => r.status?.pipelineRun !== undefined, "started");
    await runs.mergePatch(ns, "cancelled", {
      spec: { status: "RunCancelled", statusMessage: "PipelineRun release-1 was cancelled" },
    });
    const done = await waitDone("cancelled");
    assert.equal(done.status?.conditions?.[0]?.reason, "CustomRunCancelled");
    assert.equal(done.status?.conditions?.[0]?.message, "PipelineRun release-1 was cancelled");
    await f.waitForReason("cancelled-0", "Cancelled");
    // The internal run was cancelled, then collected (retention 0, no debug).
    await eventually(async () => {
      const live = await f.tekton.runs.get(f.privateNs, run?.metadata?.name as string).catch(() => undefined);
      return !live || live.spec?.status === "Cancelled";
    }, "internal PipelineRun cancelled");
  });

  it("enforces spec.timeout per attempt, and retries until the last attempt", async () => {
    const { f, create, waitDone, runs, ns } = await setup();
    await create("times-out", {
      customRef: ref("sign"),
      params: [{ name: "digest", value: "sha256:aaaa" }],
      timeout: "1s",
    });
    const timedOut = await waitDone("times-out");
    assert.equal(timedOut.status?.conditions?.[0]?.reason, "CustomRunTimedOut");
    await f.waitForReason("times-out-0", "Cancelled");

    await create("retried", {
      customRef: ref("sign"),
      params: [{ name: "digest", value: "sha256:aaaa" }],
      retries: 2,
    });
    await f.waitForRequest("retried-0", (r) => r.status?.pipelineRun !== undefined, "attempt 1 started");
    const attempt1 = (await f.requests.get(ns, "retried-0")).status?.pipelineRun?.split("/")[1] as string;
    await f.tekton.fail(attempt1, { name: "sign", reason: "Failed", message: "flaky network" });
    await f.waitForRequest("retried-1", (r) => r.status?.pipelineRun !== undefined, "attempt 2 started");
    const mid = await runs.get(ns, "retried");
    assert.equal(mid.status?.conditions?.[0]?.status, "Unknown", "still running while retries remain");
    assert.equal(mid.status?.retriesStatus?.length, 1);
    assert.equal(mid.status?.retriesStatus?.[0]?.conditions?.[0]?.status, "False");
    const attempt2 = (await f.requests.get(ns, "retried-1")).status?.pipelineRun?.split("/")[1] as string;
    await f.tekton.succeed(attempt2, [{ name: "signature", value: "second-time" }]);
    const done = await waitDone("retried");
    assert.equal(done.status?.conditions?.[0]?.status, "True");
    assert.equal(done.status?.retriesStatus?.length, 1);
    assert.deepEqual(done.status?.results, [{ name: "signature", value: "second-time" }]);
  });

  it("ends malformed CustomRuns False with a specific reason, and ignores other kinds", async () => {
    const { f, runs, ns, create, waitDone } = await setup();
    const cases: [string, V1beta1CustomRunSpec, string, RegExp][] = [
      [
        "unknown-service",
        { customRef: ref("nope"), params: [{ name: "digest", value: "sha256:a" }] },
        "Rejected",
        /nope/,
      ],
      [
        "bad-params",
        { customRef: ref("sign"), params: [{ name: "digest", value: "md5:a" }] },
        "Rejected",
        /digest/,
      ],
      [
        "wrong-kind",
        { customRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalService", name: "sign" } },
        "UnsupportedKind",
        /kind InternalRequest/,
      ],
      [
        "wrong-version",
        { customRef: { apiVersion: "appstudio.redhat.com/v1", kind: "InternalRequest", name: "sign" } },
        "UnsupportedKind",
        /v1alpha1/,
      ],
      ["no-name", { customRef: ref() }, "MissingServiceName", /name the InternalService/],
      [
        "bad-embedded",
        { customSpec: { ...ref(), spec: { nothing: true } } },
        "InvalidRequestSpec",
        /service .* or pipeline/,
      ],
      [
        "both-in-embedded",
        {
          customSpec: { ...ref(), spec: { service: "sign", pipeline: { pipelineRef: { resolver: "git" } } } },
        },
        "InvalidRequestSpec",
        /exactly one of/,
      ],
      [
        "with-workspace",
        { customRef: ref("sign"), workspaces: [{ name: "w", emptyDir: {} }] },
        "CustomRunWorkspaceNotSupported",
        /workspaces/,
      ],
    ];
    for (const [name, spec] of cases) await create(name, spec);
    await create("not-ours", { customRef: { apiVersion: "example.dev/v1", kind: "Widget", name: "w" } });
    for (const [name, , reason, message] of cases) {
      const done = await waitDone(name);
      assert.equal(done.status?.conditions?.[0]?.status, "False", name);
      assert.equal(done.status?.conditions?.[0]?.reason, reason, name);
      assert.match(done.status?.conditions?.[0]?.message ?? "", message, name);
    }
    assert.equal((await runs.get(ns, "not-ours")).status, undefined, "other custom tasks are left alone");
    assert.deepEqual(await f.tekton.list(), [], "nothing ran in the private cluster");
  });

  it("runs as a bridge alone (--requests=false) next to a request controller without custom tasks", async () => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { sign: service },
      startController: false,
    });
    fixtures.push(f);
    await f.startController({ serveCustomTasks: false });
    const bridge = startManager({
      workspaces: [{ name: "public", kubeConfig: f.publicKc, namespaces: f.namespaces }],
      serveRequests: false,
      log: silentLogger,
      metrics: new Metrics({ processMetrics: false }),
    });
    after(() => bridge.stop());
    await bridge.ready;
    const runs = new ResourceClient<V1beta1CustomRun>(f.publicKc, customRuns, "test");
    const ns = f.namespaces[0] as string;
    await runs.create(ns, {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: "split" },
      spec: { customRef: ref("sign"), params: [{ name: "digest", value: "sha256:split" }] },
    });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("split-0", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string, [{ name: "signature", value: "split" }]);
    const done = await eventually(async () => {
      const r = await runs.get(ns, "split");
      return r.status?.conditions?.[0]?.status === "True" && r;
    }, "CustomRun done");
    assert.deepEqual(done.status?.results, [{ name: "signature", value: "split" }]);
    const controllers = new Set(
      (await bridge.metrics.reconcileTotal.get()).values.map((v) => v.labels.controller),
    );
    assert.deepEqual([...controllers], ["customrun"], "the bridge alone never reconciles InternalRequests");
  });

  it("ends a CustomRun with an unparsable spec.timeout False with InvalidTimeout", async () => {
    // Served from the private plane as a second workspace: Tekton's own controller, running on the
    // public plane in the end-to-end file, cannot decode such a CustomRun and its CustomRun
    // informer stops listing altogether (a poison pill for Tekton, not for us).
    const planes = testPlanes();
    const otherNs = await createNamespace(planes.privateAdmin, uniqueName("team-odd"));
    const f = await Fixture.create({
      config: () => ({ allowList: [otherNs] }),
      services: { sign: service },
      startController: false,
    });
    fixtures.push(f);
    await f.startController({
      workspaces: [{ name: "odd", kubeConfig: planes.privateAdmin, namespaces: [otherNs] }],
    });
    const runs = new ResourceClient<V1beta1CustomRun>(planes.privateAdmin, customRuns, "test");
    await runs.create(otherNs, {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: "bad-timeout" },
      spec: { customRef: ref("sign"), timeout: "soon" },
    });
    const done = await eventually(async () => {
      const r = await runs.get(otherNs, "bad-timeout");
      return r.status?.conditions?.[0]?.status === "False" && r;
    }, "bad-timeout done");
    assert.equal(done.status?.conditions?.[0]?.reason, "InvalidTimeout");
    assert.match(done.status?.conditions?.[0]?.message ?? "", /spec.timeout/);
  });
});
