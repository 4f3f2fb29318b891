// Bounded cache entries for tenant objects, concurrency slots, and the iterative size walk.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { attemptsSoFar, summarizeCustomRun } from "../../src/customtask/summary.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../../src/generated/tekton.ts";
import { finalizer, labelPrefix } from "../../src/requests/naming.ts";
import { summarizeRun } from "../../src/requests/pipelinerun.ts";
import { RunSlots, rawPipelineGroup } from "../../src/requests/slots.ts";
import { cachedSpecDigest, Part, specDigest, summarizeRequest } from "../../src/requests/summary.ts";
import { measure } from "../../src/runtime/size.ts";
import { cacheBudgetChars, isTrimmed, wholeMeasure } from "../../src/runtime/trim.ts";

const request = (
  over: Partial<InternalRequest["metadata"]> = {},
  spec: InternalRequest["spec"] = { service: "sign" },
) =>
  ({
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalRequest",
    metadata: { name: "r", namespace: "ns", uid: "u1", resourceVersion: "7", generation: 1, ...over },
    spec,
  }) as InternalRequest;

/** Characters in the JSON of what the cache keeps: a stand-in for its memory. */
const kept = (obj: object) => JSON.stringify(obj).length;

describe("measure", () => {
  test("counts keys, strings and containers, and nesting depth", () => {
    assert.deepEqual(measure("abc", { maxChars: 100, maxDepth: 10 }), {
      chars: 5,
      depth: 0,
      exceeded: false,
    });
    const m = measure({ a: ["xy", 1] }, { maxChars: 100, maxDepth: 10 });
    assert.equal(m.depth, 2);
    assert.equal(m.exceeded, false);
  });

  test("walks 100,000 levels without recursion and stops at its limits", () => {
    let deep: unknown = "leaf";
    for (let i = 0; i < 100_000; i++) deep = { n: deep };
    assert.equal(measure(deep, { maxChars: Infinity, maxDepth: Infinity }).depth, 100_000);
    const cut = measure(deep, { maxChars: Infinity, maxDepth: 32 });
    assert.equal(cut.exceeded, true);
    assert.equal(cut.depth, 33);
    assert.equal(measure({ a: "x".repeat(1000) }, { maxChars: 100, maxDepth: 10 }).exceeded, true);
  });

  test("a walk stopped early, or grown huge, leaves nothing for the next (the stack is reused)", () => {
    const wide = { items: Array.from({ length: 10_000 }, (_, i) => ({ [`k${i}`]: "v" })) };
    assert.equal(measure(wide, { maxChars: 50, maxDepth: 10 }).exceeded, true);
    assert.deepEqual(measure({ a: "b" }, { maxChars: 100, maxDepth: 10 }), {
      chars: 9,
      depth: 1,
      exceeded: false,
    });
    const whole = measure(wide, { maxChars: Infinity, maxDepth: Infinity });
    assert.equal(whole.depth, 3);
    assert.equal(whole.chars, measure(wide, { maxChars: Infinity, maxDepth: Infinity }).chars);
    assert.deepEqual(measure("abc", { maxChars: 100, maxDepth: 10 }), {
      chars: 5,
      depth: 0,
      exceeded: false,
    });
  });
});

