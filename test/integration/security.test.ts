// Security properties: the controller needs only the least-privilege Roles shipped in deploy/ (checked
// with SelfSubjectAccessReview, then used to run it), sensitive param values never reach logs, Events or
// status, and requests from namespaces that are not allowed cause no write at all in the private cluster.
// Then hostile tenants: memory, limits, metrics, adoption, public status, nesting, raw caps, backtracking.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Deployment,
  type V1Lease,
  type V1ResourceAttributes,
} from "@kubernetes/client-node";
import { ensureTools } from "../../envtest/binaries.ts";
import { mintIdentity, readYamlObjects } from "../../envtest/cluster.ts";
import { runCommand } from "../../envtest/run-command.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus, ignoreNotFound } from "../../src/api/errors.ts";
import { customRuns, leases as leaseType, ResourceClient } from "../../src/api/resources.ts";
import type {
  InternalRequest,
  InternalServiceSpec,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1beta1CustomRunSpec } from "../../src/generated/tekton.ts";
import { labelPrefix } from "../../src/requests/naming.ts";
import { servingAnnotation } from "../../src/runtime/heartbeat.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { waitUntilIdle } from "../support/idle.ts";
import { LiveRuns } from "../support/live-runs.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const vault: InternalServiceSpec = {
  pipeline: { pipelineName: "vault" },
  paramsSchema: {
    type: "object",
    required: ["digest"],
    properties: {
      digest: { type: "string", pattern: "^sha256:[a-f0-9]+$" },
      token: { type: "string", pattern: "^tok-[a-f0-9-]+$", minLength: 12 },
    },
  },
  sensitiveParams: ["token"],
};
const digest = "sha256:abcdef12";
const ref = (name: string) => ({
  apiVersion: "appstudio.redhat.com/v1alpha1",
  kind: "InternalRequest",
  name,
});

