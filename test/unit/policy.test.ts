import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type {
  InternalRequestSpec,
  InternalService,
  InternalServiceSpec,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import {
  type Admission,
  admit,
  DEFAULT_PIPELINE_TIMEOUT_MS,
  DEFAULT_QUEUE_TIMEOUT_MS as Q,
  rawDefaults,
  redactParams,
} from "../../src/policy/admit.ts";
import { isAllowed } from "../../src/policy/allowlist.ts";
import { formatDuration, parseDuration } from "../../src/policy/duration.ts";
import {
  defaultPropagatedLabels,
  droppedLabelsNote,
  maxPropagatedChars,
  propagatedLabels,
} from "../../src/policy/labels.ts";
import { schemaCacheStats, validateParams } from "../../src/policy/schema.ts";
import { resolveTimeouts } from "../../src/policy/timeouts.ts";

const H = 3_600_000;
const M = 60_000;

describe("duration", () => {
  const valid: [string, number][] = [
    ["1h30m", 90 * M],
    ["45s", 45_000],
    ["1.5h", 90 * M],
    ["0", 0],
    ["0s", 0],
    ["500ms", 500],
    ["1µs", 0.001], // micro sign
    ["1μs", 0.001], // Greek mu
    ["1us", 0.001],
    ["3ns", 0.000003],
    ["0.3s", 300], // exact, not 299.99999999999994
    [".5h", 30 * M],
    ["1.h", H],
    ["1h1m1.5s", H + M + 1500],
    ["2h45m0s", 165 * M],
    ["-1m", -M],
    ["+2s", 2000],
  ];
  for (const [text, ms] of valid)
    test(`parses ${JSON.stringify(text)}`, () => assert.equal(parseDuration(text), ms));

  const invalid: [string, RegExp][] = [
    ["", /it is empty/],
    ["5", /missing unit after "5"/],
    ["1x", /unknown unit "x"/],
    ["1h 30m", /unknown unit "h "/],
    ["1e3s", /unknown unit "e"/],
    ["abc", /expected a number/],
    [".h", /expected a number/],
    ["1..5s", /missing unit/],
    ["2562048h", /longer than Go allows/],
  ];
  for (const [text, why] of invalid) {
    test(`rejects ${JSON.stringify(text)} saying why`, () => {
      assert.throws(
        () => parseDuration(text),
        (err: Error) => {
          assert.match(err.message, why);
          assert.ok(err.message.startsWith(`invalid duration ${JSON.stringify(text)}`), err.message);
          assert.match(err.message, /Go duration such as 45s or 1h30m/);
          return true;
        },
      );
    });
  }

  test("formats like Go's Duration.String and round-trips", () => {
    const cases: [number, string][] = [
      [0, "0s"],
      [90 * M, "1h30m0s"],
      [H, "1h0m0s"],
      [90_500, "1m30.5s"],
      [45_000, "45s"],
      [500, "500ms"],
      [0.0015, "1.5µs"],
      [0.000003, "3ns"],
      [-1500, "-1.5s"],
      [100 * H + 1, "100h0m0.001s"],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration(text), ms);
    }
  });
});

describe("allow-list", () => {
  const cases: [string[], string, string, boolean][] = [
    [["team-a"], "public", "team-a", true],
    [["team-a"], "other", "team-a", true], // bare namespace: any workspace
    [["team-a"], "public", "team-b", false],
    [["public/team-a"], "public", "team-a", true],
    [["public/team-a"], "other", "team-a", false],
    [["prod/*"], "prod", "anything", true],
    [["prod/*"], "public", "anything", false],
    [["releng-*"], "any", "releng-eu", true],
    [["releng-*"], "any", "team-releng", false],
    [["*/team-a"], "x", "team-a", true],
    [["*"], "x", "y", true],
    [["a/b/c"], "a", "b/c", false], // malformed entry never allows
    [[], "public", "team-a", false],
  ];
  for (const [entries, ws, ns, expected] of cases) {
    test(`${JSON.stringify(entries)} ${expected ? "allows" : "rejects"} ${ws}/${ns}`, () =>
      assert.equal(isAllowed(entries, ws, ns), expected));
  }

  // kcp workspaces (named by path; tenants create them): only entries that name the workspace apply.
  const kcp: [string[], string, string, boolean][] = [
    [["default"], "root:team-a", "default", false],
    [["*"], "root:team-a", "default", false],
    [["root:team-a/default"], "root:team-a", "default", true],
    [["root:team-a/default"], "root:team-b", "default", false],
    [["root:org:*/default"], "root:org:team", "default", true],
    [["root:org:*/default"], "root:org:team:sub", "default", true], // * crosses ":", never "/"
    [["root:org:*/default"], "root:other:team", "default", false],
    [["*/default"], "root:team-a", "default", true],
  ];
  for (const [entries, ws, ns, expected] of kcp) {
    test(`kcp: ${JSON.stringify(entries)} ${expected ? "allows" : "rejects"} ${ws}/${ns}`, () =>
      assert.equal(isAllowed(entries, ws, ns, true), expected));
  }
});

