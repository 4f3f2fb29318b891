// A table of bad input, as InternalRequests and as Tekton CustomRuns: every case ends with a specific
// reason and message (or the API server refuses it at create time with a specific 422), nothing but
// the few accepted cases ever reaches the private cluster, and the controller stays up.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createNamespace, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { customRuns, ResourceClient } from "../../src/api/resources.ts";
import type {
  InternalRequest,
  InternalServiceSpec,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../../src/generated/tekton.ts";
import { maxMessageChars } from "../../src/requests/conditions.ts";
import { labelPrefix } from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";

const sign: InternalServiceSpec = {
  pipeline: { pipelineName: "sign" },
  paramsSchema: {
    type: "object",
    required: ["digest"],
    properties: {
      digest: { type: "string", pattern: "^sha256:[a-f0-9]{8,64}$" },
      env: { type: "string", enum: ["stage", "prod"] },
      note: { type: "string", maxLength: 64 },
      count: { type: "integer", minimum: 1, maximum: 10 },
      token: { type: "string", minLength: 8 },
    },
  },
  sensitiveParams: ["token"],
  serviceAccount: "signer",
  allowedServiceAccounts: ["signer-lite"],
  timeouts: { default: "30m", maximum: "2h" },
};
const services: Record<string, InternalServiceSpec> = {
  sign,
  plain: { pipeline: { pipelineName: "plain" } },
  restricted: { pipeline: { pipelineName: "restricted" }, allowedNamespaces: ["nobody-*"] },
  broken: {
    pipeline: { pipelineName: "broken" },
    paramsSchema: { type: "object", properties: { a: { type: "strin" } } },
  },
};
const digest = "sha256:abcdef12";
const ok = { service: "sign", params: { digest } };
const unicodeNote = "\u202e🚀\u0000\t$(params.digest); rm -rf / `id`";

// --- the table ----------------------------------------------------------------------------------

type Expect =
  /** The API server refuses the object at create time. */
  | { api: number; message: RegExp }
  /** The controller ends it False with this reason. */
  | { reason: string; message: RegExp }
  /** Accepted: an internal PipelineRun runs (checked and completed by the accepted-cases test). */
  | { accepted: true; message?: RegExp };

interface Case {
  name: string;
  /** The object's name, when not the case name. */
  objectName?: string;
  /** An InternalRequest spec (anything: malformed ones go straight to the API). */
  ir?: unknown;
  labels?: Record<string, string>;
  /** A CustomRun spec. */
  cr?: unknown;
  /** "other": a namespace the config does not allow; "odd": a second workspace on the private plane, for
   *  CustomRuns Tekton's own controller (running on the public plane in other files) could not decode. */
  where?: "other" | "odd";
  expect: Expect;
}

const rejected = (message: RegExp): Expect => ({ reason: "Rejected", message });
const api = (message: RegExp): Expect => ({ api: 422, message });
const ref = (name?: string, apiVersion = "appstudio.redhat.com/v1alpha1", kind = "InternalRequest") => ({
  apiVersion,
  kind,
  ...(name !== undefined ? { name } : {}),
});
const embedded = (spec: unknown) => ({ customSpec: { ...ref(), spec } });
const raw = (resolver: string, params: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  pipeline: {
    pipelineRef: { resolver, params: Object.entries(params).map(([name, value]) => ({ name, value })) },
  },
  ...extra,
});
const gitOk = {
  url: "https://git.example.com/releng/sign.git",
  revision: "v1.2",
  pathInRepo: "pipelines/sign.yaml",
};
const many = (n: number, prefix = "p") =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, "x"]));
const longName = `long-${"n".repeat(243)}-end`; // 252 characters
const overridden = {
  "app.kubernetes.io/managed-by": "someone-else",
  [`${labelPrefix}/request-uid`]: "forged-uid",
  [`${labelPrefix}/name`]: "forged-name",
  [`${labelPrefix}/workspace`]: "forged-workspace",
  [`${labelPrefix}/service`]: "cluster-admin",
  "tekton.dev/pipeline": "forged",
  "team.example.com/owner": "release",
};