describe("summarizeRequest", () => {
  test("a small request is kept whole (no part left out), so reconciles never read it again", () => {
    const r = request(
      { labels: { team: "a" }, finalizers: [finalizer] },
      { service: "sign", params: { d: "sha256:1" } },
    );
    r.status = {
      conditions: [
        {
          type: "Succeeded",
          status: "Unknown",
          reason: "Running",
          message: "queued",
          lastTransitionTime: "t",
        },
      ],
    };
    const s = summarizeRequest(r);
    assert.deepEqual(s.metadata.labels, { team: "a" });
    assert.deepEqual(s.spec, r.spec);
    assert.deepEqual(s.status?.conditions, r.status.conditions);
    assert.equal(isTrimmed(s, ...Object.values(Part)), false);
  });

  test("a hostile request costs a bounded amount, records what it left out and how big it was", () => {
    const labels = Object.fromEntries(
      Array.from({ length: 1500 }, (_, i) => [`l${i}.example.com/k`, "v".repeat(63)]),
    );
    const hostile = request(
      {
        labels,
        annotations: { blob: "b".repeat(250_000) },
        finalizers: [finalizer, ...Array.from({ length: 500 }, (_, i) => `x.example.com/f${i}`)],
        ownerReferences: Array.from({ length: 100 }, (_, i) => ({
          apiVersion: "v1",
          kind: "X",
          name: `o${i}`,
          uid: `${i}`,
        })),
      },
      { service: "sign", params: { a: "x".repeat(65_536), b: "y".repeat(65_536) } },
    );
    const s = summarizeRequest(hostile);
    assert.ok(kept(s) < cacheBudgetChars + 1000, `${kept(s)} characters kept`);
    assert.equal(s.metadata.annotations, undefined);
    assert.equal(s.metadata.labels, undefined);
    assert.equal(s.spec.service, "sign", "spec.service stays: early rejection reads it");
    assert.deepEqual(s.metadata.finalizers, [finalizer], "our finalizer stays readable");
    assert.ok(isTrimmed(s, Part.labels) && isTrimmed(s, Part.spec) && isTrimmed(s, Part.finalizers));
    assert.ok((wholeMeasure(s)?.chars ?? 0) > 500_000, "the whole size is recorded");
  });

  test("a long terminal message is left out, but whether and how it finished stays", () => {
    const r = request();
    r.status = {
      conditions: [
        {
          type: "Succeeded",
          status: "False",
          reason: "Failed",
          message: "m".repeat(32_000),
          lastTransitionTime: "t",
        },
      ],
      results: { big: "r".repeat(10_000) },
    };
    const s = summarizeRequest(r);
    assert.equal(s.status?.conditions?.[0]?.reason, "Failed");
    assert.equal(s.status?.conditions?.[0]?.status, "False");
    assert.ok(isTrimmed(s, Part.conditions) && isTrimmed(s, Part.results));
    assert.equal(s.status?.results, undefined);
  });

  test("the spec digest ignores fields the CRD does not define and spec.status, and is kept for owned requests", () => {
    const spec = { service: "sign", params: { d: "1" } };
    assert.equal(specDigest(spec), specDigest({ ...spec, status: "Cancelled", junk: 1 } as never));
    assert.notEqual(specDigest(spec), specDigest({ service: "sign", params: { d: "2" } }));
    assert.equal(specDigest({ params: { a: "1", b: "2" } }), specDigest({ params: { b: "2", a: "1" } }));
    const owner = [
      { apiVersion: "tekton.dev/v1beta1", kind: "CustomRun", name: "cr", uid: "c1", controller: true },
    ];
    const owned = summarizeRequest(
      request({ ownerReferences: owner }, { service: "sign", params: { a: "x".repeat(70_000) } }),
    );
    assert.equal(cachedSpecDigest(owned), specDigest({ service: "sign", params: { a: "x".repeat(70_000) } }));
    assert.equal(cachedSpecDigest(summarizeRequest(request())), undefined);
  });
});

describe("summarizeCustomRun", () => {
  const run = (spec: V1beta1CustomRun["spec"], status?: V1beta1CustomRun["status"]): V1beta1CustomRun => ({
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: { name: "cr", namespace: "ns", uid: "c1", resourceVersion: "3" },
    spec,
    ...(status ? { status } : {}),
  });
  const ours = { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest", name: "sign" };

  test("another custom task's CustomRuns are not kept at all", () => {
    assert.equal(
      summarizeCustomRun(run({ customRef: { apiVersion: "example.com/v1", kind: "Other" } })),
      undefined,
    );
  });

  test("a hostile one of ours keeps what tells it apart, and records what it left out", () => {
    const params = Array.from({ length: 14 }, (_, i) => ({ name: `p${i}`, value: "z".repeat(65_000) }));
    const retries = Array.from({ length: 50 }, () => ({
      conditions: [
        { type: "Succeeded", status: "False" as const, reason: "Failed", message: "f".repeat(5000) },
      ],
    }));
    const s = summarizeCustomRun(
      run(
        { customRef: { ...ours, apiVersion: `${"a".repeat(10_000)}` }, params, retries: 3 },
        { retriesStatus: retries },
      ),
    ) as V1beta1CustomRun;
    assert.ok(kept(s) < cacheBudgetChars + 1000, `${kept(s)} characters kept`);
    assert.equal(s.spec?.customRef?.apiVersion?.length, 256, "clipped: never valid, refused as such");
    assert.equal(s.spec?.retries, 3);
    assert.equal(attemptsSoFar(s), 50, "attempts stay countable without the status");
    assert.ok(isTrimmed(s, "spec") && isTrimmed(s, "status"));
  });

  test("a small one is kept whole", () => {
    const s = summarizeCustomRun(
      run({ customRef: ours, params: [{ name: "d", value: "1" }] }),
    ) as V1beta1CustomRun;
    assert.deepEqual(s.spec?.params, [{ name: "d", value: "1" }]);
    assert.equal(isTrimmed(s, "spec", "status"), false);
  });
});

describe("summarizeRun", () => {
  test("drops the params and the resolved pipeline, keeps counts, timeouts, conditions and results", () => {
    const run: V1PipelineRun = {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name: "pr" },
      spec: { params: [{ name: "p", value: "x".repeat(100_000) }], timeouts: { pipeline: "1h0m0s" } },
      status: {
        pipelineSpec: { tasks: [{ name: "a", taskSpec: { steps: [] } }], finally: [{ name: "z" }] },
        conditions: [{ type: "Succeeded", status: "True" }],
        results: [{ name: "r", value: "v" }],
      },
    } as V1PipelineRun;
    const s = summarizeRun(run);
    assert.equal(s.spec?.params, undefined);
    assert.equal(s.spec?.timeouts?.pipeline, "1h0m0s");
    assert.deepEqual(s.status?.pipelineSpec, { tasks: [{ name: "a" }], finally: [{ name: "z" }] });
    assert.deepEqual(s.status?.results, [{ name: "r", value: "v" }]);
  });
});