describe("params schema", () => {
  const signing = {
    type: "object",
    required: ["digest"],
    properties: {
      digest: { type: "string", pattern: "^sha256:[a-f0-9]{64}$" },
      keyId: { type: "string", default: "release-2024" },
    },
  };
  const digest = `sha256:${"a".repeat(64)}`;

  test("without a schema only no params are valid", () => {
    assert.deepEqual(validateParams(undefined, undefined), { ok: true, params: {} });
    assert.deepEqual(validateParams(undefined, {}), { ok: true, params: {} });
    assert.deepEqual(validateParams(undefined, { foo: "1" }), {
      ok: false,
      kind: "params",
      errors: ['unknown param "foo" (the service has no paramsSchema, so it accepts no params)'],
    });
  });

  test("fills in defaults and returns given values unchanged", () => {
    assert.deepEqual(validateParams(signing, { digest }), {
      ok: true,
      params: { digest, keyId: "release-2024" },
    });
    assert.deepEqual(validateParams(signing, { digest, keyId: "k2" }), {
      ok: true,
      params: { digest, keyId: "k2" },
    });
  });

  test("says which param failed which rule", () => {
    assert.deepEqual(validateParams(signing, { digest: "md5:x" }), {
      ok: false,
      kind: "params",
      errors: ['param "digest" must match pattern "^sha256:[a-f0-9]{64}$"'],
    });
    assert.deepEqual(validateParams(signing, {}), {
      ok: false,
      kind: "params",
      errors: ['missing required param "digest"'],
    });
  });

  test("is closed unless the schema sets additionalProperties, and reports every error", () => {
    const r = validateParams(signing, { foo: "1", bar: "2" });
    assert.deepEqual(r, {
      ok: false,
      kind: "params",
      errors: [
        'missing required param "digest"',
        'unknown param "foo" (the service accepts: digest, keyId)',
        'unknown param "bar" (the service accepts: digest, keyId)',
      ],
    });
    const open = { ...signing, additionalProperties: true };
    assert.deepEqual(validateParams(open, { digest, foo: "1" }), {
      ok: true,
      params: { digest, foo: "1", keyId: "release-2024" },
    });
    const typed = { ...signing, additionalProperties: { type: "string", maxLength: 3 } };
    assert.deepEqual(validateParams(typed, { digest, foo: "long" }), {
      ok: false,
      kind: "params",
      errors: ['param "foo" must be at most 3 characters long'],
    });
  });

  test("checks integer, boolean, enum, format and bounds on the values the strings canonically spell", () => {
    const schema = {
      type: "object",
      properties: {
        retries: { type: "integer", minimum: 0, maximum: 5, default: 2 },
        dryRun: { type: "boolean", default: false },
        env: { enum: ["stage", "prod"] },
        callback: { type: "string", format: "uri" },
      },
    };
    assert.deepEqual(validateParams(schema, { retries: "3", dryRun: "true" }), {
      ok: true,
      params: { retries: "3", dryRun: "true" },
    });
    assert.deepEqual(validateParams(schema, {}), { ok: true, params: { retries: "2", dryRun: "false" } });
    const bad = validateParams(schema, { retries: "4.5", dryRun: "yes", env: "dev", callback: "not a uri" });
    assert.deepEqual(bad, {
      ok: false,
      kind: "params",
      errors: [
        `param "retries" must be an integer written in canonical form (digits, no sign other than '-', no leading zeros, no spaces, e.g. 5), got "4.5"`,
        'param "dryRun" must be "true" or "false" (lowercase, no spaces), got "yes"',
        'param "env" must be one of: "stage", "prod"',
        'param "callback" must be a valid uri',
      ],
    });
    assert.deepEqual(validateParams(schema, { retries: "9" }), {
      ok: false,
      kind: "params",
      errors: ['param "retries" must be <= 5'],
    });
  });

  test("an invalid schema is reported as the schema's fault", () => {
    for (const schema of [{ type: "strnig" }, { properties: { a: { type: "string", pattern: "(" } } }]) {
      const r = validateParams(schema, {});
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.kind, "schema", JSON.stringify(r));
    }
  });

  test("compiles each distinct schema once, including invalid ones", () => {
    const schema = () => ({ type: "object", properties: { cacheProbe: { type: "string" } } });
    const before = schemaCacheStats().compiles;
    for (let i = 0; i < 5; i++) assert.equal(validateParams(schema(), { cacheProbe: `${i}` }).ok, true);
    assert.equal(schemaCacheStats().compiles, before + 1);
    validateParams({ ...schema(), required: ["cacheProbe"] }, {});
    assert.equal(schemaCacheStats().compiles, before + 2);
    const broken = () => ({ type: "cache-probe-not-a-type" });
    validateParams(broken(), {});
    validateParams(broken(), {});
    assert.equal(schemaCacheStats().compiles, before + 3);
  });

  test("counts unicode characters, not UTF-16 units, and supports unicode patterns", () => {
    const schema = { properties: { name: { type: "string", maxLength: 2, pattern: "^\\p{L}+$" } } };
    assert.equal(validateParams(schema, { name: "üñ" }).ok, true);
    assert.deepEqual(validateParams(schema, { name: "😀😀😀" }), {
      ok: false,
      kind: "params",
      errors: [
        'param "name" must be at most 2 characters long',
        'param "name" must match pattern "^\\p{L}+$"',
      ],
    });
  });

  test("control characters: values pass through untouched, are never echoed, and names are escaped", () => {
    const open = { additionalProperties: true };
    const value = "line1\nline2\u0000\u202e";
    assert.deepEqual(validateParams(open, { note: value }), { ok: true, params: { note: value } });

    const strict = { properties: { tag: { type: "string", pattern: "^[a-z0-9.]+$" } } };
    const r = validateParams(strict, { tag: "v1\n; rm -rf /", "evil\u202ename\u0007": "x" });
    assert.equal(r.ok, false);
    const text = !r.ok && r.kind === "params" ? r.errors.join(" | ") : "";
    assert.ok(!text.includes("rm -rf"), text);
    assert.ok(text.includes('unknown param "evil\\u202ename\\u0007"'), text);
    for (const raw of ["\u0000", "\u0007", "\n", "\u202e"])
      assert.ok(!text.includes(raw), "no raw control or bidi characters");
  });

  test("prototype property names are ordinary (unknown) params", () => {
    const schema = { required: ["toString"], properties: { toString: { type: "string" } } };
    assert.deepEqual(validateParams(schema, {}), {
      ok: false,
      kind: "params",
      errors: ['missing required param "toString"'],
    });
    const proto = JSON.parse('{"__proto__": "x", "constructor": "y"}') as Record<string, string>;
    const closed = validateParams({ properties: {} }, proto);
    assert.deepEqual(!closed.ok && closed.kind === "params" && closed.errors, [
      'unknown param "__proto__" (the service accepts no other params)',
      'unknown param "constructor" (the service accepts no other params)',
    ]);
    const open = validateParams({ additionalProperties: true }, proto);
    assert.ok(
      open.ok && Object.hasOwn(open.params, "__proto__") && Object.hasOwn(open.params, "constructor"),
    );
    assert.equal(Object.getPrototypeOf(open.ok ? open.params : null), Object.prototype);
  });
});

