// Security properties: the controller needs only the least-privilege Roles shipped in deploy/ (checked
// with SelfSubjectAccessReview, then used to run it), sensitive param values never reach logs, Events or
// status, and requests from namespaces that are not allowed cause no write at all in the private cluster.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1ResourceAttributes,
} from "@kubernetes/client-node";
import { apiStatus } from "../../src/api/errors.ts";
import { customRuns, ResourceClient } from "../../src/api/resources.ts";
import type { InternalServiceSpec } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1beta1CustomRunSpec } from "../../src/generated/tekton.ts";
import { labelPrefix } from "../../src/requests/naming.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";
import { eventually } from "../support/wait.ts";

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
    const { remote, priv } = await restricted(f);
    const ns = f.namespaces[0] as string;
    type Check = [allowed: boolean, attrs: V1ResourceAttributes];
    const ir = "appstudio.redhat.com";
    const verbs = (allowed: boolean, group: string, resource: string, list: string[], namespace = ns) =>
      list.map((verb): Check => {
        const [res, sub] = resource.split("/");
        return [allowed, { group, resource: res, subresource: sub, verb, namespace }];
      });
    const publicChecks: Check[] = [
      ...verbs(true, ir, "internalrequests", ["get", "list", "watch", "patch", "create"]),
      ...verbs(true, ir, "internalrequests", ["get", "list", "watch"], f.namespaces[1]),
      ...verbs(true, ir, "internalrequests/status", ["get", "patch"]),
      ...verbs(true, ir, "internalrequests/finalizers", ["update"]),
      ...verbs(true, "tekton.dev", "customruns", ["get", "list", "watch"]),
      ...verbs(true, "tekton.dev", "customruns/status", ["get", "patch"]),
      ...verbs(true, "", "events", ["create", "patch"]),
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
    });
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
    // Let any late reconcile of the burst land before counting.
    await new Promise((r) => setTimeout(r, 1_000));
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
