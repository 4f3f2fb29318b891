// Concurrency keys: templates (the parser and the CRD's pattern agree), rendering, scoping, and how
// run slots follow the runs holding a key.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { describeRequest } from "../../src/cli/request-show.ts";
import { admit } from "../../src/policy/admit.ts";
import { concurrencyKey, type KeyInput, parseKeyTemplate } from "../../src/policy/concurrency.ts";
import { concurrencyKeyLabel, requestAnnotation, workspaceAnnotation } from "../../src/requests/naming.ts";
import { RunSlots } from "../../src/requests/slots.ts";

const crdPattern = (() => {
  const crd = readFileSync(
    new URL("../../crds/appstudio.redhat.com_internalservices.yaml", import.meta.url),
    "utf8",
  );
  const at = crd.indexOf("concurrency:");
  const line = /pattern: (.+)/.exec(crd.slice(at))?.[1] as string;
  return new RegExp(line);
})();

describe("concurrency key templates", () => {
  const cases: [string, boolean][] = [
    ["$(params.advisory_id)", true],
    ["$(params['advisory.id'])", true],
    [
      "$(labels['internal-services.appstudio.openshift.io/pipelinerun-uid'])/$(labels['internal-services.appstudio.openshift.io/pipeline-name'])",
      true,
    ],
    ["$(labels.app.kubernetes.io/name)-$(namespace)", true],
    ["fixed", true],
    ["$(params.a", false],
    ["$(spec.service)", false],
    ["cost: $5", false],
    ["$(params[advisory])", false],
    ["$(labels[''])", false],
  ];
  for (const [template, valid] of cases)
    test(`${JSON.stringify(template)} is ${valid ? "valid" : "refused"} by the parser and the CRD alike`, () => {
      assert.equal(!("error" in parseKeyTemplate(template)), valid, "parser");
      assert.equal(crdPattern.test(template), valid, "CRD pattern");
    });
});

describe("concurrency keys", () => {
  const base: KeyInput = {
    spec: { key: "$(labels['example.com/uid'])/$(params.advisory)" },
    workspace: "public",
    namespace: "team-a",
    scope: "publish",
    labels: { "example.com/uid": "u-1" },
    params: { advisory: "RHSA-1" },
    sensitiveParams: [],
  };
  const hashOf = (input: KeyInput) => {
    const key = concurrencyKey(input);
    assert.ok("plan" in key, JSON.stringify(key));
    return key.plan.hash;
  };

  test("renders the template; Queue and a 1h reuse window by default; the hash fits a label value", () => {
    const key = concurrencyKey(base);
    assert.ok("plan" in key);
    assert.equal(key.plan.key, "u-1/RHSA-1");
    assert.equal(key.plan.policy, "Queue");
    assert.equal(key.plan.reuseWithinMs, 3_600_000);
    assert.match(key.plan.hash, /^[0-9a-f]{40}$/);
  });

  test("scoped: another workspace, namespace or service never shares a key", () => {
    const h = hashOf(base);
    assert.equal(hashOf({ ...base }), h);
    assert.notEqual(hashOf({ ...base, workspace: "other" }), h);
    assert.notEqual(hashOf({ ...base, namespace: "team-b" }), h);
    assert.notEqual(hashOf({ ...base, scope: "sign" }), h);
    assert.notEqual(hashOf({ ...base, params: { advisory: "RHSA-2" } }), h);
  });

  test("no separator games: parts are hashed in a way one value cannot spell another's", () => {
    const a = hashOf({ ...base, spec: { key: "$(params.a)$(params.b)" }, params: { a: "x/", b: "y" } });
    const b = hashOf({ ...base, spec: { key: "$(params.a)$(params.b)" }, params: { a: "x", b: "/y" } });
    // Same rendered key: the same operation by the template's own definition.
    assert.equal(a, b);
    const c = hashOf({ ...base, namespace: "team-a", scope: 'publish","x' });
    assert.notEqual(c, hashOf(base));
  });

  test("a missing or empty label or param: no key, saying which", () => {
    assert.deepEqual(concurrencyKey({ ...base, labels: {} }), { missing: 'label "example.com/uid"' });
    assert.deepEqual(concurrencyKey({ ...base, params: { advisory: "" } }), { missing: 'param "advisory"' });
  });

  test("sensitive params are redacted where the key is shown, and still tell keys apart", () => {
    const input = {
      ...base,
      spec: { key: "$(params.token)" },
      params: { token: "s3cret" },
      sensitiveParams: ["token"],
    };
    const key = concurrencyKey(input);
    assert.ok("plan" in key);
    assert.equal(key.plan.key, "<redacted>");
    assert.notEqual(hashOf({ ...input, params: { token: "other" } }), key.plan.hash);
  });

  test("a long key is shown cut to 256 characters", () => {
    const key = concurrencyKey({
      ...base,
      spec: { key: "$(params.advisory)" },
      params: { advisory: "a".repeat(5000) },
    });
    assert.ok("plan" in key);
    assert.equal(key.plan.key, `${"a".repeat(256)}…`);
  });

  test("an invalid template or reuse window refuses the service's requests, naming the fault", () => {
    const service = {
      apiVersion: "appstudio.redhat.com/v1alpha1" as const,
      kind: "InternalService" as const,
      metadata: { name: "publish" },
      spec: {
        pipeline: { pipelineName: "p" },
        paramsSchema: { properties: { x: { type: "string" } } },
        concurrency: { key: "$(params.x", policy: "Reuse" as const },
      },
    };
    const decided = admit({
      workspace: "public",
      namespace: "team-a",
      request: { service: "publish", params: { x: "1" } },
      config: { allowList: ["team-a"] },
      service,
    });
    assert.equal(decided.allowed, false);
    assert.match(
      !decided.allowed ? decided.message : "",
      /misconfigured .*concurrency.key .* "\$" outside a reference/,
    );
    const window = admit({
      workspace: "public",
      namespace: "team-a",
      request: { service: "publish", params: { x: "1" } },
      config: { allowList: ["team-a"] },
      service: {
        ...service,
        spec: { ...service.spec, concurrency: { key: "$(params.x)", reuseWithin: "soon" } },
      },
    });
    assert.match(!window.allowed ? window.message : "", /concurrency.reuseWithin/);
  });

  test("raw pipeline requests take their key from the config's rawPipelineRequests", () => {
    const decided = admit({
      workspace: "public",
      namespace: "team-a",
      request: {
        pipeline: {
          pipelineRef: { resolver: "git", params: [{ name: "url", value: "https://git.example.com/p.git" }] },
        },
        params: { advisory: "A-1" },
      },
      config: {
        allowList: ["team-a"],
        allowedPipelineSources: [{ resolver: "git", params: { url: "https://git.example.com/*" } }],
        rawPipelineRequests: { concurrency: { key: "$(params.advisory)", policy: "Supersede" } },
      },
      service: undefined,
    });
    assert.ok(decided.allowed, !decided.allowed ? decided.message : "");
    assert.equal(decided.run.concurrency?.key, "A-1");
    assert.equal(decided.run.concurrency?.policy, "Supersede");
  });
});