describe("admit", () => {
  const config: InternalServicesConfigSpec = {
    allowList: ["team-a", "public/team-b", "prod/*"],
    allowedPipelineSources: [
      { resolver: "git", params: { url: "https://gitlab.internal/**", revision: "*" } },
    ],
  };
  const service = (spec: Partial<InternalServiceSpec> = {}): InternalService => ({
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalService",
    metadata: { name: "sign", namespace: "isc", uid: "u1", resourceVersion: "1" },
    spec: { pipeline: { pipelineName: "sign-pipeline" }, ...spec },
  });
  const run = (
    request: InternalRequestSpec,
    opts: { svc?: InternalService; cfg?: InternalServicesConfigSpec | null; ns?: string; ws?: string } = {},
  ): Admission =>
    admit({
      workspace: opts.ws ?? "public",
      namespace: opts.ns ?? "team-a",
      request,
      config: opts.cfg === null ? undefined : (opts.cfg ?? config),
      service: opts.svc,
    });
  const denied = (a: Admission, rule: string, ...parts: (string | RegExp)[]) => {
    assert.equal(a.allowed, false, JSON.stringify(a));
    if (a.allowed) return;
    assert.equal(a.rule, rule, a.message);
    for (const part of parts) {
      if (typeof part === "string")
        assert.ok(a.message.includes(part), `${JSON.stringify(part)} in: ${a.message}`);
      else assert.match(a.message, part);
    }
  };
  const allowed = (a: Admission) => {
    assert.ok(a.allowed, JSON.stringify(a));
    return a.run;
  };

  test("a missing config or an empty allowList denies everything", () => {
    denied(
      run({ service: "sign" }, { svc: service(), cfg: null }),
      "ConfigMissing",
      'InternalServicesConfig "config"',
    );
    denied(
      run({ service: "sign" }, { svc: service(), cfg: { allowList: [] } }),
      "NamespaceNotAllowed",
      "is empty",
    );
  });

  test("a namespace outside the allowList is told what to ask for", () => {
    denied(
      run({ service: "sign" }, { svc: service(), ns: "team-c" }),
      "NamespaceNotAllowed",
      'namespace "team-c" in workspace "public" is not in the InternalServicesConfig allowList (ask the service owners to add "public/team-c" or "team-c" to spec.allowList of config in the controller namespace)',
    );
    denied(run({ service: "sign" }, { svc: service(), ns: "team-b", ws: "other" }), "NamespaceNotAllowed");
    allowed(run({ service: "sign" }, { svc: service(), ns: "team-b", ws: "public" }));
    allowed(run({ service: "sign" }, { svc: service(), ns: "whatever", ws: "prod" }));
  });

  test("the allowList is checked before the service lookup", () => {
    denied(run({ service: "nope" }, { ns: "team-c" }), "NamespaceNotAllowed");
    denied(
      run({ service: "nope" }),
      "ServiceNotFound",
      'InternalService "nope" does not exist',
      "spec.service",
    );
  });

  test("exactly one of service and pipeline", () => {
    const pipeline = { pipelineRef: { resolver: "git" } };
    denied(run({ service: "sign", pipeline }, { svc: service() }), "InvalidRequest", "exactly one");
    denied(run({}), "InvalidRequest");
  });

  test("the service's allowedNamespaces narrow the allowList", () => {
    const svc = service({ allowedNamespaces: ["prod/*", "team-a"] });
    allowed(run({ service: "sign" }, { svc }));
    allowed(run({ service: "sign" }, { svc, ns: "x", ws: "prod" }));
    denied(
      run({ service: "sign" }, { svc, ns: "team-b" }),
      "ServiceNamespaceNotAllowed",
      'namespace "team-b" in workspace "public" may not use InternalService "sign"',
      '"public/team-b" or "team-b" to its spec.allowedNamespaces',
    );
  });

  test("params are validated with defaults; schema errors are the service's", () => {
    const svc = service({
      paramsSchema: {
        required: ["digest"],
        properties: { digest: { pattern: "^sha256:" }, env: { default: "prod" } },
      },
    });
    assert.deepEqual(allowed(run({ service: "sign", params: { digest: "sha256:1" } }, { svc })).params, {
      digest: "sha256:1",
      env: "prod",
    });
    denied(
      run({ service: "sign", params: { digest: "md5", foo: "x" } }, { svc }),
      "InvalidParams",
      'paramsSchema of InternalService "sign"',
      'param "digest" must match pattern "^sha256:"',
      'unknown param "foo" (the service accepts: digest, env)',
    );
    denied(
      run({ service: "sign", params: { a: "1" } }, { svc: service() }),
      "InvalidParams",
      'unknown param "a"',
    );
    denied(
      run({ service: "sign" }, { svc: service({ paramsSchema: { type: 42 } }) }),
      "InvalidServiceSchema",
      'InternalService "sign" has an invalid spec.paramsSchema',
      "ask the service owners",
    );
  });

  test("service accounts: default, allowed alternatives, anything else rejected", () => {
    const svc = service({ serviceAccount: "signer", allowedServiceAccounts: ["signer-debug"] });
    assert.equal(allowed(run({ service: "sign" }, { svc })).serviceAccount, "signer");
    assert.equal(
      allowed(run({ service: "sign", serviceAccount: "signer-debug" }, { svc })).serviceAccount,
      "signer-debug",
    );
    denied(
      run({ service: "sign", serviceAccount: "cluster-admin" }, { svc }),
      "ServiceAccountNotAllowed",
      'spec.serviceAccount "cluster-admin" is not allowed by InternalService "sign" (it allows: "signer", "signer-debug"',
    );
    assert.equal(allowed(run({ service: "sign" }, { svc: service() })).serviceAccount, undefined);
    denied(
      run({ service: "sign", serviceAccount: "x" }, { svc: service() }),
      "ServiceAccountNotAllowed",
      "no choice",
    );
  });

  test("timeouts: request, service default, 1h default, capped at the maximum with a note", () => {
    const svc = service({ timeouts: { default: "30m", maximum: "2h" } });
    const timeouts = (request: InternalRequestSpec, s = svc) => allowed(run(request, { svc: s }));
    assert.deepEqual(timeouts({ service: "sign" }).timeouts, { pipelineMs: 30 * M, queueMs: Q });
    assert.deepEqual(timeouts({ service: "sign" }, service()).timeouts, {
      pipelineMs: DEFAULT_PIPELINE_TIMEOUT_MS,
      queueMs: Q,
    });
    assert.equal(DEFAULT_PIPELINE_TIMEOUT_MS, H);
    assert.deepEqual(timeouts({ service: "sign", timeouts: { pipeline: "1h30m" } }).timeouts, {
      pipelineMs: 90 * M,
      queueMs: Q,
    });
    const capped = timeouts({ service: "sign", timeouts: { pipeline: "5h", tasks: "4h" } });
    assert.deepEqual(capped.timeouts, { pipelineMs: 2 * H, tasksMs: 2 * H, queueMs: Q });
    assert.deepEqual(capped.notes, [
      "spec.timeouts.pipeline 5h0m0s capped at the service maximum 2h0m0s",
      "spec.timeouts.tasks 4h0m0s capped at the service maximum 2h0m0s",
    ]);
  });

  test('timeouts: "0" means none, unless a maximum caps it', () => {
    const none = allowed(run({ service: "sign", timeouts: { pipeline: "0" } }, { svc: service() }));
    assert.deepEqual(none.timeouts, { pipelineMs: 0, queueMs: Q });
    const svc = service({ timeouts: { maximum: "1h" } });
    const capped = allowed(run({ service: "sign", timeouts: { pipeline: "0s" } }, { svc }));
    assert.deepEqual(capped.timeouts, { pipelineMs: H, queueMs: Q });
    assert.deepEqual(capped.notes, [
      'spec.timeouts.pipeline "0" (no timeout) capped at the service maximum 1h0m0s',
    ]);
    const defaulted = allowed(
      run({ service: "sign" }, { svc: service({ timeouts: { default: "3h", maximum: "1h" } }) }),
    );
    assert.deepEqual(defaulted.notes, [
      "the service's timeouts.default 3h0m0s capped at the service maximum 1h0m0s",
    ]);
  });

  test("timeouts: unparsable, negative or inconsistent values are rejected", () => {
    const svc = service({ timeouts: { maximum: "1h" } });
    const req = (timeouts: InternalRequestSpec["timeouts"]) => run({ service: "sign", timeouts }, { svc });
    denied(
      req({ pipeline: "1 hour" }),
      "InvalidTimeout",
      'spec.timeouts.pipeline: invalid duration "1 hour"',
    );
    denied(req({ tasks: "-5m" }), "InvalidTimeout", "spec.timeouts.tasks must not be negative");
    denied(
      req({ pipeline: "30m", tasks: "45m" }),
      "InvalidTimeout",
      "spec.timeouts.tasks (45m0s) must not exceed the pipeline timeout: the pipeline timeout is 30m0s, from spec.timeouts.pipeline",
    );
    denied(
      req({ pipeline: "3h", tasks: "50m", finally: "30m" }),
      "InvalidTimeout",
      "spec.timeouts.tasks (50m0s) + spec.timeouts.finally (30m0s) must not exceed the pipeline timeout",
      "1h0m0s, from spec.timeouts.pipeline, capped at the service maximum",
    );
    denied(
      run({ service: "sign", timeouts: { tasks: "0" } }, { svc: service() }),
      "InvalidTimeout",
      'spec.timeouts.tasks "0" (no timeout) is not allowed with a finite pipeline timeout',
      "from the default pipeline timeout",
    );
    allowed(
      run({ service: "sign", timeouts: { pipeline: "0", tasks: "0", finally: "5h" } }, { svc: service() }),
    );
  });

  test("a service with unparsable durations is misconfigured, not the request", () => {
    const svc = service({ retention: { keepFinishedPipelineRuns: "forever" } });
    denied(
      run({ service: "sign" }, { svc }),
      "InvalidService",
      'InternalService "sign" is misconfigured',
      "forever",
    );
    denied(run({ service: "sign" }, { svc: service({ pipeline: {} }) }), "InvalidService", "exactly one");
  });

  test("a full plan for a service request", () => {
    const svc = service({
      pipeline: {
        pipelineRef: { resolver: "bundles", params: [{ name: "bundle", value: "quay.io/x@sha256:1" }] },
      },
      paramsSchema: { properties: { token: { type: "string" }, env: { default: "stage" } } },
      serviceAccount: "signer",
      maxConcurrentRuns: 2,
      retention: { keepFinishedPipelineRuns: "10m" },
      sensitiveParams: ["token"],
    });
    assert.deepEqual(run({ service: "sign", params: { token: "s3cret" } }, { svc }), {
      allowed: true,
      run: {
        service: "sign",
        pipelineRef: { resolver: "bundles", params: [{ name: "bundle", value: "quay.io/x@sha256:1" }] },
        params: { token: "s3cret", env: "stage" },
        serviceAccount: "signer",
        maxConcurrentRuns: 2,
        sensitiveParams: ["token"],
        timeouts: { pipelineMs: H, queueMs: Q },
        notes: [],
      },
    });
    assert.equal(allowed(run({ service: "sign" }, { svc: service() })).pipelineName, "sign-pipeline");
  });

  test("raw pipeline requests: source rules, legacy serviceAccountName and timeouts", () => {
    const pipelineRef = {
      resolver: "git",
      params: [
        { name: "url", value: "https://gitlab.internal/a/b.git" },
        { name: "revision", value: "v1" },
      ],
    };
    const withAccounts = { ...config, allowedServiceAccounts: ["legacy-sa", "new-sa"] };
    const legacy = allowed(
      run(
        {
          pipeline: {
            pipelineRef,
            serviceAccountName: "legacy-sa",
            timeouts: { pipeline: "2h", tasks: "1h" },
          },
          params: { x: "1" },
        },
        { cfg: withAccounts },
      ),
    );
    assert.deepEqual(legacy, {
      pipelineRef,
      params: { x: "1" },
      serviceAccount: "legacy-sa",
      maxConcurrentRuns: rawDefaults.maxConcurrentRuns,
      sensitiveParams: [],
      timeouts: { pipelineMs: 2 * H, tasksMs: H, queueMs: Q },
      notes: [],
    });
    const newer = allowed(
      run(
        {
          pipeline: { pipelineRef, serviceAccountName: "legacy-sa", timeouts: { pipeline: "2h" } },
          serviceAccount: "new-sa",
          timeouts: { pipeline: "20m" },
        },
        { cfg: withAccounts },
      ),
    );
    assert.equal(newer.serviceAccount, "new-sa");
    // Raw requests cannot pick a ServiceAccount the config does not list (the old controller's weakness).
    denied(
      run({ pipeline: { pipelineRef }, serviceAccount: "cluster-admin" }, { cfg: withAccounts }),
      "ServiceAccountNotAllowed",
      '"cluster-admin"',
      "allowed: legacy-sa, new-sa",
    );
    denied(
      run({ pipeline: { pipelineRef, serviceAccountName: "legacy-sa" } }),
      "ServiceAccountNotAllowed",
      "none is allowed",
    );
    assert.equal(allowed(run({ pipeline: { pipelineRef } })).serviceAccount, undefined);
    assert.deepEqual(newer.timeouts, { pipelineMs: 20 * M, queueMs: Q });
    assert.deepEqual(allowed(run({ pipeline: { pipelineRef } })).timeouts, { pipelineMs: H, queueMs: Q });
    denied(
      run({ pipeline: { pipelineRef, timeouts: { pipeline: "2 days" } } }),
      "InvalidTimeout",
      "spec.pipeline.timeouts.pipeline: invalid duration",
    );
    denied(
      run({
        pipeline: {
          pipelineRef: {
            resolver: "git",
            params: [
              { name: "url", value: "https://github.com/x" },
              { name: "revision", value: "v1" },
            ],
          },
        },
      }),
      "PipelineSourceNotAllowed",
      'resolver "git"',
      'param "url" does not match "https://gitlab.internal/**"',
    );
  });

  test("raw pipeline requests: the config's rawPipelineRequests limits, with defaults", () => {
    const pipelineRef = {
      resolver: "git",
      params: [
        { name: "url", value: "https://gitlab.internal/a/b.git" },
        { name: "revision", value: "v1" },
      ],
    };
    // Defaults: 1h default, 24h maximum (a "0" is capped, with a note), 100 runs, 64 KiB of params.
    const forever = allowed(run({ pipeline: { pipelineRef }, timeouts: { pipeline: "0" } }));
    assert.deepEqual(forever.timeouts, { pipelineMs: 24 * H, queueMs: Q });
    assert.deepEqual(forever.notes, [
      `spec.timeouts.pipeline "0" (no timeout) capped at the InternalServicesConfig's rawPipelineRequests.timeouts.maximum 24h0m0s`,
    ]);
    assert.equal(forever.maxConcurrentRuns, 100);
    denied(
      run({ pipeline: { pipelineRef }, params: { a: "x".repeat(65_536) } }),
      "ParamsTooLarge",
      "spec.params hold 65537 characters (names and values), over the 65536 allowed for raw pipeline requests (rawPipelineRequests.maxParamsSize of the InternalServicesConfig)",
    );
    const cfg = {
      ...config,
      rawPipelineRequests: {
        timeouts: { default: "10m", maximum: "1h" },
        maxConcurrentRuns: 3,
        maxParamsSize: 10,
      },
    };
    const limited = allowed(run({ pipeline: { pipelineRef } }, { cfg }));
    assert.deepEqual(limited.timeouts, { pipelineMs: 10 * M, queueMs: Q });
    assert.equal(limited.maxConcurrentRuns, 3);
    assert.deepEqual(
      allowed(run({ pipeline: { pipelineRef }, timeouts: { pipeline: "3h" } }, { cfg })).notes,
      [
        "spec.timeouts.pipeline 3h0m0s capped at the InternalServicesConfig's rawPipelineRequests.timeouts.maximum 1h0m0s",
      ],
    );
    denied(
      run({ pipeline: { pipelineRef }, params: { abc: "12345678" } }, { cfg }),
      "ParamsTooLarge",
      "11 characters",
    );
    const broken = { ...config, rawPipelineRequests: { timeouts: { maximum: "forever" } } };
    denied(
      run({ pipeline: { pipelineRef } }, { cfg: broken }),
      "InvalidConfig",
      "rawPipelineRequests",
      "not the request's fault",
    );
    // The resolver params reach the run as checked: a URL in canonical form.
    const upper = allowed(
      run({
        pipeline: {
          pipelineRef: {
            resolver: "git",
            params: [
              { name: "url", value: "HTTPS://GitLab.Internal:443/a/b.git" },
              { name: "revision", value: "v1" },
            ],
          },
        },
      }),
    );
    assert.deepEqual(upper.pipelineRef?.params, pipelineRef.params);
  });

  test("does not modify its input", () => {
    const svc = service({ paramsSchema: { properties: { env: { default: "prod" } } } });
    const request: InternalRequestSpec = { service: "sign", params: {} };
    const frozen = structuredClone({ request, svc, config });
    admit({ workspace: "public", namespace: "team-a", request, config, service: svc });
    assert.deepEqual({ request, svc, config }, frozen);
  });
});