describe("RunSlots", () => {
  const pr = (name: string, service: string | undefined, done = false): V1PipelineRun =>
    ({
      metadata: { name, annotations: service ? { [`${labelPrefix}/service`]: service } : {} },
      status: done ? { conditions: [{ type: "Succeeded", status: "True" }] } : {},
    }) as V1PipelineRun;

  test("a slot is taken before the create and held until the run is seen finished", () => {
    const slots = new RunSlots();
    assert.deepEqual(slots.take("sign", "a", 2, "r/a"), { taken: true });
    assert.deepEqual(slots.take("sign", "b", 2, "r/b"), { taken: true });
    // Neither is in the cache yet: both still count.
    assert.deepEqual(slots.take("sign", "c", 2, "r/c"), { taken: false, inUse: 2 });
    assert.deepEqual(slots.take("sign", "a", 2, "r/a"), { taken: true }, "the same run holds its slot");
    slots.observe(pr("a", "sign"), false);
    assert.equal(slots.inUse("sign"), 2, "seen in the cache: counted once");
    slots.observe(pr("a", "sign", true), false);
    assert.deepEqual(slots.take("sign", "c", 2, "r/c"), { taken: true });
    slots.release("b");
    slots.observe(pr("c", "sign"), true);
    assert.equal(slots.inUse("sign"), 0);
  });

  test("one pending slot per request key: a request made again under the same name gives the old one back", () => {
    const slots = new RunSlots();
    assert.deepEqual(slots.take("sign", "run-uid1", 1, "ws/ns/r"), { taken: true });
    // The create failed, the request was deleted and made again (new uid, new run name) before a retry.
    assert.deepEqual(slots.take("sign", "run-uid2", 1, "ws/ns/r"), { taken: true });
    assert.equal(slots.inUse("sign"), 1);
  });

  test("a run's group is its service annotation, never its labels", () => {
    const spoofed = {
      metadata: { name: "x", labels: { [`${labelPrefix}/service`]: "sign" } },
    } as V1PipelineRun;
    const slots = new RunSlots();
    slots.observe(spoofed, false);
    assert.deepEqual(Object.fromEntries(slots.byGroup()), { [rawPipelineGroup]: 1 });
  });

  test("runs created by an earlier process count from the cache; groups are separate", () => {
    const slots = new RunSlots();
    slots.observe(pr("old", "sign"), false);
    slots.observe(pr("raw", undefined), false);
    assert.deepEqual(slots.take("sign", "new", 1, "r/new"), { taken: false, inUse: 1 });
    assert.deepEqual(slots.take(rawPipelineGroup, "raw2", 2, "r/raw2"), { taken: true });
    assert.deepEqual(Object.fromEntries(slots.byGroup()), { sign: 1, [rawPipelineGroup]: 2 });
    assert.deepEqual(slots.take("other", "x", undefined, "r/x"), { taken: true }, "no limit");
  });
});