describe("run slots and concurrency keys", () => {
  const run = (name: string, key: string, state: "Unknown" | "True" | "False" = "Unknown") => ({
    metadata: {
      name,
      labels: { [concurrencyKeyLabel]: key },
      annotations: { [workspaceAnnotation]: "public", [requestAnnotation]: `team-a/${name}-request` },
    },
    status: {
      conditions: [{ type: "Succeeded", status: state, reason: state === "True" ? "Succeeded" : "Running" }],
    },
  });

  test("a live run holds its key until it finishes or goes; a succeeded one is kept for reuse", () => {
    const slots = new RunSlots();
    slots.observe(run("a", "k1"), false);
    assert.deepEqual(slots.keyHolder("k1"), { run: "a", request: "public/team-a/a-request" });
    assert.equal(slots.keyHolder("k2"), undefined);
    slots.observe(run("a", "k1", "True"), false);
    assert.equal(slots.keyHolder("k1"), undefined);
    assert.deepEqual(slots.succeededWith("k1"), ["a"]);
    slots.observe(run("a", "k1", "True"), true);
    assert.deepEqual(slots.succeededWith("k1"), []);
  });

  test("a run being created holds its key: a second take for another run is refused, naming it", () => {
    const slots = new RunSlots();
    assert.deepEqual(slots.take("svc", "a", undefined, "public/team-a/r1", "k1"), { taken: true });
    assert.deepEqual(slots.take("svc", "b", undefined, "public/team-a/r2", "k1"), {
      taken: false,
      heldBy: { run: "a", request: "public/team-a/r1" },
    });
    // Another key, or none, is not held up.
    assert.deepEqual(slots.take("svc", "c", undefined, "public/team-a/r3", "k2"), { taken: true });
    assert.deepEqual(slots.take("svc", "d", undefined, "public/team-a/r4"), { taken: true });
    // Its create failed: the key is free again.
    slots.release("a");
    assert.deepEqual(slots.take("svc", "b", undefined, "public/team-a/r2", "k1"), { taken: true });
  });

  test("a failed run frees its key and is not reusable", () => {
    const slots = new RunSlots();
    slots.observe(run("a", "k1"), false);
    slots.observe(run("a", "k1", "False"), false);
    assert.equal(slots.keyHolder("k1"), undefined);
    assert.deepEqual(slots.succeededWith("k1"), []);
  });
});

test("isc request describe shows the key, and the request and run waited for", () => {
  const out = describeRequest(
    {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: "r2", namespace: "team-a" },
      spec: { service: "publish" },
      status: {
        concurrency: { key: "u-1/push", policy: "Queue", request: "team-a/r1", pipelineRun: "isc/run-1" },
      },
    },
    [],
  );
  assert.match(
    out,
    /^Concurrency Key: +u-1\/push \(Queue; request team-a\/r1, PipelineRun isc\/run-1 \(private cluster\)\)$/m,
  );
});