test("redactParams hides only sensitive values", () => {
  const params = { token: "s3cret", env: "prod" };
  assert.deepEqual(redactParams(params, ["token", "absent"]), { token: "<redacted>", env: "prod" });
  assert.deepEqual(params, { token: "s3cret", env: "prod" });
});

describe("label propagation", () => {
  const callers = Object.fromEntries(defaultPropagatedLabels.map((k, i) => [k, `v${i}`]));

  test("the six Konflux caller labels pass by default; everything else is left out and named", () => {
    const r = propagatedLabels(
      {
        ...callers,
        "kueue.x-k8s.io/priority-class": "high",
        "sidecar.istio.io/inject": "false",
        app: "signing-server",
        "tekton.dev/pipelineRun": "outer",
        "internal-services.appstudio.openshift.io/customrun-attempt": "0",
      },
      undefined,
    );
    assert.deepEqual(r.labels, callers);
    // Tekton's and the bridge's own labels are left out without a note.
    assert.deepEqual(r.dropped, ["app", "kueue.x-k8s.io/priority-class", "sidecar.istio.io/inject"]);
    assert.equal(
      droppedLabelsNote(r.dropped),
      'labels not copied to the internal PipelineRun: "app", "kueue.x-k8s.io/priority-class", "sidecar.istio.io/inject" (the InternalServicesConfig\'s propagateLabels allows keys)',
    );
    assert.equal(droppedLabelsNote([]), undefined);
  });

  test("the config adds keys and prefixes; the total is capped", () => {
    const r = propagatedLabels(
      {
        "team.example.com/owner": "x",
        "release.example.com/a": "1",
        "release.example.com/b": "2",
        other: "y",
      },
      { keys: ["team.example.com/owner"], prefixes: ["release.example.com/"] },
    );
    assert.deepEqual(r.labels, {
      "release.example.com/a": "1",
      "release.example.com/b": "2",
      "team.example.com/owner": "x",
    });
    assert.deepEqual(r.dropped, ["other"]);
    const many = Object.fromEntries(
      Array.from({ length: 200 }, (_, i) => [`p.example.com/k${i}`, "v".repeat(40)]),
    );
    const capped = propagatedLabels(many, { prefixes: ["p.example.com/"] });
    const chars = Object.entries(capped.labels).reduce((n, [k, v]) => n + k.length + v.length, 0);
    assert.ok(chars <= maxPropagatedChars && capped.dropped.length > 0);
  });

  test("admit: the service's runLabels win over request labels; dropped keys become a note", () => {
    const svc: InternalService = {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalService",
      metadata: { name: "sign" },
      spec: {
        pipeline: { pipelineName: "sign" },
        runLabels: { [`${defaultPropagatedLabels[4]}`]: "signing-server" },
        runAnnotations: { "kueue.example.com/queue": "sign" },
      },
    };
    const admission = admit({
      workspace: "public",
      namespace: "team-a",
      request: { service: "sign" },
      config: { allowList: ["team-a"] },
      service: svc,
      labels: {
        [`${defaultPropagatedLabels[4]}`]: "tenant-choice",
        [`${defaultPropagatedLabels[0]}`]: "pr",
        app: "x",
      },
    });
    assert.ok(admission.allowed, JSON.stringify(admission));
    const plan = admission.run;
    assert.deepEqual(plan.labels, {
      [`${defaultPropagatedLabels[0]}`]: "pr",
      [`${defaultPropagatedLabels[4]}`]: "signing-server",
    });
    assert.deepEqual(plan.annotations, { "kueue.example.com/queue": "sign" });
    assert.match(plan.notes.at(-1) ?? "", /labels not copied to the internal PipelineRun: "app"/);
  });

  test("a prefix without / is a whole key prefix, never a prefix of a longer domain", () => {
    const r = propagatedLabels(
      { "example.com/team": "a", "example.com.attacker.io/x": "b", "example.community/y": "c" },
      { prefixes: ["example.com"] },
    );
    assert.deepEqual(r.labels, { "example.com/team": "a" });
    assert.deepEqual(r.dropped, ["example.com.attacker.io/x", "example.community/y"]);
  });

  test("admit: raw requests' runLabels come from the config's rawPipelineRequests and win", () => {
    const admission = admit({
      workspace: "public",
      namespace: "team-a",
      request: { pipeline: { pipelineRef: { resolver: "git", params: [] } } } as InternalRequestSpec,
      config: {
        allowList: ["team-a"],
        allowedPipelineSources: [{ resolver: "git", params: {} }],
        rawPipelineRequests: {
          runLabels: { [`${defaultPropagatedLabels[4]}`]: "raw-requests" },
          runAnnotations: { "kueue.example.com/queue": "raw" },
        },
      },
      service: undefined,
      labels: { [`${defaultPropagatedLabels[4]}`]: "someone-elses-group" },
    });
    assert.ok(admission.allowed, JSON.stringify(admission));
    assert.deepEqual(admission.run.labels, { [`${defaultPropagatedLabels[4]}`]: "raw-requests" });
    assert.deepEqual(admission.run.annotations, { "kueue.example.com/queue": "raw" });
  });
});

