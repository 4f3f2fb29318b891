import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { InternalRequest, InternalRequestStatus } from "../../src/generated/crds.ts";
import type { KnativeCondition, V1PipelineRun, V1PipelineRunResult } from "../../src/generated/tekton.ts";
import type { RunPlan } from "../../src/policy/admit.ts";
import { type Condition, isTerminal, withSucceeded } from "../../src/requests/conditions.ts";
import {
  formatKey,
  isValidLabelValue,
  labelPrefix,
  managedByLabel,
  managedByValue,
  parseKey,
  pipelineRunName,
  requestNameLabel,
  requestNamespaceLabel,
  requestUidLabel,
  serviceLabel,
  workspaceLabel,
} from "../../src/requests/naming.ts";
import {
  type BuildInput,
  buildPipelineRun,
  copyResults,
  maxResultBytes,
  maxTotalResultBytes,
  progressMessage,
  runState,
} from "../../src/requests/pipelinerun.ts";
import { rawPipelineGroup, slotGroup } from "../../src/requests/slots.ts";

/** A DNS-1123 label: what a PipelineRun name must be for Tekton to copy it into label values. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

describe("pipelineRunName", () => {
  const uid = "0b5c7a3e-1111-4222-8333-444455556666";

  test("is deterministic", () => {
    assert.equal(pipelineRunName("ws", "my-request", uid), pipelineRunName("ws", "my-request", uid));
  });

  test("differs per workspace and per uid", () => {
    const base = pipelineRunName("ws-a", "my-request", uid);
    assert.notEqual(pipelineRunName("ws-b", "my-request", uid), base);
    assert.notEqual(pipelineRunName("ws-a", "my-request", `${uid.slice(0, -1)}7`), base);
  });

  test("starts with the request name as a readable prefix", () => {
    assert.match(pipelineRunName("ws", "my-request", uid), /^my-request-[0-9a-f]{16}$/);
  });

  test("replaces dots, which k8s names may contain but the run name must not", () => {
    const name = pipelineRunName("ws", "release.v1.2.3", uid);
    assert.match(name, /^release-v1-2-3-[0-9a-f]{16}$/);
    assert.match(name, DNS1123_LABEL);
  });

  const odd = [
    "a".repeat(253),
    `${"x".repeat(39)}.rest-of-the-name`, // cut right after a dot: no trailing hyphen
    `${"y".repeat(38)}..${"z".repeat(50)}`,
    "a.b-c.d".repeat(30),
    "0",
    "1.2.3.4",
  ];
  for (const requestName of odd) {
    test(`is <= 63 characters and DNS-1123 valid for ${JSON.stringify(requestName.slice(0, 50))}`, () => {
      const name = pipelineRunName("some-workspace", requestName, uid);
      assert.ok(name.length <= 63, `${name} has ${name.length} characters`);
      assert.match(name, DNS1123_LABEL);
      assert.ok(isValidLabelValue(name));
    });
  }

  test("falls back to an ir- prefix when nothing of the name is usable", () => {
    assert.match(pipelineRunName("ws", "", uid), /^ir-[0-9a-f]{16}$/);
  });
});

describe("request keys", () => {
  test("formatKey and parseKey round trip", () => {
    const key = { workspace: "public", namespace: "tenant-a", name: "req.1" };
    assert.equal(formatKey(key), "public/tenant-a/req.1");
    assert.deepEqual(parseKey(formatKey(key)), key);
  });

  test("parseKey fills missing parts with empty strings", () => {
    assert.deepEqual(parseKey("public"), { workspace: "public", namespace: "", name: "" });
  });
});

describe("isValidLabelValue", () => {
  const cases: [string, boolean][] = [
    ["", true],
    ["a", true],
    ["A_b.c-9", true],
    ["a".repeat(63), true],
    ["a".repeat(64), false],
    ["-a", false],
    ["a-", false],
    [".a", false],
    ["a_", false],
    ["a b", false],
    ["a/b", false],
    ["é", false],
    ["a\n", false],
  ];
  for (const [value, valid] of cases)
    test(`${JSON.stringify(value.length > 20 ? `${value.slice(0, 5)}…(${value.length})` : value)} is ${valid ? "valid" : "invalid"}`, () =>
      assert.equal(isValidLabelValue(value), valid));
});

describe("conditions", () => {
  const t0 = "2024-05-01T10:00:00Z";
  const now = Date.parse("2024-05-01T11:22:33.456Z");
  const running: Condition = {
    type: "Succeeded",
    status: "Unknown",
    reason: "Running",
    message: "queued",
    lastTransitionTime: t0,
  };
  const other: Condition = {
    type: "Accepted",
    status: "True",
    reason: "Allowed",
    message: "",
    lastTransitionTime: t0,
  };

  test("withSucceeded puts Succeeded first and keeps the other conditions", () => {
    const out = withSucceeded(
      [other, running],
      { status: "Unknown", reason: "Running", message: "1/2" },
      3,
      now,
    );
    assert.deepEqual(
      out.map((c) => c.type),
      ["Succeeded", "Accepted"],
    );
    assert.deepEqual(out[1], other);
    assert.equal(out[0]?.message, "1/2");
    assert.equal(out[0]?.observedGeneration, 3);
  });

  test("withSucceeded adds Succeeded to an empty list with now as lastTransitionTime (no fraction)", () => {
    const out = withSucceeded(
      undefined,
      { status: "Unknown", reason: "Running", message: "" },
      undefined,
      now,
    );
    assert.equal(out.length, 1);
    assert.equal(out[0]?.lastTransitionTime, "2024-05-01T11:22:33Z");
    assert.equal("observedGeneration" in (out[0] ?? {}), false);
  });

  test("withSucceeded keeps lastTransitionTime when the status is unchanged", () => {
    const out = withSucceeded([running], { status: "Unknown", reason: "Running", message: "2/5" }, 1, now);
    assert.equal(out[0]?.lastTransitionTime, t0);
    assert.equal(out[0]?.message, "2/5");
  });

  test("withSucceeded moves lastTransitionTime when the status changes", () => {
    const out = withSucceeded([running, other], { status: "True", reason: "Succeeded", message: "" }, 1, now);
    assert.equal(out[0]?.status, "True");
    assert.equal(out[0]?.reason, "Succeeded");
    assert.equal(out[0]?.lastTransitionTime, "2024-05-01T11:22:33Z");
    assert.equal(out.filter((c) => c.type === "Succeeded").length, 1);
  });

  test("withSucceeded does not mutate its input", () => {
    const input = [other, running];
    const copy = structuredClone(input);
    withSucceeded(input, { status: "False", reason: "Failed", message: "x" }, 2, now);
    assert.deepEqual(input, copy);
  });

  test("isTerminal", () => {
    const status = (s: Condition["status"] | undefined): InternalRequestStatus => ({
      conditions: s === undefined ? [other] : [{ ...running, status: s }, other],
    });
    assert.equal(isTerminal(undefined), false);
    assert.equal(isTerminal({}), false);
    assert.equal(isTerminal(status(undefined)), false);
    assert.equal(isTerminal(status("Unknown")), false);
    assert.equal(isTerminal(status("True")), true);
    const failed = (reason: string): InternalRequestStatus => ({
      conditions: [{ ...running, status: "False", reason }, other],
    });
    assert.equal(isTerminal(failed("Failed")), true);
    assert.equal(isTerminal(failed("Rejected")), true);
    // The Go controller's "running": False with reason Running is still in flight.
    assert.equal(isTerminal(failed("Running")), false);
  });
});

function request(labels?: Record<string, string>, name = "req-1"): InternalRequest {
  return {
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalRequest",
    metadata: { name, namespace: "tenant-a", uid: "uid-123", ...(labels ? { labels } : {}) },
    spec: { service: "signer" },
  };
}

function plan(overrides: Partial<RunPlan> = {}): RunPlan {
  return {
    service: "signer",
    pipelineName: "sign-pipeline",
    params: {},
    timeouts: { pipelineMs: 3_600_000, queueMs: 86_400_000 },
    sensitiveParams: [],
    notes: [],
    ...overrides,
  };
}

function build(overrides: Partial<BuildInput> = {}): V1PipelineRun {
  return buildPipelineRun({
    name: "req-1-0123456789abcdef",
    namespace: "isc-private",
    workspace: "public",
    request: request(),
    plan: plan(),
    ...overrides,
  });
}

describe("buildPipelineRun", () => {
  test("sets identity, system labels and annotations", () => {
    const run = build();
    assert.equal(run.apiVersion, "tekton.dev/v1");
    assert.equal(run.kind, "PipelineRun");
    assert.equal(run.metadata?.name, "req-1-0123456789abcdef");
    assert.equal(run.metadata?.namespace, "isc-private");
    assert.deepEqual(run.metadata?.labels, {
      [managedByLabel]: managedByValue,
      "pipelines.appstudio.openshift.io/type": "release",
      [requestNameLabel]: "req-1",
      [requestNamespaceLabel]: "tenant-a",
      [requestUidLabel]: "uid-123",
      [workspaceLabel]: "public",
      [serviceLabel]: "signer",
    });
    assert.deepEqual(run.metadata?.annotations, {
      [`${labelPrefix}/workspace`]: "public",
      [`${labelPrefix}/request`]: "tenant-a/req-1",
      [`${labelPrefix}/service`]: "signer",
    });
  });

  test("the plan's labels and annotations go on the run, never over the controller's own", () => {
    const run = build({
      plan: plan({
        labels: {
          [managedByLabel]: "someone-else",
          [requestNameLabel]: "spoofed",
          [requestUidLabel]: "spoofed",
          [serviceLabel]: "spoofed",
          [`${labelPrefix}/rate-limiting-group`]: "signing-server",
        },
        annotations: { [`${labelPrefix}/request`]: "spoofed/x", "kueue.example.com/queue": "sign" },
      }),
    });
    const labels = run.metadata?.labels ?? {};
    assert.equal(labels[managedByLabel], managedByValue);
    assert.equal(labels[requestNameLabel], "req-1");
    assert.equal(labels[requestUidLabel], "uid-123");
    assert.equal(labels[serviceLabel], "signer");
    assert.equal(labels[`${labelPrefix}/rate-limiting-group`], "signing-server");
    assert.equal(run.metadata?.annotations?.[`${labelPrefix}/request`], "tenant-a/req-1");
    assert.equal(run.metadata?.annotations?.["kueue.example.com/queue"], "sign");
  });

  test("the controller's keys are never taken from the plan, also where the controller leaves one out", () => {
    // A raw run has no service label, and a name over 63 characters no name label: a propagated
    // label must not fill those in (slots, retention and the run's request are read from them).
    const run = build({
      request: request(undefined, "n".repeat(70)),
      plan: plan({
        service: undefined,
        pipelineName: undefined,
        pipelineRef: { resolver: "git", params: [] },
        labels: { [serviceLabel]: "sign", [requestNameLabel]: "victim", [`${labelPrefix}/group-id`]: "g" },
        annotations: {
          [`${labelPrefix}/service`]: "sign",
          [`${labelPrefix}/queue-deadline`]: "2999-01-01T00:00:00Z",
        },
      }),
    });
    const labels = run.metadata?.labels ?? {};
    assert.equal(labels[serviceLabel], undefined);
    assert.equal(labels[requestNameLabel], undefined);
    assert.equal(labels[`${labelPrefix}/group-id`], "g");
    assert.equal(run.metadata?.annotations?.[`${labelPrefix}/service`], undefined);
    assert.notEqual(run.metadata?.annotations?.[`${labelPrefix}/queue-deadline`], "2999-01-01T00:00:00Z");
    assert.equal(slotGroup(run), rawPipelineGroup);
  });

  test("request labels are not copied by themselves (the plan says which)", () => {
    const run = build({
      request: request({ "app.example.com/team": "blue", "sidecar.istio.io/inject": "false" }),
    });
    assert.equal("app.example.com/team" in (run.metadata?.labels ?? {}), false);
    assert.equal("sidecar.istio.io/inject" in (run.metadata?.labels ?? {}), false);
  });

  test("a workspace name that is not a valid label value is left out of labels but kept in the annotation", () => {
    const workspace = "https://api.example.com:6443/clusters/public";
    const run = build({ workspace, request: request({ [workspaceLabel]: "spoofed" }) });
    assert.equal(workspaceLabel in (run.metadata?.labels ?? {}), false);
    assert.equal(run.metadata?.annotations?.[`${labelPrefix}/workspace`], workspace);
  });

  test("a kcp workspace path is labelled with dots for colons, and kept whole in the annotation", () => {
    const run = build({ workspace: "root:org:team-a" });
    assert.equal(run.metadata?.labels?.[workspaceLabel], "root.org.team-a");
    assert.equal(run.metadata?.annotations?.[`${labelPrefix}/workspace`], "root:org:team-a");
  });

  test("passes params sorted by code point (the same in every locale), as Tekton params", () => {
    const run = build({
      plan: plan({ params: { zeta: "z", alpha: "$(echo hi)", mid: "", Zed: "", "a-b": "" } }),
    });
    assert.deepEqual(
      run.spec?.params?.map((p) => p.name),
      ["Zed", "a-b", "alpha", "mid", "zeta"],
    );
    assert.deepEqual(run.spec?.params?.[2], { name: "alpha", value: "$(echo hi)" });
  });

  test("formats timeouts as Go durations, only those set", () => {
    assert.deepEqual(build().spec?.timeouts, { pipeline: "1h0m0s" });
    const run = build({
      plan: plan({ timeouts: { pipelineMs: 5_400_000, tasksMs: 3_600_000, finallyMs: 90_500, queueMs: 1 } }),
    });
    assert.deepEqual(run.spec?.timeouts, { pipeline: "1h30m0s", tasks: "1h0m0s", finally: "1m30.5s" });
  });

  test("puts the service account into taskRunTemplate, and leaves it out when unset", () => {
    assert.deepEqual(build({ plan: plan({ serviceAccount: "signer-sa" }) }).spec?.taskRunTemplate, {
      serviceAccountName: "signer-sa",
    });
    assert.equal(build().spec?.taskRunTemplate, undefined);
  });

  test("binds a volumeClaimTemplate workspace when configured", () => {
    const run = build({ volumeClaim: { name: "data", size: "5Gi" } });
    assert.deepEqual(run.spec?.workspaces, [
      {
        name: "data",
        volumeClaimTemplate: {
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "5Gi" } } },
        },
      },
    ]);
    assert.deepEqual(build({ volumeClaim: { name: "data" } }).spec?.workspaces, [
      {
        name: "data",
        volumeClaimTemplate: {
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      },
    ]);
    assert.equal(build().spec?.workspaces, undefined);
    assert.equal(build({ volumeClaim: {} }).spec?.workspaces, undefined);
  });

  test("uses pipelineName as a plain ref, otherwise the resolver ref", () => {
    assert.deepEqual(build().spec?.pipelineRef, { name: "sign-pipeline" });
    const ref = { resolver: "git", params: [{ name: "url", value: "https://git.example.com/p.git" }] };
    const run = build({ plan: plan({ pipelineName: undefined, pipelineRef: ref }) });
    assert.deepEqual(run.spec?.pipelineRef, ref);
  });

  test("every label value is a valid label value for long request and service names", () => {
    const long = `r${"e".repeat(99)}`;
    const run = build({ request: request(undefined, long), plan: plan({ service: `s${"v".repeat(99)}` }) });
    for (const [k, v] of Object.entries(run.metadata?.labels ?? {}))
      assert.ok(isValidLabelValue(v), `label ${k}=${v} is not a valid label value`);
  });
});

function pipelineRun(condition?: Partial<KnativeCondition>, tasks = 0, finallyTasks = 0): V1PipelineRun {
  const named = (n: number, p: string) => Array.from({ length: n }, (_, i) => ({ name: `${p}${i}` }));
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: "run", namespace: "ns" },
    status: {
      ...(condition ? { conditions: [{ type: "Succeeded", status: "Unknown", ...condition }] } : {}),
      ...(tasks + finallyTasks > 0
        ? { pipelineSpec: { tasks: named(tasks, "t"), finally: named(finallyTasks, "f") } }
        : {}),
    },
  };
}

describe("runState", () => {
  test("Succeeded True is done and Succeeded", () => {
    const s = runState(pipelineRun({ status: "True", reason: "Succeeded", message: "Tasks Completed: 5" }));
    assert.equal(s.done, true);
    assert.equal(s.reason, "Succeeded");
  });

  test("False with Failed is Failed, with Tekton's reason; its message kept apart (private detail)", () => {
    const s = runState(pipelineRun({ status: "False", reason: "Failed", message: "Task build failed" }));
    assert.deepEqual(s, { done: true, reason: "Failed", message: "Failed", detail: "Task build failed" });
  });

  test("False without a reason is Failed", () => {
    const s = runState(pipelineRun({ status: "False" }));
    assert.equal(s.done, true);
    assert.equal(s.reason, "Failed");
  });

  for (const reason of ["Cancelled", "CancelledRunningFinally", "StoppedRunningFinally"]) {
    test(`False with ${reason} is Cancelled`, () => {
      const s = runState(pipelineRun({ status: "False", reason, message: "stopped by user" }));
      assert.equal(s.done, true);
      assert.equal(s.reason, "Cancelled");
      assert.equal(s.message, `internal PipelineRun was cancelled (${reason})`);
      assert.equal(s.detail, "stopped by user");
    });
  }

  test("False with PipelineRunTimeout is TimedOut", () => {
    const s = runState(
      pipelineRun({ status: "False", reason: "PipelineRunTimeout", message: "timed out after 1h" }),
    );
    assert.equal(s.done, true);
    assert.equal(s.reason, "TimedOut");
    assert.match(s.message, /timed out/);
  });

  test("Unknown with Running is not done and reports progress", () => {
    const s = runState(
      pipelineRun(
        {
          status: "Unknown",
          reason: "Running",
          message: "Tasks Completed: 2 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0",
        },
        4,
        1,
      ),
    );
    assert.deepEqual(s, { done: false, message: "2/5 tasks completed" });
  });

  test("Unknown with CancelledRunningFinally (finally still running) is not done", () => {
    const s = runState(pipelineRun({ status: "Unknown", reason: "CancelledRunningFinally" }));
    assert.equal(s.done, false);
    assert.equal(s.reason, undefined);
  });

  test("no status is not done", () => {
    const s = runState({ apiVersion: "tekton.dev/v1", kind: "PipelineRun", metadata: { name: "run" } });
    assert.equal(s.done, false);
    assert.equal(s.message, "internal PipelineRun created, waiting for Tekton to start it");
  });
});

describe("progressMessage", () => {
  const msg = "Tasks Completed: 2 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0";

  test("counts tasks and finally tasks from the resolved pipeline spec", () => {
    assert.equal(
      progressMessage(pipelineRun({ reason: "Running", message: msg }, 4, 1)),
      "2/5 tasks completed",
    );
  });

  test("without a resolved spec says running", () => {
    assert.equal(
      progressMessage(pipelineRun({ reason: "Running", message: msg })),
      "internal PipelineRun running",
    );
  });

  test("before Tekton reports anything says waiting", () => {
    assert.equal(
      progressMessage(pipelineRun(undefined, 4, 1)),
      "internal PipelineRun created, waiting for Tekton to start it",
    );
  });

  test("a run held pending says so, before and after Tekton marks it PipelineRunPending", () => {
    const held = (condition?: { reason: string }) => {
      const run = pipelineRun(condition ? { reason: condition.reason, message: "" } : undefined);
      run.spec = { ...run.spec, status: "PipelineRunPending" };
      run.metadata = { ...run.metadata, labels: { "kueue.x-k8s.io/queue-name": "release" } };
      return progressMessage(run);
    };
    const queued =
      "queued in the private cluster: the internal PipelineRun is held pending admission (queue release)";
    assert.equal(held(), queued);
    assert.equal(held({ reason: "PipelineRunPending" }), queued);
  });
});

describe("copyResults", () => {
  test("copies strings as they are and JSON-encodes arrays and objects", () => {
    const { results, dropped } = copyResults([
      { name: "digest", value: "sha256:abc" },
      { name: "list", value: ["a", "b"] },
      { name: "obj", value: { k: "v", a: '"q"' } },
      { name: "empty", value: "" },
    ]);
    assert.deepEqual(results, {
      digest: "sha256:abc",
      list: '["a","b"]',
      obj: '{"k":"v","a":"\\"q\\""}',
      empty: "",
    });
    assert.deepEqual(dropped, []);
  });

  test("is deterministic regardless of input order", () => {
    const a: V1PipelineRunResult[] = [
      { name: "b", value: "2" },
      { name: "a", value: "1" },
      { name: "c", value: ["3"] },
    ];
    const one = copyResults(a);
    const two = copyResults([...a].reverse());
    assert.deepEqual(Object.keys(one.results), ["a", "b", "c"]);
    assert.deepEqual(JSON.stringify(one), JSON.stringify(two));
  });

  test("undefined results copy to nothing", () => {
    assert.deepEqual(copyResults(undefined), { results: {}, dropped: [] });
  });

  test("drops a result over maxResultBytes (counted in UTF-8 bytes) and reports it", () => {
    const { results, dropped } = copyResults([
      { name: "big", value: "x".repeat(maxResultBytes + 1) },
      { name: "wide", value: "é".repeat(maxResultBytes / 2) }, // fewer characters than the limit, more bytes
      { name: "fits", value: "y".repeat(maxResultBytes - 100) },
    ]);
    assert.deepEqual(Object.keys(results), ["fits"]);
    assert.deepEqual(dropped, ["big", "wide"]);
  });

  test("enforces maxTotalResultBytes across results", () => {
    const each = 60 * 1024;
    const n = Math.ceil(maxTotalResultBytes / each) + 1; // more than fit
    const input = Array.from({ length: n }, (_, i) => ({ name: `r${i}`, value: "z".repeat(each) }));
    input.push({ name: "tiny", value: "t" });
    const { results, dropped } = copyResults(input);
    const fit = Math.floor(maxTotalResultBytes / (each + 2));
    assert.equal(fit, 4);
    assert.deepEqual(
      Object.keys(results).sort(),
      ["r0", "r1", "r2", "r3", "tiny"],
      "the first results in name order fit, and a small one still fits after the budget ran out for big ones",
    );
    assert.deepEqual(
      dropped,
      input.slice(fit, n).map((r) => r.name),
    );
    const total = Object.entries(results).reduce(
      (s, [k, v]) => s + Buffer.byteLength(k) + Buffer.byteLength(v),
      0,
    );
    assert.ok(total <= maxTotalResultBytes);
  });
});