describe("security", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  const proxies: FaultProxy[] = [];
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
    await Promise.all(proxies.map((p) => p.stop()));
  });
  const fixture = async (opts: Parameters<typeof Fixture.create>[0]) => {
    const f = await Fixture.create({ ...opts, startController: false });
    fixtures.push(f);
    return f;
  };

  const restricted = (f: Fixture) => shippedIdentities(planes, f);

  const customRunClient = (f: Fixture) =>
    new ResourceClient<V1beta1CustomRun>(f.publicKc, customRuns, "test");
  const createCustomRun = (f: Fixture, name: string, spec: V1beta1CustomRunSpec, ns = f.namespaces[0]) =>
    customRunClient(f).create(ns as string, {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name },
      spec,
    });
  const waitCustomRun = (f: Fixture, name: string, ns = f.namespaces[0] as string) =>
    eventually(async () => {
      const r = await customRunClient(f).get(ns, name);
      const c = r.status?.conditions?.[0];
      return c && c.status !== "Unknown" ? r : undefined;
    }, `CustomRun ${name} done`);
  /** The request's internal PipelineRun, once the controller recorded it. */
  const runOf = async (f: Fixture, name: string, ns = f.namespaces[0] as string) => {
    const r = await f.waitForRequest(name, (x) => x.status?.pipelineRun !== undefined, "started", ns);
    return r.status?.pipelineRun?.split("/")[1] as string;
  };

  it("the shipped Roles grant exactly what the controller needs, and it works under them", async () => {
    const f = await fixture({ namespaces: 2, config: (ns) => ({ allowList: ns }), services: { vault } });
    const { remote, priv, heartbeatNamespace } = await restricted(f);
    const ns = f.namespaces[0] as string;
    type Check = [allowed: boolean, attrs: V1ResourceAttributes];
    const ir = "appstudio.redhat.com";
    const verbs = (allowed: boolean, group: string, resource: string, list: string[], namespace = ns) =>
      list.map((verb): Check => {
        const [res, sub] = resource.split("/");
        return [allowed, { group, resource: res, subresource: sub, verb, namespace }];
      });
    const lease = {
      group: "coordination.k8s.io",
      resource: "leases",
      namespace: heartbeatNamespace,
      name: "internal-service-controller",
    };
    const publicChecks: Check[] = [
      ...verbs(true, ir, "internalrequests", ["get", "list", "watch", "patch", "create"]),
      ...verbs(true, ir, "internalrequests", ["get", "list", "watch"], f.namespaces[1]),
      ...verbs(true, ir, "internalrequests/status", ["get", "patch"]),
      ...verbs(true, ir, "internalrequests/finalizers", ["update"]),
      ...verbs(true, "tekton.dev", "customruns", ["get", "list", "watch"]),
      ...verbs(true, "tekton.dev", "customruns/status", ["get", "patch"]),
      ...verbs(true, "", "events", ["create", "patch"]),
      // Its heartbeat: create a Lease, renew its own; nothing else on Leases.
      ...verbs(true, "coordination.k8s.io", "leases", ["create"], heartbeatNamespace),
      [true, { ...lease, verb: "patch" }],
      [false, { ...lease, verb: "delete" }],
      [false, { ...lease, verb: "update" }],
      [false, { ...lease, name: "someone-elses", verb: "patch" }],
      ...verbs(false, "coordination.k8s.io", "leases", ["list", "watch", "create"]),
      // No secrets, no config, no pods, no changes to anyone's spec beyond what the bridge needs.
      ...verbs(false, "", "secrets", ["get", "list", "watch", "create"]),
      ...verbs(false, "", "configmaps", ["get", "list"]),
      ...verbs(false, "", "pods", ["list", "create"]),
      ...verbs(false, "", "pods/exec", ["create", "get"]),
      ...verbs(false, "", "serviceaccounts/token", ["create"]),
      ...verbs(false, "tekton.dev", "customruns", ["update", "patch", "create", "delete"]),
      ...verbs(false, "tekton.dev", "customruns/status", ["update"]),
      ...verbs(false, "tekton.dev", "pipelineruns", ["create", "get"]),
      ...verbs(false, ir, "internalrequests", ["update", "delete", "deletecollection"]),
      ...verbs(false, ir, "internalrequests/status", ["update"]),
      ...verbs(false, ir, "internalservices", ["get", "list"]),
      ...verbs(false, "", "events", ["delete", "list"]),
      ...verbs(false, "rbac.authorization.k8s.io", "rolebindings", ["create"]),
      ...verbs(false, "", "namespaces", ["list", "watch", "get"], ""),
      // Only where it is bound.
      ...verbs(false, ir, "internalrequests", ["list", "get"], "default"),
    ];
    const privateChecks: Check[] = [
      ...verbs(true, ir, "internalservices", ["get", "list", "watch"], f.privateNs),
      ...verbs(true, ir, "internalservicesconfigs", ["get", "list", "watch"], f.privateNs),
      ...verbs(
        true,
        "tekton.dev",
        "pipelineruns",
        ["get", "list", "watch", "create", "patch", "delete"],
        f.privateNs,
      ),
      ...verbs(true, "tekton.dev", "taskruns", ["get"], f.privateNs),
      ...verbs(true, "coordination.k8s.io", "leases", ["get", "create", "update"], f.privateNs),
      ...verbs(true, "", "events", ["create", "patch"], f.privateNs),
      ...verbs(false, ir, "internalservices", ["create", "update", "patch", "delete"], f.privateNs),
      ...verbs(false, ir, "internalservicesconfigs", ["create", "update", "patch", "delete"], f.privateNs),
      ...verbs(false, "", "secrets", ["get", "list", "watch"], f.privateNs),
      ...verbs(false, "", "configmaps", ["get", "list"], f.privateNs),
      ...verbs(false, "", "pods/exec", ["create"], f.privateNs),
      ...verbs(false, "", "serviceaccounts", ["get", "create"], f.privateNs),
      ...verbs(false, "tekton.dev", "pipelineruns", ["update", "deletecollection"], f.privateNs),
      ...verbs(false, "tekton.dev", "pipelineruns/status", ["patch", "update"], f.privateNs),
      ...verbs(false, "tekton.dev", "taskruns", ["list", "create", "delete", "patch"], f.privateNs),
      ...verbs(false, "tekton.dev", "pipelines", ["create", "update"], f.privateNs),
      ...verbs(false, "coordination.k8s.io", "leases", ["delete"], f.privateNs),
      // Nothing outside its namespace.
      ...verbs(false, "tekton.dev", "pipelineruns", ["create", "list"], "default"),
      ...verbs(false, ir, "internalservices", ["list"], "default"),
      ...verbs(false, "", "namespaces", ["list", "get"], ""),
    ];
    const review = async (kc: KubeConfig, checks: Check[], side: string) => {
      const api = kc.makeApiClient(AuthorizationV1Api);
      const wrong: string[] = [];
      await Promise.all(
        checks.map(async ([want, attrs]) => {
          const r = await api.createSelfSubjectAccessReview({
            body: {
              apiVersion: "authorization.k8s.io/v1",
              kind: "SelfSubjectAccessReview",
              spec: { resourceAttributes: attrs },
            },
          });
          if ((r.status?.allowed ?? false) !== want) {
            const what = `${attrs.verb} ${attrs.group || "core"}/${attrs.resource}${attrs.subresource ? `/${attrs.subresource}` : ""} in ${JSON.stringify(attrs.namespace)}`;
            wrong.push(`${side}: ${what} should be ${want ? "allowed" : "denied"}`);
          }
        }),
      );
      return wrong;
    };
    assert.deepEqual(
      [
        ...(await review(remote.kubeConfig, publicChecks, "public")),
        ...(await review(priv.kubeConfig, privateChecks, "private")),
      ].sort(),
      [],
    );
    // And in fact: a secret in the served namespace is out of reach.
    await assert.rejects(
      remote.kubeConfig.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: ns }),
      (err: unknown) => apiStatus(err)?.code === 403,
    );

    // The controller under exactly these identities: a request and a CustomRun to success.
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: remote.kubeConfig, namespaces: f.namespaces }],
      privateKubeConfig: priv.kubeConfig,
      heartbeat: {
        namespace: heartbeatNamespace,
        name: lease.name,
        identity: "least-privilege",
        intervalMs: 1000,
      },
    });
    // Its heartbeat is renewed, and any authenticated caller (here: an identity with no Role) reads it.
    const nobody = await mintIdentity(planes.public, planes.publicAdmin, { namespace: ns, name: "nobody" });
    const leases = new ResourceClient<V1Lease & { metadata: object }>(nobody.kubeConfig, leaseType);
    const first = await eventually(
      () => ignoreNotFound(leases.get(heartbeatNamespace, lease.name)),
      "heartbeat Lease written",
    );
    assert.equal(first.spec?.holderIdentity, "least-privilege");
    assert.equal(first.spec?.leaseDurationSeconds, 3);
    assert.equal(
      first.metadata?.annotations?.[servingAnnotation],
      "InternalRequests and InternalRequest CustomRuns in 2 listed namespaces of workspace public",
    );
    await eventually(async () => {
      const now = await leases.get(heartbeatNamespace, lease.name);
      return String(now.spec?.renewTime) > String(first.spec?.renewTime) ? true : undefined;
    }, "heartbeat renewed");
    await f.createRequest("least-ir", { service: "vault", params: { digest } });
    await f.tekton.succeed(await runOf(f, "least-ir"), [{ name: "signature", value: "sig-ir" }]);
    assert.deepEqual((await f.waitForReason("least-ir", "Succeeded")).status?.results, {
      signature: "sig-ir",
    });

    await createCustomRun(f, "least-cr", {
      customRef: ref("vault"),
      params: [{ name: "digest", value: digest }],
    });
    await f.tekton.succeed(await runOf(f, "least-cr-0"), [{ name: "signature", value: "sig-cr" }]);
    const done = await waitCustomRun(f, "least-cr");
    assert.equal(done.status?.conditions?.[0]?.status, "True", JSON.stringify(done.status?.conditions));
    assert.deepEqual(done.status?.results, [{ name: "signature", value: "sig-cr" }]);
    // Retention 0: the finished runs are deleted with the same identity.
    await eventually(async () => (await f.tekton.list()).length === 0, "finished runs deleted");
  });

  it("never puts a sensitive param value or a Secret into logs, Events or status", async () => {
    const f = await fixture({
      namespaces: 2,
      config: (ns) => ({ allowList: [ns[0] as string] }),
      services: { vault },
    });
    const [ns, outside] = f.namespaces as [string, string];
    const { remote, priv } = await restricted(f);
    const secret = (label: string) => `tok-${label}-${randomUUID()}`;
    const secrets = {
      ok: secret("0a"),
      // Breaks the sensitive param's own pattern: the message must name the rule, not the value.
      schema: `bad-${randomUUID()}`,
      unknown: secret("0b"),
      fails: secret("0c"),
      outsider: secret("0d"),
      crOk: secret("0e"),
      crBad: `BAD-${randomUUID()}`,
      crLong: `tok-${randomUUID()}${"f".repeat(65_536)}`,
      k8s: `k8s-secret-${randomUUID()}`,
    };
    await f.publicKc.makeApiClient(CoreV1Api).createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "release-credentials" }, stringData: { password: secrets.k8s } },
    });

    const controller = await ControllerProcess.start({
      remoteKubeconfig: remote.kubeconfigPath,
      workspaces: [`public=${ns},${outside}`],
      privateKubeconfig: priv.kubeconfigPath,
      namespace: f.privateNs,
      extraArgs: ["--log-level=trace"],
    });
    after(() => controller.kill());
    await controller.waitForReady();

    const request = (name: string, token: string, extra: Record<string, string> = {}, where = ns) =>
      f.createRequest(name, { service: "vault", params: { digest, token, ...extra } }, { namespace: where });
    await request("ok", secrets.ok);
    await request("schema", secrets.schema);
    await request("unknown", secrets.unknown, { evil: "1" });
    await request("fails", secrets.fails);
    await request("outsider", secrets.outsider, {}, outside);
    const crParams = (token: string) => [
      { name: "digest", value: digest },
      { name: "token", value: token },
    ];
    await createCustomRun(f, "cr-ok", { customRef: ref("vault"), params: crParams(secrets.crOk) });
    await createCustomRun(f, "cr-bad", { customRef: ref("vault"), params: crParams(secrets.crBad) });
    await createCustomRun(f, "cr-long", { customRef: ref("vault"), params: crParams(secrets.crLong) });

    // Where the value must go: the internal PipelineRun's params.
    const okRun = await runOf(f, "ok");
    const pr = await f.tekton.runs.get(f.privateNs, okRun);
    assert.ok(pr.spec?.params?.some((p) => p.name === "token" && p.value === secrets.ok));
    await f.tekton.succeed(okRun, [{ name: "signature", value: "sig" }]);
    await f.tekton.fail(await runOf(f, "fails"), {
      name: "sign",
      reason: "Failed",
      message: "signing key revoked",
    });
    await f.tekton.succeed(await runOf(f, "cr-ok-0"), [{ name: "signature", value: "sig-cr" }]);

    const ended = {
      ok: await f.waitForReason("ok", "Succeeded"),
      schema: await f.waitForReason("schema", "Rejected"),
      unknown: await f.waitForReason("unknown", "Rejected"),
      fails: await f.waitForReason("fails", "Failed"),
      outsider: await f.waitForReason("outsider", "Rejected", outside),
    };
    assert.match(ended.schema.status?.conditions?.[0]?.message ?? "", /param "token" must match pattern/);
    assert.match(ended.unknown.status?.conditions?.[0]?.message ?? "", /unknown param "evil"/);
    assert.match(ended.fails.status?.conditions?.[0]?.message ?? "", /signing key revoked/);
    const crs = {
      ok: await waitCustomRun(f, "cr-ok"),
      bad: await waitCustomRun(f, "cr-bad"),
      long: await waitCustomRun(f, "cr-long"),
    };
    assert.equal(crs.ok.status?.conditions?.[0]?.reason, "Succeeded");
    assert.equal(crs.bad.status?.conditions?.[0]?.reason, "Rejected");
    assert.equal(crs.long.status?.conditions?.[0]?.reason, "InvalidRequestSpec");
    assert.match(crs.long.status?.conditions?.[0]?.message ?? "", /spec.params.token: Too long/);

    // Everything the controller wrote or said, as text.
    const core = f.publicKc.makeApiClient(CoreV1Api);
    const events = [
      ...(await core.listNamespacedEvent({ namespace: ns })).items,
      ...(await core.listNamespacedEvent({ namespace: outside })).items,
    ];
    assert.ok(
      events.some((e) => e.reason === "Rejected"),
      "Events were recorded",
    );
    const requests = [...(await f.requests.list(ns)).items, ...(await f.requests.list(outside)).items];
    const runs = (await customRunClient(f).list(ns)).items;
    assert.match(controller.logs, /request rejected/);
    const exposed: Record<string, string> = {
      logs: controller.logs,
      events: JSON.stringify(events),
      "request status": JSON.stringify(requests.map((r) => r.status)),
      "customrun status": JSON.stringify(runs.map((r) => r.status)),
    };
    const leaks: string[] = [];
    for (const [what, text] of Object.entries(exposed)) {
      for (const [name, value] of Object.entries(secrets)) {
        const needle = value.slice(0, 40); // the unique head: long values may be cut
        if (text.includes(needle) || text.includes(Buffer.from(value).toString("base64").slice(0, 40)))
          leaks.push(`${name} in ${what}`);
      }
    }
    assert.deepEqual(leaks, []);
  });

  it("causes zero writes in the private cluster for requests from namespaces that are not allowed", async () => {
    const f = await fixture({
      namespaces: 2,
      config: (ns) => ({ allowList: [ns[0] as string] }),
      services: { vault, fenced: { ...vault, allowedNamespaces: ["nobody"] } },
    });
    const [allowed, outside] = f.namespaces as [string, string];
    const { remote, priv } = await restricted(f);
    const proxy = await FaultProxy.start(planes.private);
    proxies.push(proxy);
    const token = priv.kubeConfig.getCurrentUser()?.token as string;
    assert.ok(token, "the private identity authenticates with a token");
    const kubeconfig = await proxy.writeKubeconfig(
      await mkdtemp(join(tmpdir(), "isc-sec-")),
      "private",
      token,
    );
    const viaProxy = new KubeConfig();
    viaProxy.loadFromFile(kubeconfig);
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: remote.kubeConfig, namespaces: f.namespaces }],
      privateKubeConfig: viaProxy,
    });
    assert.ok(proxy.stats.requests > 0, "the controller reaches the private cluster through the proxy");
    const writesBefore = proxy.stats.writes;

    const burst = [
      ...Array.from({ length: 20 }, (_, i) => [`outsider-${i}`, outside, "vault"] as const),
      ...Array.from({ length: 10 }, (_, i) => [`fenced-${i}`, allowed, "fenced"] as const),
    ];
    await Promise.all(
      burst.map(([name, ns, service]) =>
        f.createRequest(name, { service, params: { digest, token: "tok-0123456789ab" } }, { namespace: ns }),
      ),
    );
    for (const [name, ns] of burst) {
      const r = await f.waitForReason(name, "Rejected", ns);
      assert.match(r.status?.conditions?.[0]?.message ?? "", /allowList|allowedNamespaces/);
      assert.equal(r.metadata.finalizers, undefined, `${name} got no finalizer`);
    }
    // Count only once every reconcile the burst causes has happened, including those of the
    // controller's own status writes coming back through its watches. A last outsider per namespace,
    // created after all of those writes, arrives on the same watch streams after them; once it is
    // rejected and the controller's queues have processed every key they accepted, no event of the
    // burst is left unreconciled, and no reconcile failed or asked to run again later.
    const last = [
      ["outsider-last", outside, "vault"],
      ["fenced-last", allowed, "fenced"],
    ] as const;
    for (const [name, ns, service] of last) {
      await f.createRequest(name, { service, params: { digest } }, { namespace: ns });
      await f.waitForReason(name, "Rejected", ns);
    }
    assert.ok(f.manager, "the controller runs in process");
    const settled = await waitUntilIdle(
      f.manager.metrics,
      "the controller to process every reconcile of the burst",
    );
    assert.ok(settled.processed >= burst.length + last.length, JSON.stringify(settled));
    assert.equal(settled.scheduledAgain, 0, `no reconcile will come back later: ${JSON.stringify(settled)}`);
    assert.equal(proxy.stats.writes - writesBefore, 0, "no write in the private cluster");
    assert.equal(proxy.stats.writes, 0, "not even at start-up");
    assert.deepEqual(await f.tekton.list(), []);

    // The counter does count: an allowed request writes its PipelineRun through the same proxy.
    await f.createRequest("insider", { service: "vault", params: { digest } }, { namespace: allowed });
    const [run] = await f.tekton.waitForRuns(1);
    assert.equal(run?.metadata?.annotations?.[`${labelPrefix}/request`], `${allowed}/insider`);
    assert.ok(proxy.stats.writes >= 1, `${proxy.stats.writes} writes`);
  });
});

