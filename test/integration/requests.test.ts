// The InternalRequest controller end to end on real public and private API servers, with the test
// playing Tekton's part in the private cluster.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { eventually } from "../../envtest/wait.ts";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";
import { finalizer, labelPrefix, pipelineRunName } from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";
import { signService } from "../support/services.ts";

const allowAll = (namespaces: string[]) => ({ allowList: namespaces });

describe("InternalRequest controller", () => {
  const fixtures: Fixture[] = [];
  const fixture = async (opts: Parameters<typeof Fixture.create>[0]) => {
    const f = await Fixture.create(opts);
    fixtures.push(f);
    return f;
  };
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });

  it("denies everything when there is no InternalServicesConfig, and writes nothing privately", async () => {
    const f = await fixture({ services: { sign: signService } });
    await f.createRequest("no-config", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const r = await f.waitForReason("no-config", "Rejected");
    assert.equal(r.status?.conditions?.[0]?.status, "False");
    assert.match(r.status?.conditions?.[0]?.message ?? "", /allowList/);
    assert.deepEqual(await f.tekton.list(), []);
    assert.equal(r.metadata.finalizers, undefined, "no finalizer");
    const events = await f.publicKc
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: f.namespaces[0] as string });
    assert.ok(
      events.items.some(
        (e) => e.reason === "Rejected" && e.type === "Warning" && e.involvedObject.name === "no-config",
      ),
    );
  });

  it("rejects a namespace missing from the allowList, naming it", async () => {
    const f = await fixture({
      namespaces: 2,
      config: (ns) => ({ allowList: [ns[0] as string] }),
      services: { sign: signService },
    });
    const other = f.namespaces[1] as string;
    await f.createRequest(
      "outsider",
      { service: "sign", params: { digest: "sha256:abcdef12" } },
      { namespace: other },
    );
    const r = await f.waitForReason("outsider", "Rejected", other);
    assert.match(r.status?.conditions?.[0]?.message ?? "", new RegExp(`"${other}"`));
    assert.deepEqual(await f.tekton.list(), []);
  });

  it("applies the service's own allowedNamespaces on top of the config's allowList", async () => {
    const f = await fixture({
      namespaces: 2,
      config: allowAll,
      services: { sign: { ...signService } },
      startController: false,
    });
    await f.services.mergePatch(f.privateNs, "sign", {
      spec: { allowedNamespaces: [`public/${f.namespaces[0]}`] },
    });
    await f.startController();
    const other = f.namespaces[1] as string;
    await f.createRequest(
      "svc-outsider",
      { service: "sign", params: { digest: "sha256:abcdef12" } },
      { namespace: other },
    );
    const r = await f.waitForReason("svc-outsider", "Rejected", other);
    assert.match(r.status?.conditions?.[0]?.message ?? "", /InternalService "sign"/);
    assert.match(r.status?.conditions?.[0]?.message ?? "", new RegExp(other));
    await f.createRequest("svc-insider", { service: "sign", params: { digest: "sha256:abcdef12" } });
    await f.tekton.waitForRuns(1);
  });

  it("runs an accepted request as one PipelineRun and copies results back on success", async () => {
    const f = await fixture({
      config: allowAll,
      services: { sign: { ...signService, retention: { keepFinishedPipelineRuns: "0s" } } },
    });
    const created = await f.createRequest(
      "sign-1",
      { service: "sign", params: { digest: "sha256:abcdef12" } },
      {
        labels: {
          "internal-services.appstudio.openshift.io/pipelinerun-uid": "caller-uid",
          "app.kubernetes.io/managed-by": "someone-else",
        },
      },
    );
    const [run] = await f.tekton.waitForRuns(1);
    assert.ok(run);
    assert.equal(run.metadata?.name, pipelineRunName("public", "sign-1", created.metadata.uid as string));
    const labels = run.metadata?.labels ?? {};
    assert.equal(labels["internal-services.appstudio.openshift.io/name"], "sign-1");
    assert.equal(labels["internal-services.appstudio.openshift.io/namespace"], f.namespaces[0]);
    assert.equal(labels["internal-services.appstudio.openshift.io/request-uid"], created.metadata.uid);
    assert.equal(labels["internal-services.appstudio.openshift.io/pipelinerun-uid"], "caller-uid");
    assert.equal(labels["app.kubernetes.io/managed-by"], "internal-service-controller", "system labels win");
    assert.deepEqual(run.spec?.params, [
      { name: "digest", value: "sha256:abcdef12" },
      { name: "keyId", value: "release-key-1" },
    ]);
    assert.equal(run.spec?.taskRunTemplate?.serviceAccountName, "signer");

    const running = await f.waitForRequest(
      "sign-1",
      (r) => r.status?.pipelineRun !== undefined,
      "pipelineRun recorded",
    );
    assert.equal(running.status?.conditions?.[0]?.reason, "Running");
    assert.equal(running.status?.pipelineRun, `${f.privateNs}/${run.metadata?.name}`);
    // No finalizer: a deletion is followed by the run sweep, with no write to the request.
    assert.equal(running.metadata.finalizers, undefined);

    await f.tekton.progress(run.metadata?.name as string, 2, 5);
    await f.waitForRequest(
      "sign-1",
      (r) => r.status?.conditions?.[0]?.message === "2/5 tasks completed",
      "progress",
    );

    await f.tekton.succeed(run.metadata?.name as string, [
      { name: "signature", value: "c2lnbmF0dXJl" },
      { name: "digests", value: ["sha256:1", "sha256:2"] },
      { name: "meta", value: { key: "k1" } },
    ]);
    const done = await f.waitForReason("sign-1", "Succeeded");
    assert.equal(done.status?.conditions?.[0]?.status, "True");
    assert.deepEqual(done.status?.results, {
      signature: "c2lnbmF0dXJl",
      digests: JSON.stringify(["sha256:1", "sha256:2"]),
      meta: JSON.stringify({ key: "k1" }),
    });
    assert.ok(done.status?.completionTime);
    // Retention 0s: the finished run is deleted.
    await eventually(async () => (await f.tekton.list()).length === 0, "finished PipelineRun deleted");
  });

  it("copies only the labels the policy allows onto the run; the service's own win; the status names the rest", async () => {
    const caller = "internal-services.appstudio.openshift.io";
    const f = await fixture({
      config: (ns) => ({ allowList: ns, propagateLabels: { prefixes: ["release.example.com/"] } }),
      services: {
        limited: {
          pipeline: { pipelineName: "limited" },
          runLabels: { [`${caller}/rate-limiting-group`]: "signing-server" },
          runAnnotations: { "queue.example.com/name": "signing" },
        },
      },
    });
    const callers = {
      [`${caller}/pipelinerun-uid`]: "pr-uid",
      [`${caller}/group-id`]: "g-1",
      [`${caller}/pipeline-name`]: "release",
      [`${caller}/rate-limited`]: "true",
      [`${caller}/rate-limiting-group`]: "tenant-choice",
      [`${caller}/intention`]: "production",
    };
    await f.createRequest(
      "labelled",
      { service: "limited" },
      {
        labels: {
          ...callers,
          "release.example.com/application": "app-1",
          "kueue.x-k8s.io/priority-class": "top",
          "sidecar.istio.io/inject": "false",
          app: "signing-server",
        },
      },
    );
    const [run] = await f.tekton.waitForRuns(1);
    const labels = run?.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(callers)) {
      assert.equal(labels[k], k.endsWith("/rate-limiting-group") ? "signing-server" : v, k);
    }
    assert.equal(labels["release.example.com/application"], "app-1", "allowed by the config's prefix");
    assert.equal(labels["pipelines.appstudio.openshift.io/type"], "release");
    for (const k of ["kueue.x-k8s.io/priority-class", "sidecar.istio.io/inject", "app"]) {
      assert.equal(k in labels, false, `${k} not copied`);
    }
    assert.equal(run?.metadata?.annotations?.["queue.example.com/name"], "signing");
    const started = await f.waitForRequest("labelled", (r) => r.status?.pipelineRun !== undefined, "started");
    assert.equal(
      started.status?.conditions?.[0]?.message,
      `accepted; internal PipelineRun started (labels not copied to the internal PipelineRun: "app", "kueue.x-k8s.io/priority-class", "sidecar.istio.io/inject" (the InternalServicesConfig's propagateLabels allows keys))`,
    );
  });

  it("private admission queues: a held run is reported queued, never released by us, and its wait is not run time", async () => {
    const f = await fixture({
      config: allowAll,
      services: { held: { pipeline: { pipelineName: "held" }, timeouts: { default: "3s" } } },
    });
    const created = await f.createRequest("held-1", { service: "held" });
    const [run] = await f.tekton.waitForRuns(1);
    const name = run?.metadata?.name as string;
    await f.tekton.hold(name, "signing");
    const queued =
      "queued in the private cluster: the internal PipelineRun is held pending admission (queue signing)";
    await f.waitForRequest("held-1", (r) => r.status?.conditions?.[0]?.message === queued, "reported held");
    // Held longer than its 3 s pipeline timeout: still running, and still held (we never clear it).
    const since = Date.parse(String(created.metadata.creationTimestamp));
    await eventually(async () => {
      const r = await f.requests.get(f.namespaces[0] as string, "held-1");
      assert.equal(r.status?.conditions?.[0]?.reason, "Running", "the wait does not count as run time");
      return Date.now() - since > 5_000 || undefined;
    }, "held for more than the pipeline timeout");
    assert.equal((await f.tekton.runs.get(f.privateNs, name)).spec?.status, "PipelineRunPending");
    await f.tekton.admit(name);
    await f.tekton.succeed(name);
    await f.waitForReason("held-1", "Succeeded");
  });

  it("a queue timeout ends a request held too long, or waiting too long for a concurrency slot", async () => {
    const f = await fixture({
      config: allowAll,
      services: {
        single: {
          pipeline: { pipelineName: "single" },
          maxConcurrentRuns: 1,
          timeouts: { queue: "1h" },
          retention: { keepFinishedPipelineRuns: "1h" }, // keeps the cancelled run to look at
        },
      },
    });
    await f.createRequest("held-2", { service: "single", timeouts: { queue: "2s" } });
    const [run] = await f.tekton.waitForRuns(1);
    const name = run?.metadata?.name as string;
    await f.tekton.hold(name, "signing");
    // The slot is taken by the held run: the next request waits for it, with its own 1 s.
    await f.createRequest("waiting", { service: "single", timeouts: { queue: "1s" } });
    const waited = await f.waitForReason("waiting", "TimedOut");
    assert.equal(
      waited.status?.conditions?.[0]?.message,
      'waited longer than its queue timeout (1s) for a concurrency slot: service "single" is running 1 of at most 1 concurrent runs',
    );
    const held = await f.waitForReason("held-2", "TimedOut");
    assert.match(
      held.status?.conditions?.[0]?.message ?? "",
      /^held pending admission in the private cluster past its queue timeout \(until .+Z\); internal PipelineRun cancelled$/,
    );
    assert.equal((await f.tekton.runs.get(f.privateNs, name)).spec?.status, "Cancelled");
    await f.tekton.markCancelled(name); // Tekton's part: the slot is free once the run is done
    // Beyond the service's own limit a request's is capped, with a note.
    await f.createRequest("capped-queue", { service: "single", timeouts: { queue: "5h" } });
    const capped = await f.waitForRequest(
      "capped-queue",
      (r) => r.status?.pipelineRun !== undefined,
      "started",
    );
    assert.match(
      capped.status?.conditions?.[0]?.message ?? "",
      /spec.timeouts.queue 5h0m0s capped at the service's timeouts.queue 1h0m0s/,
    );
  });

  it("keeps finished PipelineRuns for the service's retention, then deletes them", async () => {
    const f = await fixture({
      config: allowAll,
      services: { sign: { ...signService, retention: { keepFinishedPipelineRuns: "3s" } } },
    });
    await f.createRequest("kept", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("kept", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string);
    const done = await f.waitForReason("kept", "Succeeded");
    assert.equal((await f.tekton.list()).length, 1, "still kept right after completion");
    await eventually(async () => (await f.tekton.list()).length === 0, "run deleted after retention", 20_000);
    assert.ok(Date.now() - Date.parse(done.status?.completionTime ?? "") >= 3_000 - 1_000);
  });

  it("bounds result sizes and says which results were dropped", async () => {
    const f = await fixture({ config: allowAll, services: { sign: signService } });
    await f.createRequest("big", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("big", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string, [
      { name: "small", value: "ok" },
      { name: "huge", value: "x".repeat(100 * 1024) },
    ]);
    const r = await f.waitForReason("big", "Succeeded");
    assert.deepEqual(r.status?.results, { small: "ok" });
    assert.deepEqual(r.status?.droppedResults, ["huge"]);
    assert.match(r.status?.conditions?.[0]?.message ?? "", /dropped.*huge/);
  });

  it("rejects params that fail the service's schema, saying which rule", async () => {
    const f = await fixture({ config: allowAll, services: { sign: signService } });
    await f.createRequest("bad-digest", { service: "sign", params: { digest: "md5:1234" } });
    const r = await f.waitForReason("bad-digest", "Rejected");
    assert.match(r.status?.conditions?.[0]?.message ?? "", /digest/);
    assert.match(r.status?.conditions?.[0]?.message ?? "", /pattern/);
    await f.createRequest("extra-param", {
      service: "sign",
      params: { digest: "sha256:abcdef12", evil: "x" },
    });
    const r2 = await f.waitForReason("extra-param", "Rejected");
    assert.match(r2.status?.conditions?.[0]?.message ?? "", /evil/);
    assert.deepEqual(await f.tekton.list(), []);
  });

  it("pins the service account: a request cannot choose one the service does not allow", async () => {
    const f = await fixture({
      config: allowAll,
      services: { sign: { ...signService, allowedServiceAccounts: ["signer-readonly"] } },
    });
    await f.createRequest("escalate", {
      service: "sign",
      params: { digest: "sha256:abcdef12" },
      serviceAccount: "cluster-admin-sa",
    });
    const r = await f.waitForReason("escalate", "Rejected");
    assert.match(r.status?.conditions?.[0]?.message ?? "", /cluster-admin-sa/);
    await f.createRequest("allowed-sa", {
      service: "sign",
      params: { digest: "sha256:abcdef12" },
      serviceAccount: "signer-readonly",
    });
    const [run] = await f.tekton.waitForRuns(1);
    assert.equal(run?.spec?.taskRunTemplate?.serviceAccountName, "signer-readonly");
  });

  it("accepts raw pipeline requests only from allow-listed sources", async () => {
    const f = await fixture({
      config: (ns) => ({
        allowList: ns,
        allowedPipelineSources: [
          {
            resolver: "git",
            params: {
              url: "https://git.internal/releng/*",
              revision: "refs/tags/*",
              pathInRepo: "pipelines/*.yaml",
            },
          },
        ],
      }),
    });
    const gitRef = (url: string, revision: string) => ({
      pipelineRef: {
        resolver: "git",
        params: [
          { name: "url", value: url },
          { name: "revision", value: revision },
          { name: "pathInRepo", value: "pipelines/push.yaml" },
        ],
      },
    });
    await f.createRequest("bad-url", { pipeline: gitRef("https://evil.example/releng/x", "refs/tags/v1") });
    await f.createRequest("bad-revision", { pipeline: gitRef("https://git.internal/releng/x", "main") });
    await f.createRequest("bundle", {
      pipeline: { pipelineRef: { resolver: "bundles", params: [{ name: "bundle", value: "q/x:1" }] } },
    });
    for (const name of ["bad-url", "bad-revision", "bundle"]) {
      const r = await f.waitForReason(name, "Rejected");
      assert.match(r.status?.conditions?.[0]?.message ?? "", /pipeline|source|resolver/i, name);
    }
    assert.deepEqual(await f.tekton.list(), []);
    await f.createRequest("good", { pipeline: gitRef("https://git.internal/releng/x", "refs/tags/v1") });
    const [run] = await f.tekton.waitForRuns(1);
    assert.equal(run?.spec?.pipelineRef?.resolver, "git");
  });

  it("reports the failing TaskRun's message and copies results on failure", async () => {
    const f = await fixture({ config: allowAll, services: { sign: signService } });
    await f.createRequest("fails", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("fails", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.fail(
      run?.metadata?.name as string,
      { name: "sign", reason: "Failed", message: "key release-key-1 is revoked" },
      [{ name: "result", value: "key revoked" }],
    );
    const r = await f.waitForReason("fails", "Failed");
    assert.match(
      r.status?.conditions?.[0]?.message ?? "",
      /task sign failed: .*key release-key-1 is revoked/,
    );
    assert.deepEqual(r.status?.results, { result: "key revoked" });
  });

  it("publishes a failing task's message only with secrets taken out, in status and Event alike", async () => {
    const token = "tok-9f8e7d6c5b4a";
    const services = {
      sign: {
        ...signService,
        paramsSchema: {
          ...signService.paramsSchema,
          properties: {
            ...(signService.paramsSchema?.properties as Record<string, unknown>),
            token: { type: "string" },
          },
        },
        sensitiveParams: ["token"],
      },
      terse: { ...signService, failureMessages: "ReasonOnly" as const },
    };
    const f = await fixture({
      config: (ns) => ({ ...allowAll(ns), redactPatterns: ["[a-z0-9.-]+\\.corp\\.example\\.com"] }),
      services,
    });
    const leaks = [
      token,
      "sha256~Zx9aQ1bC2dE3fG4",
      "bot:ghp_abc123",
      "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
      "vault.corp.example.com",
      "hunter2",
    ];
    const message = [
      `signing with ${token} failed`,
      "curl -H 'Authorization: Bearer sha256~Zx9aQ1bC2dE3fG4' https://bot:ghp_abc123@git.example.org/x",
      "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
      "cannot reach vault.corp.example.com:8200 (password=hunter2)",
      "digest mismatch",
    ].join("\n");
    await f.createRequest("leaky", { service: "sign", params: { digest: "sha256:abcdef12", token } });
    await f.createRequest("terse", { service: "terse", params: { digest: "sha256:abcdef12" } });
    const runs = await f.tekton.waitForRuns(2);
    for (const name of ["leaky", "terse"])
      await f.waitForRequest(name, (r) => r.status?.pipelineRun !== undefined, "started");
    for (const run of runs)
      await f.tekton.fail(run.metadata?.name as string, { name: "sign", reason: "TaskRunFailed", message });

    const leaky = (await f.waitForReason("leaky", "Failed")).status?.conditions?.[0]?.message ?? "";
    assert.match(leaky, /^task sign failed: TaskRunFailed: signing with <redacted> failed\n/);
    assert.match(leaky, /digest mismatch$/, "the rest of the message is kept");
    const terse = (await f.waitForReason("terse", "Failed")).status?.conditions?.[0]?.message ?? "";
    assert.equal(terse, "task sign failed: TaskRunFailed", "reason only");
    const events = await eventually(async () => {
      const list = await f.publicKc
        .makeApiClient(CoreV1Api)
        .listNamespacedEvent({ namespace: f.namespaces[0] as string });
      const failed = list.items.filter((e) => e.reason === "Failed");
      return failed.length === 2 ? failed : undefined;
    }, "a Failed Event for each request");
    for (const text of [leaky, terse, ...events.map((e) => e.message ?? "")])
      for (const leak of leaks)
        assert.ok(!text.includes(leak), `${JSON.stringify(leak)} leaked into ${text}`);
  });

  it("lets go of requests an earlier version held with its finalizer: finished, and deleted while running", async () => {
    const f = await fixture({ config: allowAll, services: { sign: signService } });
    const ns = f.namespaces[0] as string;
    // As the earlier version left them: its finalizer set (here before the controller sees them).
    await f.stop();
    for (const name of ["old-finished", "old-deleted"])
      await f.requests.create(ns, {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata: { name, finalizers: [finalizer] },
        spec: { service: "sign", params: { digest: "sha256:abcdef12" } },
      });
    await f.startController();
    const runs = await f.tekton.waitForRuns(2);
    const runOf = (name: string) =>
      runs.find(
        (r) =>
          r.metadata?.annotations?.["internal-services.appstudio.openshift.io/request"] === `${ns}/${name}`,
      );
    await f.tekton.succeed(runOf("old-finished")?.metadata?.name as string);
    await f.waitForReason("old-finished", "Succeeded");
    await f.waitForRequest(
      "old-finished",
      (r) => r.metadata.finalizers === undefined,
      "its finalizer removed",
    );
    await f.waitForRequest("old-deleted", (r) => !!r.status?.pipelineRun, "started");
    await f.requests.delete(ns, "old-deleted");
    await eventually(
      async () => (await f.requests.list(ns)).items.every((r) => r.metadata.name !== "old-deleted"),
      "the deleted request let go",
    );
    await eventually(async () => (await f.tekton.list()).length === 0, "both runs removed");
  });

  it("cancels the run of a request deleted while the controller was down", async () => {
    const f = await fixture({
      config: (ns) => ({ allowList: ns, debug: true }),
      services: { sign: signService },
    });
    const ns = f.namespaces[0] as string;
    await f.createRequest("gone-while-down", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("gone-while-down", (r) => !!r.status?.pipelineRun, "started");
    await f.stop();
    // Nothing holds the request: it goes at once.
    await f.requests.delete(ns, "gone-while-down");
    assert.equal((await f.requests.list(ns)).items.length, 0);
    await f.startController();
    const cancelled = await eventually(async () => {
      const r = await f.tekton.runs.get(f.privateNs, run?.metadata?.name as string);
      return r.spec?.status === "Cancelled" ? r : undefined;
    }, "the run cancelled (and kept: debug)");
    assert.ok(cancelled);
  });

  it("cancels the internal PipelineRun when the request is deleted", async () => {
    const f = await fixture({ config: allowAll, services: { sign: signService } });
    await f.createRequest("to-delete", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("to-delete", (r) => !!r.status?.pipelineRun, "started");
    await f.requests.delete(f.namespaces[0] as string, "to-delete");
    await eventually(async () => {
      try {
        await f.requests.get(f.namespaces[0] as string, "to-delete");
        return false;
      } catch {
        return true;
      }
    }, "request gone");
    // Cancelled, then deleted (no debug): nothing left behind in the private cluster.
    await eventually(async () => (await f.tekton.list()).length === 0, "internal PipelineRun removed");
    assert.ok(run);
  });

  it("cancels through spec.status, and keeps the spec otherwise immutable", async () => {
    // debug keeps finished PipelineRuns, so the cancelled run can be inspected.
    const f = await fixture({
      config: (ns) => ({ allowList: ns, debug: true }),
      services: { sign: signService },
    });
    const ns = f.namespaces[0] as string;
    await f.createRequest("cancel-me", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("cancel-me", (r) => r.status?.pipelineRun !== undefined, "started");
    await assert.rejects(
      f.requests.mergePatch(ns, "cancel-me", { spec: { params: { digest: "sha256:ffffffff" } } }),
      (err: { code?: number; body?: unknown }) => {
        assert.equal(err.code, 422);
        assert.match(String(err.body), /immutable/);
        return true;
      },
    );
    await f.requests.mergePatch(ns, "cancel-me", { spec: { status: "Cancelled" } });
    const r = await f.waitForReason("cancel-me", "Cancelled");
    assert.equal(r.status?.conditions?.[0]?.status, "False");
    const cancelled = await f.tekton.runs.get(f.privateNs, run?.metadata?.name as string);
    assert.equal(cancelled.spec?.status, "Cancelled");
    assert.equal((await f.tekton.list()).length, 1, "run kept (debug)");
    await assert.rejects(f.requests.mergePatch(ns, "cancel-me", { spec: { status: null } }), { code: 422 });
  });

  it("times a request out itself, from when its run started, and cancels the PipelineRun", async () => {
    const f = await fixture({
      config: allowAll,
      services: { sign: { ...signService, timeouts: { default: "2s", maximum: "1h" } } },
    });
    await f.createRequest("slow", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [run] = await f.tekton.waitForRuns(1);
    assert.equal(run?.spec?.timeouts?.pipeline, "2s");
    await f.tekton.progress(run?.metadata?.name as string, 0, 1); // Tekton starts it: the clock runs
    const r = await f.waitForReason("slow", "TimedOut");
    assert.equal(r.status?.conditions?.[0]?.status, "False");
    const cancelled = await f.tekton.runs
      .get(f.privateNs, run?.metadata?.name as string)
      .catch(() => undefined);
    // Either still there and cancelled, or already garbage-collected after the timeout.
    if (cancelled) assert.equal(cancelled.spec?.status, "Cancelled");
  });

  it("queues requests beyond the service's concurrency limit; a finishing run wakes them", async () => {
    const f = await fixture({
      config: allowAll,
      services: { sign: { ...signService, maxConcurrentRuns: 1 } },
      startController: false,
    });
    // The periodic re-check is pushed out of the test's reach: only the wake-up can start "second".
    await f.startController({ queuedRecheckMs: 3_600_000 });
    await f.createRequest("first", { service: "sign", params: { digest: "sha256:abcdef12" } });
    const [first] = await f.tekton.waitForRuns(1);
    await f.createRequest("second", { service: "sign", params: { digest: "sha256:abcdef13" } });
    const queued = await f.waitForRequest(
      "second",
      (r) => /queued/.test(r.status?.conditions?.[0]?.message ?? ""),
      "queued",
    );
    assert.equal(queued.status?.conditions?.[0]?.status, "Unknown");
    assert.equal((await f.tekton.list()).length, 1);
    const gauge = await f.manager?.metrics.registry.getSingleMetricAsString("internal_requests_active");
    assert.match(gauge ?? "", /internal_requests_active\{service="sign"\} 1/);
    await f.tekton.succeed(first?.metadata?.name as string);
    await f.waitForReason("first", "Succeeded");
    await f.waitForRequest("second", (r) => r.status?.pipelineRun !== undefined, "second started");
  });

  it("shares a service's slots round the tenants: one with many requests queued holds no other back", async () => {
    const f = await fixture({
      namespaces: 2,
      config: allowAll,
      services: { sign: { ...signService, maxConcurrentRuns: 1 } },
    });
    const [a, b] = f.namespaces as [string, string];
    const requestOf = (run: V1PipelineRun) => run.metadata?.annotations?.[`${labelPrefix}/request`];
    const params = (i: number) => ({ digest: `sha256:abcdef${10 + i}` });
    await f.createRequest("a-0", { service: "sign", params: params(0) });
    await f.tekton.waitForRuns(1);
    // One after another, so that they queue in this order.
    for (let i = 1; i <= 4; i++) {
      await f.createRequest(`a-${i}`, { service: "sign", params: params(i) });
      await f.waitForRequest(
        `a-${i}`,
        (r) => /queued/.test(r.status?.conditions?.[0]?.message ?? ""),
        "queued",
      );
    }
    await f.createRequest("b-0", { service: "sign", params: params(9) }, { namespace: b });
    await f.waitForRequest(
      "b-0",
      (r) => /queued/.test(r.status?.conditions?.[0]?.message ?? ""),
      "queued",
      b,
    );
    // Run after run, in the order the slots went: b-0 second, then team a's in theirs.
    const order: string[] = [];
    for (let n = 0; n < 6; n++) {
      const run = await eventually(
        async () => {
          const live = (await f.tekton.list()).filter((r) => !r.status?.completionTime);
          assert.ok(live.length <= 1, `at most one run at once: ${live.map(requestOf).join(", ")}`);
          return live[0];
        },
        `run ${n + 1}`,
      );
      order.push(requestOf(run) as string);
      await f.tekton.succeed(run.metadata?.name as string);
      await eventually(
        async () =>
          (await f.tekton.list()).every((r) => r.metadata?.name !== run.metadata?.name) || undefined,
        `run ${n + 1} cleaned up`,
      );
    }
    assert.deepEqual(order, [`${a}/a-0`, `${b}/b-0`, `${a}/a-1`, `${a}/a-2`, `${a}/a-3`, `${a}/a-4`]);
  });
});