const cases: Case[] = [
  // Services and schemas.
  {
    name: "unknown-service",
    ir: { service: "nope", params: { digest } },
    expect: rejected(/^InternalService "nope" does not exist in the controller namespace/),
  },
  {
    name: "unknown-service-at-limit",
    ir: { service: "s".repeat(253) },
    expect: rejected(/^InternalService "s{200}…" does not exist/),
  },
  {
    name: "missing-required",
    ir: { service: "sign" },
    expect: rejected(/paramsSchema of InternalService "sign": missing required param "digest"/),
  },
  {
    name: "pattern",
    ir: { service: "sign", params: { digest: "md5:1234" } },
    expect: rejected(/param "digest" must match pattern "\^sha256:\[a-f0-9\]\{8,64\}\$"/),
  },
  {
    name: "enum",
    ir: { service: "sign", params: { digest, env: "dev" } },
    expect: rejected(/param "env" must be one of: "stage", "prod"/),
  },
  {
    name: "max-length",
    ir: { service: "sign", params: { digest, note: "n".repeat(65) } },
    expect: rejected(/param "note" must be at most 64 characters long/),
  },
  {
    name: "oversized-param",
    ir: { service: "sign", params: { digest, note: "n".repeat(65_536) } },
    expect: rejected(/param "note" must be at most 64 characters long/),
  },
  {
    name: "min-length",
    ir: { service: "sign", params: { digest, token: "short" } },
    expect: rejected(/param "token" must be at least 8 characters long/),
  },
  {
    name: "not-an-integer",
    ir: { service: "sign", params: { digest, count: "three" } },
    expect: rejected(/param "count" must be an integer/),
  },
  {
    name: "over-maximum",
    ir: { service: "sign", params: { digest, count: "11" } },
    expect: rejected(/param "count" must be <= 10/),
  },
  // Schemas mean what they say: a typed param is read only in its canonical spelling (ajv used to
  // coerce these, and the original string went on to the PipelineRun).
  ...["0x5", " 5", "05", "5.0", "+5", "1e0", "５"].map(
    (count, i): Case => ({
      name: `int-not-canonical-${i}`,
      ir: { service: "sign", params: { digest, count } },
      expect: rejected(/param "count" must be an integer written in canonical form .*, got "/),
    }),
  ),
  {
    name: "unknown-param",
    ir: { service: "sign", params: { digest, evil: "x" } },
    expect: rejected(/unknown param "evil" \(the service accepts: count, digest, env, note, token\)/),
  },
  {
    name: "many-unknown-params",
    ir: { service: "sign", params: { digest, ...many(30, "evil") } },
    expect: rejected(/unknown param "evil\d+".* and 20 more$/),
  },
  {
    name: "params-without-schema",
    ir: { service: "plain", params: { a: "1" } },
    expect: rejected(/unknown param "a" \(the service has no paramsSchema, so it accepts no params\)/),
  },
  {
    name: "proto-param",
    ir: { service: "sign", params: { digest, __proto__x: "1", constructor: "2" } },
    expect: rejected(/unknown param "(__proto__x|constructor)"/),
  },
  {
    name: "broken-schema",
    ir: { service: "broken", params: { a: "1" } },
    expect: rejected(
      /InternalService "broken" has an invalid spec.paramsSchema .*this is not the request's fault/,
    ),
  },
  {
    name: "not-in-service-namespaces",
    ir: { service: "restricted" },
    expect: rejected(
      /may not use InternalService "restricted": it is not in the service's allowedNamespaces/,
    ),
  },
  {
    name: "namespace-not-allowed",
    ir: ok,
    where: "other",
    expect: rejected(
      /in workspace "public" is not in the InternalServicesConfig allowList \(ask the service owners to add "public\/team-[0-9a-f]+" or "team-[0-9a-f]+"/,
    ),
  },
  // Unicode and control characters in values: refused by the schema, never echoed raw.
  {
    name: "nul-value",
    ir: { service: "sign", params: { digest: "\u0000" } },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "bidi-value",
    ir: { service: "sign", params: { digest: `sha256:\u202eabcdef12` } },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "emoji-enum",
    ir: { service: "sign", params: { digest, env: "🚀" } },
    expect: rejected(/param "env" must be one of/),
  },
  {
    name: "newline-injection",
    ir: { service: "sign", params: { digest: `${digest}\nsha256:ffffffff` } },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "zero-width-name-lookalike",
    ir: { service: "sign", params: { digest: `${digest}\u200b` } },
    expect: rejected(/param "digest" must match pattern/),
  },
  // Service accounts.
  {
    name: "sa-escalation",
    ir: { ...ok, serviceAccount: "cluster-admin" },
    expect: rejected(
      /spec.serviceAccount "cluster-admin" is not allowed by InternalService "sign" \(it allows: "signer", "signer-lite"; leave spec.serviceAccount unset/,
    ),
  },
  {
    name: "sa-no-choice",
    ir: { service: "plain", serviceAccount: "default" },
    expect: rejected(/it allows no choice of ServiceAccount/),
  },
  {
    name: "raw-sa-escalation",
    ir: raw(
      "cluster",
      { name: "release-sign", namespace: "releng", kind: "pipeline" },
      { serviceAccount: "pipeline" },
    ),
    expect: rejected(
      /spec.serviceAccount "pipeline" is not allowed for raw pipeline requests \(allowed: raw-runner/,
    ),
  },
  {
    name: "raw-legacy-sa",
    ir: {
      pipeline: {
        ...raw("cluster", { name: "release-sign", namespace: "releng", kind: "pipeline" }).pipeline,
        serviceAccountName: "builder",
      },
    },
    expect: rejected(/spec.serviceAccount "builder" is not allowed for raw pipeline requests/),
  },
  // Timeouts (the API refuses what is not a Go duration; these parse).
  {
    name: "tasks-over-pipeline",
    ir: { ...ok, timeouts: { pipeline: "1h", tasks: "90m" } },
    expect: rejected(
      /spec.timeouts.tasks \(1h30m0s\) must not exceed the pipeline timeout: the pipeline timeout is 1h0m0s, from spec.timeouts.pipeline/,
    ),
  },
  {
    name: "tasks-zero",
    ir: { service: "plain", timeouts: { tasks: "0" } },
    expect: rejected(/spec.timeouts.tasks "0" \(no timeout\) is not allowed with a finite pipeline timeout/),
  },
  {
    name: "tasks-plus-finally",
    ir: { ...ok, timeouts: { pipeline: "1h", tasks: "40m", finally: "30m" } },
    expect: rejected(/spec.timeouts.tasks \(40m0s\) \+ spec.timeouts.finally \(30m0s\) must not exceed/),
  },
  {
    name: "timeout-overflow",
    ir: { ...ok, timeouts: { pipeline: "99999999h" } },
    expect: rejected(/spec.timeouts.pipeline: invalid duration "99999999h": it is longer than Go allows/),
  },
  {
    name: "legacy-timeout-overflow",
    ir: {
      pipeline: {
        ...raw("cluster", { name: "release-sign", namespace: "releng", kind: "pipeline" }).pipeline,
        timeouts: { pipeline: "9999999999999s" },
      },
    },
    expect: rejected(
      /spec.pipeline.timeouts.pipeline: invalid duration "9999999999999s": it is longer than Go allows/,
    ),
  },
  // Raw pipelines: disallowed resolver sources.
  {
    name: "git-url",
    ir: raw("git", { ...gitOk, url: "https://github.com/attacker/sign.git" }),
    expect: rejected(
      /resolver "git"\) matches none of the 1 rule\(s\) for this resolver: allowedPipelineSources\[0\] .*: param "url" does not match "https:\/\/git.example.com\/releng\/\*.git"/,
    ),
  },
  {
    name: "git-url-subdir",
    ir: raw("git", { ...gitOk, url: "https://git.example.com/releng/x/y.git" }),
    expect: rejected(/param "url" does not match/),
  },
  {
    name: "git-missing-revision",
    ir: raw("git", { url: gitOk.url, pathInRepo: gitOk.pathInRepo }),
    expect: rejected(/missing param\(s\) "revision": this rule requires every param it names/),
  },
  {
    name: "git-encoded-slash",
    ir: raw("git", { ...gitOk, pathInRepo: "pipelines/..%2f..%2fsecrets.yaml" }),
    expect: rejected(/param "pathInRepo" contains "%2f"/),
  },
  {
    name: "git-scp-like",
    ir: raw("git", { ...gitOk, url: "git@git.example.com:releng/sign.git" }),
    expect: rejected(/param "url" does not match/),
  },
  {
    name: "git-revision",
    ir: raw("git", { ...gitOk, revision: "main" }),
    expect: rejected(/param "revision" does not match "v\*"/),
  },
  {
    name: "git-path-traversal",
    ir: raw("git", { ...gitOk, pathInRepo: "pipelines/../../secrets/pipeline.yaml" }),
    expect: rejected(/param "pathInRepo" contains a "\.\." path segment/),
  },
  {
    name: "git-extra-param",
    ir: raw("git", { ...gitOk, token: "t" }),
    expect: rejected(/param "token" is not named in this rule/),
  },
  {
    name: "bundle-tag",
    ir: raw("bundles", {
      bundle: "quay.example.com/releng/pipelines:latest",
      name: "sign",
      kind: "pipeline",
    }),
    expect: rejected(/param "bundle" does not match "quay.example.com\/releng\/pipelines@sha256:\*"/),
  },
  {
    name: "bundle-registry",
    ir: raw("bundles", { bundle: "quay.io/attacker/pipelines@sha256:abc", name: "sign", kind: "pipeline" }),
    expect: rejected(/param "bundle" does not match/),
  },
  {
    name: "bundle-kind",
    ir: raw("bundles", {
      bundle: "quay.example.com/releng/pipelines@sha256:abc",
      name: "sign",
      kind: "task",
    }),
    expect: rejected(/param "kind" does not match "pipeline"/),
  },
  {
    name: "cluster-namespace",
    ir: raw("cluster", { name: "release-sign", namespace: "kube-system", kind: "pipeline" }),
    expect: rejected(/param "namespace" does not match "releng"/),
  },
  {
    name: "cluster-name",
    ir: raw("cluster", { name: "evil", namespace: "releng" }),
    expect: rejected(/param "name" does not match "release-\*"/),
  },
  {
    name: "http-host",
    ir: raw("http", { url: "https://attacker.example.com/releng/p.yaml" }),
    expect: rejected(/param "url" does not match "https:\/\/pipelines.example.com\/releng\/\*\*"/),
  },
  {
    name: "http-traversal",
    ir: raw("http", { url: "https://pipelines.example.com/releng/../attacker/p.yaml" }),
    expect: rejected(/param "url" contains a "\.\." path segment/),
  },
  {
    name: "http-encoded-traversal",
    ir: raw("http", { url: "https://pipelines.example.com/releng/%2e%2E/attacker/p.yaml" }),
    expect: rejected(/param "url" contains a "\.\." path segment/),
  },
  ...[
    ["query", "https://evil.example.org?.internal.example.com/releng/p.yaml"],
    ["fragment", "https://evil.example.org#.internal.example.com/releng/p.yaml"],
    ["userinfo", "https://a.internal.example.com@evil.example.org/releng/p.yaml"],
    ["backslash", "https://evil.example.org\\.internal.example.com/releng/p.yaml"],
    ["base-domain", "https://internal.example.com/releng/p.yaml"],
    ["port", "https://a.internal.example.com:8443/releng/p.yaml"],
  ].map(
    ([trick, url]): Case => ({
      name: `http-wildcard-${trick}`,
      ir: raw("http", { url: url as string }),
      expect: rejected(/matches none of the 2 rule\(s\) for this resolver: .*param "url"/),
    }),
  ),
  {
    name: "hub-resolver",
    ir: raw("hub", { name: "sign" }),
    expect: rejected(
      /pipelineRef resolver "hub" is not allowed: no rule in the InternalServicesConfig is for this resolver \(rules exist for: "git", "bundles", "cluster", "http"\)/,
    ),
  },

  // Refused by the CRD: names over the limits, invalid names, both or neither, bad durations, ...
  {
    name: "api-name-254",
    objectName: "a".repeat(254),
    ir: ok,
    expect: api(/metadata.name: Invalid value: .*must be no more than 253 characters/),
  },
  {
    name: "api-name-uppercase",
    objectName: "Bad-Name",
    ir: ok,
    expect: api(/metadata.name: Invalid value: "Bad-Name": a lowercase RFC 1123 subdomain/),
  },
  {
    name: "api-name-unicode",
    objectName: "s\u00efgn",
    ir: ok,
    expect: api(/metadata.name: Invalid value: .*RFC 1123/),
  },
  {
    name: "api-service-254",
    ir: { service: "s".repeat(254) },
    expect: api(/spec.service: Too long: may not be (more|longer) than 253/),
  },
  {
    name: "api-service-uppercase",
    ir: { service: "Sign" },
    expect: api(/spec.service: Invalid value: "Sign": spec.service in body should match/),
  },
  {
    name: "api-service-empty",
    ir: { service: "" },
    expect: api(/spec.service: Invalid value: "": spec.service in body should be at least 1 chars long/),
  },
  {
    name: "api-service-unicode",
    ir: { service: "sign\u202e" },
    expect: api(/spec.service: Invalid value: .*should match/),
  },
  {
    name: "api-both",
    ir: { ...ok, ...raw("cluster", { name: "x" }) },
    expect: api(/spec: Invalid value: spec must set exactly one of service .* or pipeline/),
  },
  { name: "api-neither", ir: {}, expect: api(/spec must set exactly one of service/) },
  { name: "api-no-spec", ir: undefined, expect: api(/spec: Required value/) },
  {
    name: "api-param-name-digit",
    ir: { service: "sign", params: { "1digest": "x" } },
    expect: api(
      /spec.params: Invalid value: param names must be at most 256 characters, start with a letter or '_'/,
    ),
  },
  {
    name: "api-param-name-unicode",
    ir: { service: "sign", params: { "d\u00efgest": "x" } },
    expect: api(/param names must be/),
  },
  {
    name: "api-param-name-control",
    ir: { service: "sign", params: { "digest\u0000": "x" } },
    expect: api(/param names must be/),
  },
  {
    name: "api-param-name-257",
    ir: { service: "sign", params: { [`p${"a".repeat(256)}`]: "x" } },
    expect: api(/param names must be at most 256 characters/),
  },
  {
    name: "api-param-value-too-long",
    ir: { service: "sign", params: { note: "n".repeat(65_537) } },
    expect: api(/spec.params.note: Too long: may not be (more|longer) than 65536/),
  },
  {
    name: "api-too-many-params",
    ir: { service: "sign", params: many(257) },
    expect: api(/spec.params: Too many: 257: must have at most 128 items/),
  },
  {
    name: "api-params-too-large-together",
    ir: { service: "sign", params: { a: "x".repeat(65_536), b: "y".repeat(65_536), c: "z" } },
    expect: api(
      /spec.params values together must be at most 131072 characters: pass large data by reference/,
    ),
  },
  {
    name: "api-param-not-string",
    ir: { service: "sign", params: { digest: 42 } },
    expect: api(
      /spec.params.digest: Invalid value: "integer": spec.params.digest in body must be of type string/,
    ),
  },
  {
    name: "api-timeout-words",
    ir: { ...ok, timeouts: { pipeline: "1 hour" } },
    expect: api(
      /spec.timeouts.pipeline: Invalid value: "1 hour": spec.timeouts.pipeline in body should match/,
    ),
  },
  {
    name: "api-timeout-negative",
    ir: { ...ok, timeouts: { tasks: "-5m" } },
    expect: api(/spec.timeouts.tasks: Invalid value: "-5m"/),
  },
  {
    name: "api-timeout-empty",
    ir: { ...ok, timeouts: { finally: "" } },
    expect: api(/spec.timeouts.finally: Invalid value: ""/),
  },
  {
    name: "api-timeout-uppercase",
    ir: { ...ok, timeouts: { pipeline: "1H" } },
    expect: api(/spec.timeouts.pipeline: Invalid value: "1H"/),
  },
  {
    name: "api-timeout-too-long",
    ir: { ...ok, timeouts: { pipeline: `${"1".repeat(64)}s` } },
    expect: api(/spec.timeouts.pipeline: Too long: may not be (more|longer) than 64/),
  },
  {
    name: "api-legacy-timeout",
    ir: { pipeline: { ...raw("cluster", { name: "x" }).pipeline, timeouts: { pipeline: "forever" } } },
    expect: api(/spec.pipeline.timeouts.pipeline: Invalid value: "forever"/),
  },
  {
    name: "api-sa-pattern",
    ir: { ...ok, serviceAccount: "Cluster_Admin" },
    expect: api(/spec.serviceAccount: Invalid value: "Cluster_Admin"/),
  },
  {
    name: "api-sa-64",
    ir: { ...ok, serviceAccount: "s".repeat(64) },
    expect: api(/spec.serviceAccount: Too long: may not be (more|longer) than 63/),
  },
  {
    name: "api-resolver-pattern",
    ir: raw("git;rm -rf /", {}),
    expect: api(/spec.pipeline.pipelineRef.resolver: Invalid value: "git;rm -rf \/"/),
  },
  {
    name: "api-resolver-param-duplicate",
    ir: {
      pipeline: {
        pipelineRef: {
          resolver: "git",
          params: [
            { name: "url", value: "a" },
            { name: "url", value: "b" },
          ],
        },
      },
    },
    expect: api(/spec.pipeline.pipelineRef.params\[1\]: Duplicate value: .*"name":"url"/),
  },
  {
    name: "api-resolver-param-value",
    ir: raw("git", { url: "u".repeat(4097) }),
    expect: api(/spec.pipeline.pipelineRef.params\[0\].value: Too long: may not be (more|longer) than 4096/),
  },
  {
    name: "api-resolver-params-33",
    ir: raw("git", many(33)),
    expect: api(/spec.pipeline.pipelineRef.params: Too many: 33: must have at most 32 items/),
  },
  {
    name: "api-status-typo",
    ir: { ...ok, status: "Canceled" },
    expect: api(/spec.status: Unsupported value: "Canceled": supported values: "Cancelled"/),
  },

  // Accepted (the few that may run): checked and completed by the accepted-cases test.
  { name: "acc-labels", ir: ok, labels: overridden, expect: { accepted: true } },
  {
    name: "acc-capped",
    ir: { ...ok, timeouts: { pipeline: "5h" } },
    expect: {
      accepted: true,
      message:
        /^accepted; internal PipelineRun started \(spec.timeouts.pipeline 5h0m0s capped at the service maximum 2h0m0s\)$/,
    },
  },
  {
    name: "acc-huge-timeout",
    ir: raw(
      "cluster",
      { name: "release-sign", namespace: "releng", kind: "pipeline" },
      { timeouts: { pipeline: "2562047h" } },
    ),
    expect: { accepted: true },
  },
  {
    name: "acc-unicode",
    ir: { service: "sign", params: { digest, note: unicodeNote } },
    expect: { accepted: true },
  },
  { name: "acc-long-name", objectName: longName, ir: ok, expect: { accepted: true } },
  { name: "acc-long-failure", ir: ok, expect: { accepted: true } },
  {
    name: "acc-int-canonical",
    ir: { service: "sign", params: { digest, count: "5" } },
    expect: { accepted: true },
  },
  {
    name: "acc-url-canonical",
    ir: raw("http", { url: "HTTPS://Team-A.Internal.Example.com:443/releng/p.yaml" }),
    expect: { accepted: true },
  },

  // CustomRuns (Tekton-shaped), in the same workspace namespace.
  {
    name: "cr-unknown-service",
    cr: { customRef: ref("nope"), params: [{ name: "digest", value: digest }] },
    expect: rejected(/InternalService "nope" does not exist/),
  },
  {
    name: "cr-bad-param",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: "md5:1" }] },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "cr-array-param",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: [digest] }] },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "cr-object-param",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: { a: digest } }] },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "cr-unknown-param",
    cr: {
      customRef: ref("sign"),
      params: [
        { name: "digest", value: digest },
        { name: "evil", value: "1" },
      ],
    },
    expect: rejected(/unknown param "evil"/),
  },
  {
    name: "cr-control-chars",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: "\u0000\u202e\u001b[31m" }] },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "cr-missing-param",
    cr: { customRef: ref("sign") },
    expect: rejected(/missing required param "digest"/),
  },
  {
    name: "cr-wrong-kind",
    cr: { customRef: ref("sign", undefined, "InternalService") },
    expect: {
      reason: "UnsupportedKind",
      message:
        /handles apiVersion appstudio.redhat.com\/v1alpha1, kind InternalRequest; got apiVersion "appstudio.redhat.com\/v1alpha1", kind "InternalService"/,
    },
  },
  {
    name: "cr-wrong-version",
    cr: { customRef: ref("sign", "appstudio.redhat.com/v1") },
    expect: {
      reason: "UnsupportedKind",
      message: /got apiVersion "appstudio.redhat.com\/v1", kind "InternalRequest"/,
    },
  },
  {
    name: "cr-wrong-group",
    cr: { customRef: ref("sign", "example.dev/v1alpha1") },
    expect: { reason: "UnsupportedKind", message: /got apiVersion "example.dev\/v1alpha1"/ },
  },
  {
    name: "cr-embedded-wrong-kind",
    cr: { customSpec: { ...ref(undefined, undefined, "PipelineRun"), spec: ok } },
    expect: { reason: "UnsupportedKind", message: /kind "PipelineRun"/ },
  },
  {
    name: "cr-no-name",
    cr: { customRef: ref() },
    expect: { reason: "MissingServiceName", message: /taskRef must name the InternalService to call/ },
  },
  {
    name: "cr-embedded-string",
    cr: embedded("sign"),
    expect: api(
      /spec.customSpec.spec: Invalid value: "string": spec.customSpec.spec in body must be of type object/,
    ),
  },
  {
    name: "cr-embedded-array",
    cr: embedded([ok]),
    expect: api(
      /spec.customSpec.spec: Invalid value: "array": spec.customSpec.spec in body must be of type object/,
    ),
  },
  {
    name: "cr-embedded-empty",
    cr: embedded({}),
    expect: {
      reason: "InvalidRequestSpec",
      message: /taskSpec.spec must set service \(a string\) or pipeline/,
    },
  },
  {
    name: "cr-embedded-missing",
    cr: { customSpec: ref() },
    expect: { reason: "InvalidRequestSpec", message: /taskSpec.spec must be an InternalRequest spec/ },
  },
  {
    name: "cr-embedded-both",
    cr: embedded({ ...ok, ...raw("cluster", { name: "x" }) }),
    expect: { reason: "InvalidRequestSpec", message: /spec must set exactly one of service/ },
  },
  {
    name: "cr-embedded-no-ref",
    cr: embedded({ pipeline: {} }),
    expect: { reason: "InvalidRequestSpec", message: /spec.pipeline.pipelineRef: Required value/ },
  },
  {
    name: "cr-embedded-bad-service",
    cr: embedded({ service: "Sign_It" }),
    expect: { reason: "InvalidRequestSpec", message: /spec.service: Invalid value: "Sign_It"/ },
  },
  {
    name: "cr-embedded-bad-timeout",
    cr: embedded({ ...ok, timeouts: { pipeline: "1 hour" } }),
    expect: { reason: "InvalidRequestSpec", message: /spec.timeouts.pipeline: Invalid value: "1 hour"/ },
  },
  {
    name: "cr-embedded-number-param",
    cr: embedded({ service: "sign", params: { digest: 42 } }),
    expect: { reason: "InvalidRequestSpec", message: /spec.params.digest: Invalid value: "integer"/ },
  },
  {
    name: "cr-embedded-raw-git",
    cr: embedded(raw("git", { url: "https://evil.example.com/x.git" })),
    expect: rejected(/param "url" does not match/),
  },
  {
    name: "cr-embedded-sa",
    cr: embedded({ ...ok, serviceAccount: "cluster-admin" }),
    expect: rejected(/spec.serviceAccount "cluster-admin" is not allowed by InternalService "sign"/),
  },
  {
    name: "cr-bad-param-name",
    cr: { customRef: ref("sign"), params: [{ name: "1bad", value: "x" }] },
    expect: { reason: "InvalidRequestSpec", message: /param names must be/ },
  },
  {
    name: "cr-empty-param-name",
    cr: { customRef: ref("sign"), params: [{ name: "", value: "x" }] },
    expect: { reason: "InvalidParams", message: /every param needs a name/ },
  },
  {
    name: "cr-too-many-params",
    cr: {
      customRef: ref("sign"),
      params: Array.from({ length: 300 }, (_, i) => ({ name: `p${i}`, value: "x" })),
    },
    expect: {
      reason: "InvalidRequestSpec",
      message: /spec.params: Too many: 300: must have at most 128 items/,
    },
  },
  {
    name: "cr-workspace",
    cr: { customRef: ref("sign"), workspaces: [{ name: "w", emptyDir: {} }] },
    expect: { reason: "CustomRunWorkspaceNotSupported", message: /cannot take workspaces/ },
  },
  {
    name: "cr-unicode-service",
    cr: { customRef: ref("s\u00efgn") },
    expect: { reason: "InvalidRequestSpec", message: /spec.service: Invalid value: / },
  },
  {
    name: "cr-long-service",
    cr: { customRef: ref("s".repeat(254)) },
    expect: { reason: "InvalidRequestSpec", message: /spec.service: Too long/ },
  },
  // Not decodable by Tekton's Go types: served from the second workspace.
  {
    name: "cr-timeout-word",
    where: "odd",
    cr: { customRef: ref("sign"), timeout: "soon" },
    expect: {
      reason: "InvalidTimeout",
      message: /^spec.timeout: invalid duration "soon": expected a number/,
    },
  },
  {
    name: "cr-timeout-spaces",
    where: "odd",
    cr: { customRef: ref("sign"), timeout: "1 hour" },
    expect: { reason: "InvalidTimeout", message: /spec.timeout: invalid duration "1 hour"/ },
  },
  {
    name: "cr-timeout-negative",
    where: "odd",
    cr: { customRef: ref("sign"), timeout: "-5m" },
    expect: { reason: "InvalidTimeout", message: /^spec.timeout: "-5m" must not be negative$/ },
  },
  {
    name: "cr-timeout-overflow",
    where: "odd",
    cr: { customRef: ref("sign"), timeout: "99999999h" },
    expect: { reason: "InvalidTimeout", message: /longer than Go allows/ },
  },
  {
    name: "cr-timeout-number",
    cr: { customRef: ref("sign"), timeout: 300 },
    expect: api(/spec.timeout: Invalid value: "integer": spec.timeout in body must be of type string/),
  },
  {
    name: "cr-params-object",
    cr: { customRef: ref("sign"), params: { digest } },
    expect: api(/spec.params: Invalid value: "object": spec.params in body must be of type array/),
  },
  {
    name: "cr-params-null-item",
    cr: { customRef: ref("sign"), params: [null] },
    expect: api(/spec.params\[0\]: Invalid value: "null": spec.params\[0\] in body must be of type object/),
  },
  {
    name: "cr-param-no-value",
    cr: { customRef: ref("sign"), params: [{ name: "digest" }] },
    expect: api(/spec.params\[0\].value: Required value/),
  },
  {
    name: "cr-ref-name-number",
    cr: { customRef: { ...ref(), name: 7 } },
    expect: api(
      /spec.customRef.name: Invalid value: "integer": spec.customRef.name in body must be of type string/,
    ),
  },
  {
    name: "cr-number-param",
    where: "odd",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: 42 }] },
    expect: rejected(/param "digest" must match pattern/),
  },
  {
    name: "cr-null-param",
    cr: { customRef: ref("sign"), params: [{ name: "digest", value: null }] },
    expect: api(/spec.params\[0\].value: Required value/),
  },
];