// --- hostile tenants -----------------------------------------------------------------------------
// Attacks a tenant can make with what the shipped tenant Roles allow, against one controller process
// running under the shipped controller Roles with the Deployment's heap flags. Each test checks that
// the controller is still the same process and healthy afterwards, the exact outcome, and the writes
// that reached the private cluster (through a counting proxy).

/** The Deployment's NODE_OPTIONS and memory limit (MiB), as shipped. */
async function deploymentMemory(): Promise<{ nodeOptions: string; limitMb: number }> {
  const [deployment] = (await readYamlObjects(
    fileURLToPath(new URL("../../deploy/private/deployment.yaml", import.meta.url)),
  )) as V1Deployment[];
  const container = deployment?.spec?.template.spec?.containers[0];
  const nodeOptions = container?.env?.find((e) => e.name === "NODE_OPTIONS")?.value ?? "";
  const limit = String(container?.resources?.limits?.memory ?? "");
  assert.match(limit, /^\d+Mi$/, "the Deployment's memory limit in Mi");
  return { nodeOptions, limitMb: Number.parseInt(limit, 10) };
}

describe("hostile tenants", () => {
  const planes = testPlanes();
  let f: Fixture;
  let proxy: FaultProxy;
  let controller: ControllerProcess;
  let startArgs: Parameters<typeof ControllerProcess.start>[0];
  let deployment: { nodeOptions: string; limitMb: number };
  let pid: number | undefined;
  let allowed: string;
  let second: string;
  let outside: string;
  const capped = 2;
  const rawCap = 1;

  const start = async () => {
    controller = await ControllerProcess.start(startArgs);
    pid = controller.child.pid;
    await controller.waitForReady(60_000);
  };
  const stillUp = async () => {
    assert.equal(
      controller.child.exitCode,
      null,
      `controller exited; logs:\n${controller.logs.slice(-4000)}`,
    );
    assert.equal(controller.child.pid, pid);
    assert.equal((await controller.get("/healthz")).status, 200);
  };
  /** Peak resident memory of the controller process so far (MB), as the kernel counts it. */
  const peakRssMb = async () => {
    const status = await readFile(`/proc/${controller.child.pid}/status`, "utf8");
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
  };
  const customRunClient = () => new ResourceClient<V1beta1CustomRun>(f.publicKc, customRuns, "tenant");
  const createCustomRun = (name: string, spec: unknown, ns = allowed, labels?: Record<string, string>) =>
    customRunClient().create(ns, {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name, ...(labels ? { labels } : {}) },
      spec: spec as V1beta1CustomRunSpec,
    });
  const waitCustomRun = (name: string, ns = allowed) =>
    eventually(async () => {
      const r = await customRunClient().get(ns, name);
      const c = r.status?.conditions?.[0];
      return c && c.status !== "Unknown" ? r : undefined;
    }, `CustomRun ${name} done`);
  const message = (r: InternalRequest) => r.status?.conditions?.[0]?.message ?? "";

  before(async () => {
    f = await Fixture.create({
      namespaces: 3,
      startController: false,
      config: ([a, b]): InternalServicesConfigSpec => ({
        allowList: [a as string, b as string],
        allowedPipelineSources: [
          {
            resolver: "git",
            params: { url: "https://git.example.com/releng/*.git", revision: "v*", pathInRepo: "**" },
          },
          // Many stars against long values: must not backtrack.
          { resolver: "http", params: { url: `https://pipelines.example.com/${"*a".repeat(12)}*b` } },
          {
            resolver: "bundles",
            params: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`p${i}`, "**"])),
          },
        ],
        rawPipelineRequests: { maxConcurrentRuns: rawCap, maxParamsSize: 131072 },
      }),
      services: {
        vault,
        capped: { pipeline: { pipelineName: "capped" }, maxConcurrentRuns: capped },
        open: {
          pipeline: { pipelineName: "open" },
          paramsSchema: { type: "object", additionalProperties: { type: "string" } },
        },
        keep: { pipeline: { pipelineName: "keep" }, retention: { keepFinishedPipelineRuns: "1h" } },
        backtrack: {
          pipeline: { pipelineName: "backtrack" },
          paramsSchema: { type: "object", properties: { v: { type: "string", pattern: "^(a+)+$" } } },
        },
      },
    });
    [allowed, second, outside] = f.namespaces as [string, string, string];
    deployment = await deploymentMemory();
    const { remote, priv } = await shippedIdentities(planes, f);
    proxy = await FaultProxy.start(planes.private);
    const token = priv.kubeConfig.getCurrentUser()?.token as string;
    const privateKubeconfig = await proxy.writeKubeconfig(
      await mkdtemp(join(tmpdir(), "isc-hostile-")),
      "private",
      token,
    );
    startArgs = {
      remoteKubeconfig: remote.kubeconfigPath,
      workspaces: [`public=${f.namespaces.join(",")}`],
      privateKubeconfig,
      namespace: f.privateNs,
      // As the image and the Deployment run it: compiled, with the Deployment's heap flags.
      compiled: true,
      env: { NODE_OPTIONS: deployment.nodeOptions },
      inspect: true,
      // Short leases: a stalled event loop (over 3 s) loses the lease and the process exits.
      extraArgs: ["--leader-lease-duration=4s", "--leader-renew-deadline=3s", "--leader-retry-period=1s"],
    };
    await start();
  });
  after(async () => {
    await controller?.kill();
    await proxy?.stop();
  });

  it("memory stays bounded whatever tenants store, also across a restart, and allowed work goes on", async () => {
    // Each object is about 0.9 MB: labels and annotations (the CRD cannot limit metadata) plus
    // params at the CRD's limit. The old controller cached them whole and died at about 100.
    const labels = Object.fromEntries(
      Array.from({ length: 1500 }, (_, i) => [
        `l${i}.${"a".repeat(200)}.example.com/${"n".repeat(50)}`,
        "v".repeat(63),
      ]),
    );
    const annotations = { "tenant.example.com/blob": "b".repeat(250_000) };
    const params = { a: "x".repeat(65_536), b: "y".repeat(65_536) };
    // Finalizers too, named like the controller's own (it must keep only whether its one is there).
    const finalizers = Array.from({ length: 3000 }, (_, i) => `${labelPrefix}/f${i}-${"x".repeat(50)}`);
    const stuffed = (name: string, ns: string) =>
      f.requests.create(ns, {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata: { name, labels, annotations, finalizers },
        spec: { service: "open", params },
      });
    const crParams = Array.from({ length: 14 }, (_, i) => ({ name: `p${i}`, value: "z".repeat(65_000) }));
    const writesBefore = proxy.writesTo("pipelineruns");
    const work: (() => Promise<unknown>)[] = [
      ...Array.from({ length: 60 }, (_, i) => () => stuffed(`outside-${i}`, outside)),
      ...Array.from({ length: 30 }, (_, i) => () => stuffed(`inside-${i}`, allowed)),
      // Another custom task's CustomRuns: never cached, never touched.
      ...Array.from(
        { length: 30 },
        (_, i) => () =>
          createCustomRun(`other-${i}`, {
            customRef: { apiVersion: "example.com/v1", kind: "Other" },
            params: crParams,
          }),
      ),
      ...Array.from(
        { length: 30 },
        (_, i) => () => createCustomRun(`huge-${i}`, { customRef: ref("open"), params: crParams }),
      ),
    ];
    for (let i = 0; i < work.length; i += 8) await Promise.all(work.slice(i, i + 8).map((w) => w()));

    // Meanwhile an allowed request with params at the CRD's limit runs.
    await f.createRequest("big-but-fine", { service: "open", params });
    await f.tekton.succeed(await runOfRequest(f, "big-but-fine"), [{ name: "out", value: "ok" }]);
    assert.equal((await f.waitForReason("big-but-fine", "Succeeded")).status?.results?.out, "ok");

    for (let i = 0; i < 60; i++) {
      const r = await f.waitForReason(`outside-${i}`, "Rejected", outside);
      assert.match(
        message(r),
        /^namespace "[^"]+" in workspace "public" is not in the InternalServicesConfig allowList/,
      );
    }
    for (let i = 0; i < 30; i++) {
      const r = await f.waitForReason(`inside-${i}`, "Rejected", allowed);
      assert.match(
        message(r),
        /^the InternalRequest is about \d+ characters \(labels, annotations and spec together\), over the limit of 524288: remove large labels and annotations, and pass large data by reference$/,
      );
      const huge = await waitCustomRun(`huge-${i}`);
      assert.equal(huge.status?.conditions?.[0]?.reason, "InvalidCustomRun");
      assert.match(
        huge.status?.conditions?.[0]?.message ?? "",
        /^the CustomRun is about \d+ characters, over the limit of 524288/,
      );
    }
    const others = (await customRunClient().list(allowed)).items.filter((r) =>
      r.metadata?.name?.startsWith("other-"),
    );
    assert.equal(others.length, 30);
    assert.ok(
      others.every((r) => r.status === undefined),
      "other custom tasks' CustomRuns untouched",
    );
    // The one allowed request wrote its run (create; then its deletion); the hostile ones nothing.
    await eventually(
      () => proxy.writesTo("pipelineruns") - writesBefore === 2,
      "private writes: create and delete of big-but-fine",
    );

    await stillUp();
    const peak = await peakRssMb();
    const heap = await controller.heapUsedAfterGcMb();
    console.log(`hostile memory: peak RSS ${peak.toFixed(0)} MB, heap after GC ${heap} MB`);
    assert.ok(peak < deployment.limitMb, `peak RSS ${peak} MB within the ${deployment.limitMb} Mi limit`);

    // The old controller died again on every restart while the objects existed.
    await controller.kill();
    await start();
    await f.createRequest("after-restart", { service: "vault", params: { digest } });
    await f.tekton.succeed(await runOfRequest(f, "after-restart"));
    await f.waitForReason("after-restart", "Succeeded");
    await stillUp();
    const peakAfter = await peakRssMb();
    console.log(`hostile memory after restart: peak RSS ${peakAfter.toFixed(0)} MB`);
    assert.ok(peakAfter < deployment.limitMb, `peak RSS after restart ${peakAfter} MB`);
  });

  it("maxConcurrentRuns holds under a burst, across a SIGKILL, and for raw pipeline requests", async () => {
    // Grouped by the service annotation (the slot group), for the burst's and the raw requests' runs.
    const watcher = await LiveRuns.watch(planes.privateAdmin, f.privateNs, (run) =>
      /\/(burst|raw)-\d+$/.test(run.metadata?.annotations?.[`${labelPrefix}/request`] ?? "")
        ? (run.metadata?.annotations?.[`${labelPrefix}/service`] ?? "(pipeline)")
        : undefined,
    );
    try {
      const burst = 40;
      await Promise.all(
        Array.from({ length: burst }, (_, i) => f.createRequest(`burst-${i}`, { service: "capped" })),
      );
      const raws = 4;
      await Promise.all(Array.from({ length: raws }, (_, i) => f.createRequest(`raw-${i}`, gitRequest())));
      // Complete runs one at a time as they appear; kill the controller once, midway.
      const done = new Set<string>();
      let killed = false;
      await eventually(
        async () => {
          for (const run of await f.tekton.list()) {
            const name = run.metadata?.name as string;
            if (done.has(name) || run.status?.completionTime) continue;
            await f.tekton.succeed(name);
            done.add(name);
          }
          if (!killed && done.size >= burst / 2) {
            killed = true;
            await controller.kill();
            await start();
          }
          return done.size === burst + raws || undefined;
        },
        "every burst run completed",
        120_000,
        100,
      );
      for (let i = 0; i < burst; i++) await f.waitForReason(`burst-${i}`, "Succeeded");
      for (let i = 0; i < raws; i++) await f.waitForReason(`raw-${i}`, "Succeeded");
      assert.equal(watcher.maxLive.get("capped"), capped, "at most maxConcurrentRuns, and that many used");
      assert.equal(watcher.maxLive.get("(pipeline)"), rawCap);
      const created = [...watcher.created.values()].reduce((a, b) => a + b, 0);
      assert.equal(created, burst + raws, "exactly one run per request");
      await stillUp();
    } finally {
      watcher.stop();
    }
  });

  it("metric labels never take tenant input: 300 unknown service names add no series", async () => {
    const before = (await controller.get("/metrics", controller.metricsPort)).text;
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        f.createRequest(
          `unknown-${i}`,
          { service: `no-such-service-${i}-${randomUUID().slice(0, 8)}` },
          { namespace: outside },
        ),
      ),
    );
    for (let i = 0; i < 300; i++) await f.waitForReason(`unknown-${i}`, "Rejected", outside);
    const after = (await controller.get("/metrics", controller.metricsPort)).text;
    assert.doesNotMatch(after, /no-such-service/);
    const series = (text: string) =>
      text.split("\n").filter((l) => l.startsWith("internal_requests_")).length;
    assert.ok(series(after) - series(before) <= 12, `${series(after) - series(before)} new series`);
    await stillUp();
  });

  it("a CustomRun never adopts an InternalRequest it did not create, and copies nothing from it", async () => {
    // Pre-created under the name of attempt 0, no owner.
    await f.createRequest("adopt-a-0", { service: "vault", params: { digest: "sha256:eeeeeeee" } });
    await createCustomRun("adopt-a", {
      customRef: ref("vault"),
      params: [{ name: "digest", value: digest }],
    });
    const a = await waitCustomRun("adopt-a");
    assert.equal(a.status?.conditions?.[0]?.reason, "RequestNotOwned");
    assert.match(
      a.status?.conditions?.[0]?.message ?? "",
      /^InternalRequest [^ ]+\/adopt-a-0 exists but was not created for this CustomRun \(its controller owner is not this CustomRun\); nothing was copied from it/,
    );
    assert.deepEqual(a.status?.results ?? [], []);

    // The next attempt's name, pre-created with this CustomRun as owner but another digest.
    const b = await createCustomRun("adopt-b", {
      customRef: ref("vault"),
      params: [{ name: "digest", value: digest }],
      retries: 1,
    });
    await f.requests.create(allowed, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: {
        name: "adopt-b-1",
        ownerReferences: [
          {
            apiVersion: "tekton.dev/v1beta1",
            kind: "CustomRun",
            name: "adopt-b",
            uid: b.metadata?.uid as string,
            controller: true,
          },
        ],
      },
      spec: { service: "vault", params: { digest: "sha256:ffffffff" } },
    });
    await f.tekton.fail(await runOfRequest(f, "adopt-b-0"), {
      name: "sign",
      reason: "Failed",
      message: "flaky",
    });
    const bDone = await waitCustomRun("adopt-b");
    assert.equal(bDone.status?.conditions?.[0]?.reason, "RequestNotOwned");
    assert.match(
      bDone.status?.conditions?.[0]?.message ?? "",
      /its spec differs from what this CustomRun asks for/,
    );
    assert.deepEqual(bDone.status?.results ?? [], []);
    // The impostor itself runs as the tenant's own request (its digest), never as the CustomRun's.
    const impostorRun = await runOfRequest(f, "adopt-b-1");
    const pr = await f.tekton.runs.get(f.privateNs, impostorRun);
    assert.deepEqual(pr.spec?.params, [{ name: "digest", value: "sha256:ffffffff" }]);
    await f.tekton.succeed(impostorRun, [{ name: "signature", value: "sig-of-ffff" }]);
    await f.waitForReason("adopt-b-1", "Succeeded");
    assert.equal((await customRunClient().get(allowed, "adopt-b")).status?.results?.length ?? 0, 0);
    await stillUp();
  });

  it("never acts on a private run named in public status: deletion cancels only the request's own run", async () => {
    await f.createRequest("victim", { service: "vault", params: { digest } }, { namespace: second });
    await f.createRequest("attacker", { service: "vault", params: { digest } });
    const victimRun = await runOfRequest(f, "victim", second);
    const attackerRun = await runOfRequest(f, "attacker");
    // An over-broad status binding (not the shipped tenant Roles): point status at the victim's run
    // and at a service that keeps runs for an hour.
    const attacker = await f.requests.get(allowed, "attacker");
    await f.requests.patchStatus(allowed, "attacker", {
      ...attacker.status,
      pipelineRun: `${f.privateNs}/${victimRun}`,
      service: "keep",
    });
    await f.requests.delete(allowed, "attacker");
    await eventually(async () => {
      const runs = await f.tekton.list();
      return !runs.some((r) => r.metadata?.name === attackerRun) || undefined;
    }, "the attacker's own run cancelled and deleted");
    const victim = await f.tekton.runs.get(f.privateNs, victimRun);
    assert.equal(victim.spec?.status, undefined, "the victim's run was not cancelled");
    await f.tekton.succeed(victimRun);
    await f.waitForReason("victim", "Succeeded", second);
    await stillUp();
  });

  it("a private run deleted out of band ends its request Failed at once, saying so", async () => {
    await f.createRequest("orphaned", { service: "vault", params: { digest } });
    const run = await runOfRequest(f, "orphaned");
    await f.tekton.runs.delete(f.privateNs, run);
    const r = await f.waitForReason("orphaned", "Failed");
    assert.equal(message(r), `internal PipelineRun ${run} was deleted before it finished`);
    await stillUp();
  });

  it("deeply nested CustomRuns fail once with a specific reason, never retried", async () => {
    const errorsBefore = await controller.metric("controller_runtime_reconcile_errors_total");
    // JSON.stringify itself cannot write 9,000 levels: build the text, let kubectl send it.
    const deep = (levels: number) => `${'{"n":'.repeat(levels)}"leaf"${"}".repeat(levels)}`;
    const customRun = (name: string, spec: string) =>
      `{"apiVersion":"tekton.dev/v1beta1","kind":"CustomRun","metadata":{"name":"${name}","namespace":"${allowed}"},"spec":${spec}}`;
    const kubectl = `${await ensureTools()}/kubectl`;
    for (const [name, spec] of [
      [
        "deep-spec",
        `{"customSpec":{"apiVersion":"appstudio.redhat.com/v1alpha1","kind":"InternalRequest","spec":${deep(9000)}}}`,
      ],
      [
        "deep-params",
        `{"customRef":{"apiVersion":"appstudio.redhat.com/v1alpha1","kind":"InternalRequest","name":"open"},"params":[{"name":"p","value":${deep(9000)}}]}`,
      ],
    ] as const) {
      const created = await runCommand(
        kubectl,
        ["--kubeconfig", planes.public.kubeconfigPath, "create", "-f", "-"],
        {
          stdin: customRun(name, spec),
        },
      );
      assert.equal(created.code, 0, created.stderr);
    }
    for (const name of ["deep-spec", "deep-params"]) {
      const r = await waitCustomRun(name);
      assert.equal(r.status?.conditions?.[0]?.reason, "InvalidCustomRun");
      assert.match(
        r.status?.conditions?.[0]?.message ?? "",
        /^the CustomRun nests \d+ levels deep, over the limit of 32: pass flat params$/,
      );
    }
    assert.equal(await controller.metric("controller_runtime_reconcile_errors_total"), errorsBefore);
    await stillUp();
  });

  it("raw pipeline requests have a capped timeout and size, and a too-large PipelineRun is never written", async () => {
    await f.createRequest("raw-forever", gitRequest({ timeouts: { pipeline: "0" } }));
    const forever = await f.waitForRequest(
      "raw-forever",
      (r) => r.status?.pipelineRun !== undefined,
      "started",
    );
    assert.equal(
      message(forever),
      `accepted; internal PipelineRun started (spec.timeouts.pipeline "0" (no timeout) capped at the InternalServicesConfig's rawPipelineRequests.timeouts.maximum 24h0m0s)`,
    );
    const run = await f.tekton.runs.get(f.privateNs, forever.status?.pipelineRun?.split("/")[1] as string);
    assert.equal(run.spec?.timeouts?.pipeline, "24h0m0s");
    await f.tekton.succeed(run.metadata?.name as string);
    await f.waitForReason("raw-forever", "Succeeded");
    await eventually(
      async () => (await f.tekton.list()).every((r) => r.metadata?.name !== run.metadata?.name),
      "finished and cleaned up",
    );

    const writesBefore = proxy.writesTo("pipelineruns");
    await f.createRequest(
      "raw-too-many",
      gitRequest({ params: { a: "x".repeat(65_536), b: "y".repeat(65_536) } }),
    );
    assert.match(
      message(await f.waitForReason("raw-too-many", "Rejected")),
      /^spec.params hold 131074 characters \(names and values\), over the 131072 allowed for raw pipeline requests/,
    );
    const bundle = Array.from({ length: 32 }, (_, i) => ({ name: `p${i}`, value: "q".repeat(4096) }));
    await f.createRequest("raw-huge-run", {
      pipeline: { pipelineRef: { resolver: "bundles", params: bundle } },
      params: { a: "x".repeat(65_000), b: "y".repeat(65_000) },
    });
    assert.match(
      message(await f.waitForReason("raw-huge-run", "Rejected")),
      /^the internal PipelineRun would be \d+ characters, over the limit of 262144: send less data in spec.params/,
    );
    assert.equal(proxy.writesTo("pipelineruns") - writesBefore, 0, "nothing written privately");
    await stillUp();
  });

  it("removing the controller's finalizer does not stop cancel-on-delete or retention", async () => {
    const drop = (name: string) => f.requests.mergePatch(allowed, name, { metadata: { finalizers: null } });
    // Deleted while running, the finalizer removed first: the run is cancelled and deleted anyway.
    await f.createRequest("unhooked-running", { service: "vault", params: { digest } });
    const running = await runOfRequest(f, "unhooked-running");
    await drop("unhooked-running");
    await f.requests.delete(allowed, "unhooked-running");
    await eventually(
      async () => !(await f.tekton.list()).some((r) => r.metadata?.name === running),
      "the run of a request deleted without our finalizer is deleted",
    );
    // Finished after the finalizer was removed: retention (0s) still deletes the run.
    await f.createRequest("unhooked-finished", { service: "vault", params: { digest } });
    const finished = await runOfRequest(f, "unhooked-finished");
    await drop("unhooked-finished");
    await f.tekton.succeed(finished);
    await f.waitForReason("unhooked-finished", "Succeeded");
    await eventually(
      async () => !(await f.tekton.list()).some((r) => r.metadata?.name === finished),
      "the finished run is deleted per retention",
    );
    await stillUp();
  });

  it("a concurrency slot held by a failed create is given back when its request goes", async () => {
    const one = "one-at-a-time";
    await f.addService(one, { pipeline: { pipelineName: one }, maxConcurrentRuns: 1 });
    const writesBefore = proxy.writesTo("pipelineruns");
    proxy.faults.failWritesTo = "pipelineruns";
    try {
      await f.createRequest("slot-a", { service: one });
      await eventually(
        () => proxy.writesTo("pipelineruns") > writesBefore,
        "a create of slot-a's run failed",
      );
      await f.requests.mergePatch(allowed, "slot-a", { metadata: { finalizers: null } });
      await f.requests.delete(allowed, "slot-a");
    } finally {
      proxy.faults.failWritesTo = undefined;
    }
    await f.createRequest("slot-b", { service: one });
    await f.tekton.succeed(await runOfRequest(f, "slot-b"));
    await f.waitForReason("slot-b", "Succeeded");
    await stillUp();
  });

  it("an embedded spec with null fields is still adopted (the API server prunes nulls)", async () => {
    await createCustomRun("with-nulls", {
      customSpec: {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        spec: { service: "vault", serviceAccount: null, timeouts: null },
      },
      params: [{ name: "digest", value: digest }],
    });
    await f.tekton.succeed(await runOfRequest(f, "with-nulls-0"), [{ name: "signature", value: "s" }]);
    const done = await waitCustomRun("with-nulls");
    assert.equal(done.status?.conditions?.[0]?.reason, "Succeeded", JSON.stringify(done.status?.conditions));
    await stillUp();
  });

  it("config globs with many stars and service patterns like ^(a+)+$ cannot stall the controller", async () => {
    const writesBefore = proxy.writesTo("pipelineruns");
    // Near-misses for a glob with 13 stars, 4 KiB long.
    await f.createRequest("glob-bomb", {
      pipeline: {
        pipelineRef: {
          resolver: "http",
          params: [{ name: "url", value: `https://pipelines.example.com/${"a".repeat(4000)}` }],
        },
      },
    });
    assert.match(message(await f.waitForReason("glob-bomb", "Rejected")), /param "url"/);
    await f.createRequest("pattern-bomb", { service: "backtrack", params: { v: `${"a".repeat(65_000)}!` } });
    assert.match(
      message(await f.waitForReason("pattern-bomb", "Rejected")),
      /param "v" must match pattern "\^\(a\+\)\+\$"/,
    );
    assert.equal(proxy.writesTo("pipelineruns") - writesBefore, 0);
    // The lease was kept throughout: still the same leader process.
    await stillUp();
  });
});

/** A raw request from the git source the hostile block's config allows. */
const gitRequest = (extra: Partial<InternalRequest["spec"]> = {}): InternalRequest["spec"] => ({
  pipeline: {
    pipelineRef: {
      resolver: "git",
      params: [
        { name: "url", value: "https://git.example.com/releng/tasks.git" },
        { name: "revision", value: "v1" },
        { name: "pathInRepo", value: "p.yaml" },
      ],
    },
  },
  ...extra,
});

/** The request's internal PipelineRun name, once the controller recorded it. */
async function runOfRequest(f: Fixture, name: string, ns = f.namespaces[0] as string): Promise<string> {
  const r = await f.waitForRequest(name, (x) => x.status?.pipelineRun !== undefined, "started", ns);
  return r.status?.pipelineRun?.split("/")[1] as string;
}