describe("queue timeout", () => {
  const H = 3_600_000;
  test("default 24h; the request's own, capped at the service's with a note; never part of Tekton's", () => {
    const none = resolveTimeouts(undefined, {});
    assert.ok(none.ok);
    assert.equal(none.timeouts.queueMs, 24 * H);
    const own = resolveTimeouts({ queue: "30m" }, { queueMs: H });
    assert.ok(own.ok);
    assert.equal(own.timeouts.queueMs, H / 2);
    assert.deepEqual(own.notes, []);
    const over = resolveTimeouts({ queue: "5h" }, { queueMs: H });
    assert.ok(over.ok);
    assert.equal(over.timeouts.queueMs, H);
    assert.deepEqual(over.notes, [
      "spec.timeouts.queue 5h0m0s capped at the service's timeouts.queue 1h0m0s",
    ]);
    const zero = resolveTimeouts(
      { queue: "0" },
      { queueMs: H, owner: "the InternalServicesConfig's rawPipelineRequests" },
    );
    assert.ok(zero.ok);
    assert.deepEqual(zero.notes, [
      `spec.timeouts.queue "0" (no limit) capped at the InternalServicesConfig's rawPipelineRequests.timeouts.queue 1h0m0s`,
    ]);
    const bad = resolveTimeouts({ queue: "soon" }, {});
    assert.equal(bad.ok, false);
  });

  test("without any limit the default is the limit: 292 years is capped at 24h", () => {
    const huge = resolveTimeouts({ queue: "2562047h" }, {});
    assert.ok(huge.ok);
    assert.equal(huge.timeouts.queueMs, 24 * H);
    assert.deepEqual(huge.notes, [
      "spec.timeouts.queue 2562047h0m0s capped at the longest allowed without a service's timeouts.queue, 24h0m0s",
    ]);
    const zero = resolveTimeouts({ queue: "0" }, {});
    assert.ok(zero.ok);
    assert.equal(zero.timeouts.queueMs, 24 * H);
  });
});