// Characters a message must never carry raw (they could hide or reorder text in a terminal or UI).
const UNSAFE: [number, number][] = [
  [0x00, 0x08],
  [0x0b, 0x1f],
  [0x7f, 0x9f],
  [0x200b, 0x200f],
  [0x2028, 0x202e],
  [0x2060, 0x2069],
  [0xfeff, 0xfeff],
];
const hasUnsafe = (s: string) =>
  Array.from(s).some((c) =>
    UNSAFE.some(([lo, hi]) => (c.codePointAt(0) ?? 0) >= lo && (c.codePointAt(0) ?? 0) <= hi),
  );

describe("bad input corpus", () => {
  const planes = testPlanes();
  let f: Fixture;
  let oddNs: string;
  let other: string;
  const crs = new ResourceClient<V1beta1CustomRun>(planes.publicAdmin, customRuns, "test");
  const oddCrs = new ResourceClient<V1beta1CustomRun>(planes.privateAdmin, customRuns, "test");
  const timerWarnings: string[] = [];
  const onWarning = (w: Error) => {
    if (w.name === "TimeoutOverflowWarning") timerWarnings.push(w.message);
  };
  const objectName = (c: Case) => c.objectName ?? c.name;
  const nsOf = (c: Case) =>
    c.where === "odd" ? oddNs : c.where === "other" ? other : (f.namespaces[0] as string);
  const createCase = (c: Case): Promise<unknown> => {
    const metadata = { name: objectName(c), ...(c.labels ? { labels: c.labels } : {}) };
    if (c.cr !== undefined) {
      const client = c.where === "odd" ? oddCrs : crs;
      return client.create(nsOf(c), {
        apiVersion: "tekton.dev/v1beta1",
        kind: "CustomRun",
        metadata,
        spec: c.cr,
      } as V1beta1CustomRun);
    }
    return f.requests.create(nsOf(c), {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata,
      ...(c.ir !== undefined ? { spec: c.ir } : {}),
    } as InternalRequest);
  };

  before(async () => {
    process.on("warning", onWarning);
    oddNs = await createNamespace(planes.privateAdmin, uniqueName("team-odd"));
    f = await Fixture.create({
      namespaces: 2,
      config: (ns): InternalServicesConfigSpec => ({
        allowList: [ns[0] as string, `odd/${oddNs}`],
        allowedPipelineSources: [
          {
            resolver: "git",
            params: {
              url: "https://git.example.com/releng/*.git",
              revision: "v*",
              pathInRepo: "pipelines/**",
            },
          },
          {
            resolver: "bundles",
            params: { bundle: "quay.example.com/releng/pipelines@sha256:*", name: "*", kind: "pipeline" },
          },
          { resolver: "cluster", params: { name: "release-*", namespace: "releng", kind: "pipeline" } },
          { resolver: "http", params: { url: "https://pipelines.example.com/releng/**" } },
          { resolver: "http", params: { url: "https://*.internal.example.com/releng/**" } },
        ],
        // No maximum for raw requests' timeouts here: acc-huge-timeout checks the longest one.
        rawPipelineRequests: { timeouts: { maximum: "0s" } },
        propagateLabels: { keys: ["team.example.com/owner"] },
        allowedServiceAccounts: ["raw-runner"],
      }),
      services,
      startController: false,
    });
    other = f.namespaces[1] as string;
    await f.startController({
      workspaces: [
        { name: "public", kubeConfig: f.publicKc, namespaces: f.namespaces },
        { name: "odd", kubeConfig: planes.privateAdmin, namespaces: [oddNs] },
      ],
    });
  });
  after(async () => {
    process.off("warning", onWarning);
    await f?.stop();
  });

  it(`has at least 50 cases, with unique names`, () => {
    assert.ok(cases.length >= 50, `${cases.length} cases`);
    assert.equal(new Set(cases.map((c) => `${c.cr ? "cr" : "ir"}/${objectName(c)}`)).size, cases.length);
  });

  it("the API server refuses what the CRD forbids, with a specific 422", async () => {
    const failures: string[] = [];
    for (const c of cases.filter((c) => "api" in c.expect)) {
      const expect = c.expect as { api: number; message: RegExp };
      const status = await createCase(c).then(
        () => undefined,
        (err: unknown) => apiStatus(err),
      );
      if (status?.code !== expect.api || !expect.message.test(status.message))
        failures.push(
          `${c.name}: got ${status?.code} ${JSON.stringify(status?.message)}, want ${expect.message}`,
        );
    }
    assert.deepEqual(failures, []);
  });

  it("ends every other bad request and CustomRun with a specific reason and message, and runs only the accepted ones", async () => {
    const created = cases.filter((c) => !("api" in c.expect));
    await Promise.all(created.map((c) => createCase(c)));
    const pending = new Map(created.map((c) => [c.name, c]));
    const seen = new Map<string, { reason?: string; status?: string; message?: string; started?: boolean }>();
    await eventually(
      async () => {
        const [reqs, others, odd, crList, oddCrList] = await Promise.all([
          f.requests.list(f.namespaces[0] as string),
          f.requests.list(other),
          f.requests.list(oddNs),
          crs.list(f.namespaces[0] as string),
          oddCrs.list(oddNs),
        ]);
        const byName = new Map<
          string,
          { reason?: string; status?: string; message?: string; started?: boolean }
        >();
        for (const r of [...reqs.items, ...others.items, ...odd.items]) {
          const cond = r.status?.conditions?.[0];
          byName.set(`ir/${r.metadata.namespace}/${r.metadata.name}`, {
            ...cond,
            started: r.status?.pipelineRun !== undefined,
          });
        }
        for (const r of [...crList.items, ...oddCrList.items]) {
          byName.set(`cr/${r.metadata?.namespace}/${r.metadata?.name}`, { ...r.status?.conditions?.[0] });
        }
        for (const c of pending.values()) {
          const state = byName.get(`${c.cr ? "cr" : "ir"}/${nsOf(c)}/${objectName(c)}`);
          seen.set(c.name, state ?? {});
          const done = "accepted" in c.expect ? state?.started : state?.status && state.status !== "Unknown";
          if (done) pending.delete(c.name);
        }
        return pending.size === 0;
      },
      "every case settled",
      40_000,
      250,
    ).catch((err: Error) => {
      const left = [...pending.keys()].map((n) => `${n}: ${JSON.stringify(seen.get(n))}`);
      throw new Error(`${err.message}\nnot settled:\n${left.join("\n")}`);
    });

    const failures: string[] = [];
    for (const c of created) {
      const state = seen.get(c.name) ?? {};
      const message = state.message ?? "";
      if (hasUnsafe(message))
        failures.push(`${c.name}: message has a raw control character: ${JSON.stringify(message)}`);
      if ("accepted" in c.expect) {
        if (state.reason !== "Running")
          failures.push(`${c.name}: expected Running, got ${state.reason}: ${message}`);
        if (c.expect.message && !c.expect.message.test(message))
          failures.push(`${c.name}: message ${JSON.stringify(message)} does not match ${c.expect.message}`);
        continue;
      }
      const expect = c.expect as { reason: string; message: RegExp };
      if (state.status !== "False" || state.reason !== expect.reason)
        failures.push(
          `${c.name}: expected False/${expect.reason}, got ${state.status}/${state.reason}: ${message}`,
        );
      else if (!expect.message.test(message))
        failures.push(`${c.name}: message ${JSON.stringify(message)} does not match ${expect.message}`);
    }
    assert.deepEqual(failures, []);

    // No write in the private cluster but the accepted cases' runs.
    const runs = await f.tekton.list();
    const requestOf = (r: V1PipelineRun) => r.metadata?.annotations?.[`${labelPrefix}/request`];
    const expected = cases
      .filter((c) => "accepted" in c.expect)
      .map((c) => `${nsOf(c)}/${objectName(c)}`)
      .sort();
    assert.deepEqual(runs.map(requestOf).sort(), expected);
    // No request carries a finalizer (deletion is the run sweep's), rejected or accepted.
    const reqs = (await f.requests.list(f.namespaces[0] as string)).items;
    assert.deepEqual(
      reqs.filter((r) => r.metadata.finalizers?.length).map((r) => r.metadata.name),
      [],
    );
  });

  it("runs the accepted edge cases safely: system labels win, values pass verbatim, limits hold", async () => {
    const ns = f.namespaces[0] as string;
    const runs = new Map(
      (await f.tekton.list()).map((r) => [r.metadata?.annotations?.[`${labelPrefix}/request`], r]),
    );
    const run = (name: string) => {
      const r = runs.get(`${ns}/${name}`);
      assert.ok(r, `run of ${name}`);
      return r;
    };

    // Label override attempts: the system labels win; a key the config allows is copied.
    const labelled = run("acc-labels");
    const req = await f.requests.get(ns, "acc-labels");
    const labels = labelled.metadata?.labels ?? {};
    assert.equal(labels["app.kubernetes.io/managed-by"], "internal-service-controller");
    assert.equal(labels[`${labelPrefix}/request-uid`], req.metadata.uid);
    assert.equal(labels[`${labelPrefix}/name`], "acc-labels");
    assert.equal(labels[`${labelPrefix}/workspace`], "public");
    assert.equal(labels[`${labelPrefix}/service`], "sign");
    assert.equal(labels["tekton.dev/pipeline"], undefined, "tekton.dev labels are never copied");
    assert.equal(labels["team.example.com/owner"], "release");
    // Capped timeout.
    assert.equal(run("acc-capped").spec?.timeouts?.pipeline, "2h0m0s");
    // Longest Go duration, no service maximum: the run gets it, and no timer overflows.
    assert.equal(run("acc-huge-timeout").spec?.timeouts?.pipeline, "2562047h0m0s");
    // Exactly what was checked reaches the run: a canonical integer, a URL as parsed.
    assert.deepEqual(run("acc-int-canonical").spec?.params, [
      { name: "count", value: "5" },
      { name: "digest", value: digest },
    ]);
    assert.deepEqual(run("acc-url-canonical").spec?.pipelineRef?.params, [
      { name: "url", value: "https://team-a.internal.example.com/releng/p.yaml" },
    ]);
    // Unicode and control characters reach the PipelineRun verbatim, as a Tekton param value.
    const note = unicodeNote;
    assert.deepEqual(run("acc-unicode").spec?.params, [
      { name: "digest", value: digest },
      { name: "note", value: note },
    ]);
    // A 252-character request name: a short run name, the name label left out, the annotation whole.
    const long = run(longName);
    assert.ok((long.metadata?.name ?? "").length <= 63, long.metadata?.name);
    assert.equal(long.metadata?.labels?.[`${labelPrefix}/name`], undefined);
    assert.equal(long.metadata?.labels?.[`${labelPrefix}/namespace`], ns);

    // Complete them: an oversized result is dropped with a message; an oversized failure message is cut.
    await f.tekton.succeed(labelled.metadata?.name as string, [
      { name: "small", value: "ok" },
      { name: "huge", value: "x".repeat(100 * 1024) },
    ]);
    const plainOnes = [
      "acc-capped",
      "acc-huge-timeout",
      "acc-unicode",
      "acc-int-canonical",
      "acc-url-canonical",
      longName,
    ];
    for (const name of plainOnes)
      await f.tekton.succeed(run(name).metadata?.name as string, [{ name: "r", value: "\u202e🚀" }]);
    await f.tekton.fail(run("acc-long-failure").metadata?.name as string, {
      name: "sign",
      reason: "Failed",
      message: `HSM said: ${"e".repeat(40_000)}`,
    });

    const big = await f.waitForReason("acc-labels", "Succeeded");
    assert.deepEqual(big.status?.results, { small: "ok" });
    assert.deepEqual(big.status?.droppedResults, ["huge"]);
    assert.match(big.status?.conditions?.[0]?.message ?? "", /results dropped, over the size limit: huge/);
    for (const name of plainOnes) {
      const done = await f.waitForReason(name, "Succeeded");
      assert.deepEqual(done.status?.results, { r: "\u202e🚀" });
    }
    const failed = await f.waitForReason("acc-long-failure", "Failed");
    const message = failed.status?.conditions?.[0]?.message ?? "";
    assert.match(message, /^task sign failed: Failed: HSM said: e+…$/);
    assert.ok(Array.from(message).length <= maxMessageChars, `${message.length} characters`);
  });

  it("stays up: ready, no runaway timers, and a valid request afterwards still succeeds", async () => {
    assert.equal(f.manager?.isReady(), true);
    assert.deepEqual(timerWarnings, [], "no timer was asked to wait longer than Node allows");
    await eventually(async () => (await f.tekton.list()).length === 0, "finished runs collected");
    await f.createRequest("after-all", ok);
    const started = await f.waitForRequest(
      "after-all",
      (r) => r.status?.pipelineRun !== undefined,
      "started",
    );
    await f.tekton.succeed(started.status?.pipelineRun?.split("/")[1] as string, [
      { name: "signature", value: "sig" },
    ]);
    const done = await f.waitForReason("after-all", "Succeeded");
    assert.deepEqual(done.status?.results, { signature: "sig" });
  });
});
