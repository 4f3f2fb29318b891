// The controller serving kcp workspaces on two shards behind one front proxy (envtest/kcp.ts
// startShardedKcp: a cache server, the root shard, shard-1 and kcp-front-proxy, all kcp v0.30.0) and
// the shared private plane, as the least-privilege provider identity of deploy/kcp (its provider
// workspace on the root shard). Tenants are placed on a chosen shard (Workspace spec.location); the
// export's endpoint slice lists one virtual-workspace URL per shard that has a binding, and the
// controller, started while only the root shard had one, follows shard-1's URL when a workspace there
// binds and fulfils requests on both shards.
// Which credentials every shard accepts: a ServiceAccount's bound (TokenRequest) token is refused
// (401) by every shard but its own, since kcp v0.30.0 looks the account up on the shard the request
// reaches; its legacy token Secret works on every shard that runs with --service-account-lookup=false
// (as kcp's own sharded test server does, and this harness), and so does a user that every shard
// authenticates (here a client certificate of their shared client CA) bound to the same ClusterRole.
// The controller here runs with the legacy token; one started with the bound token serves the root
// shard and, after a bounded wait, becomes ready without shard-1 (whose caches never list), its
// warnings naming shard-1's URL.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import { type KcpWorkspace, type ShardedKcp, startShardedKcp } from "../../envtest/kcp.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { internalRequests, ResourceClient } from "../../src/api/resources.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { startManager } from "../../src/manager.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { Fixture } from "../support/fixture.ts";
import {
  createTenantRequest,
  rejectionEvents,
  runFor,
  waitBound,
  waitForTenantReason,
} from "../support/kcp-tenants.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const kcpDir = join(repoRoot, "deploy/kcp");
const exportName = "internal-services";

const legacyTokenSecret = `
apiVersion: v1
kind: Secret
metadata:
  name: controller-token
  namespace: internal-services-remote
  annotations:
    kubernetes.io/service-account.name: internal-service-controller-remote
type: kubernetes.io/service-account-token
`;

const advise = {
  pipeline: { pipelineRef: { resolver: "cluster", params: [{ name: "name", value: "advise" }] } },
  paramsSchema: { type: "object", properties: { advisory: { type: "string" } } },
};

describe("kcp workspaces on two shards behind one front proxy", () => {
  let kcp: ShardedKcp;
  let f: Fixture;
  let provider: KcpWorkspace;
  /** tenant-a on the root shard, tenant-b on shard-1. */
  let a: KcpWorkspace;
  let b: KcpWorkspace;
  /** The controller's kubeconfig: the provider workspace through the front proxy, with a legacy token. */
  let controllerKc: KubeConfig;
  let legacyToken: string;
  let boundToken: string;
  /** What the controller logged. */
  const logged: { msg?: string; url?: string }[] = [];

  /** The endpoint slice's URLs, read as the controller's identity (through the front proxy). */
  const sliceUrls = async (): Promise<string[]> => {
    const slice = (await controllerKc.makeApiClient(CustomObjectsApi).getClusterCustomObject({
      group: "apis.kcp.io",
      version: "v1alpha1",
      plural: "apiexportendpointslices",
      name: exportName,
    })) as { status?: { endpoints?: { url: string }[] } };
    return (slice.status?.endpoints ?? []).map((e) => e.url).sort();
  };
  /** The virtual workspace URL of the export on a shard. */
  const vwOf = (shard: string) =>
    `${kcp.shards.find((s) => s.name === shard)?.url}/services/apiexport/${provider.logicalCluster}/${exportName}`;

  const bind = async (w: KcpWorkspace) => {
    // A shard other than the provider's knows the export's bind permission once the cache server has
    // its ClusterRoles: until then the binding is refused ("no permission to bind").
    await eventually(
      () => kcp.apply(w.path, readFileSync(join(kcpDir, "apibinding-tenant.yaml"), "utf8")),
      `APIBinding in ${w.path} accepted`,
      60_000,
    );
    await waitBound(w, exportName);
  };

  /** Creates a request as the tenant, plays Tekton for its run, and waits until it Succeeded. */
  const fulfil = async (w: KcpWorkspace, name: string) => {
    await createTenantRequest(w, name, "advise", { advisory: `RHSA-${w.name}` });
    const run = await runFor(f.tekton, w, name);
    assert.deepEqual(run.spec?.params, [{ name: "advisory", value: `RHSA-${w.name}` }]);
    await f.tekton.succeed(run.metadata?.name as string, [
      { name: "url", value: `https://errata/${w.name}` },
    ]);
    const done = await waitForTenantReason(w, name, "Succeeded");
    assert.deepEqual(done.status?.results, { url: `https://errata/${w.name}` });
    assert.match(done.status?.pipelineRun ?? "", new RegExp(`^${f.privateNs}/${name}-`));
  };

  before(async () => {
    kcp = await startShardedKcp();
    const started = `${(kcp.readyMs / 1000).toFixed(1)}s (cache ${(kcp.cacheReadyMs / 1000).toFixed(1)}s, ${kcp.shards
      .map((s) => `${s.name} ${(s.readyMs / 1000).toFixed(1)}s`)
      .join(", ")}, proxy ${(kcp.proxyReadyMs / 1000).toFixed(1)}s)`;
    console.error(`kcp-shards: two shards and a front proxy ready in ${started}`);
    [provider, a, b] = await Promise.all([
      kcp.createWorkspace(exportName, { shard: "root" }),
      kcp.createWorkspace("tenant-a", { shard: "root" }),
      kcp.createWorkspace("tenant-b", { shard: "shard-1" }),
    ]);
    await kcp.apply(provider.path, await kcp.kustomize(kcpDir));
    boundToken = await kcp.createToken(
      provider.path,
      "internal-services-remote",
      "internal-service-controller-remote",
    );
    // The same ServiceAccount's legacy token, which kcp's token controller writes into the Secret.
    await kcp.apply(provider.path, legacyTokenSecret);
    legacyToken = await eventually(async () => {
      const secret = await provider.kubeConfig
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ namespace: "internal-services-remote", name: "controller-token" });
      const token = secret.data?.token;
      return token ? Buffer.from(token, "base64").toString() : undefined;
    }, "the legacy token Secret filled");
    controllerKc = kcp.tokenKubeConfig(`${kcp.url}/clusters/${provider.path}`, legacyToken);
    // Only the root shard has a binding when the controller starts.
    await bind(a);
    await eventually(
      async () => ((await sliceUrls()).length === 1 ? true : undefined),
      "the endpoint slice lists the root shard",
      60_000,
    );

    f = await Fixture.create({
      config: (ns) => ({ allowList: [...ns, "root:tenant-a/default", "root:tenant-b/default"] }),
      services: { advise },
      startController: false,
    });
    await f.startController({
      workspaces: [],
      kcp: [{ kubeConfig: controllerKc, export: exportName }],
      serveCustomTasks: false,
      log: pino({ level: "info" }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
    });
  });
  after(async () => {
    await f?.stop();
    await kcp?.stop();
  });

  it("places each workspace on the shard asked for, all reached by path through the front proxy", async () => {
    assert.equal(await kcp.shardOf(provider.logicalCluster), "root");
    assert.equal(await kcp.shardOf(a.logicalCluster), "root");
    assert.equal(await kcp.shardOf(b.logicalCluster), "shard-1");
    const namespaces = await b.kubeConfig.makeApiClient(CoreV1Api).listNamespace();
    assert.ok(namespaces.items.some((n) => n.metadata?.name === "default"));
  });

  it("serves a workspace on the root shard while the slice lists only that shard", async () => {
    assert.deepEqual(await sliceUrls(), [vwOf("root")]);
    await fulfil(a, "release-1");
  });

  it("follows shard-1's virtual workspace once a workspace there binds, and fulfils requests on both shards", async () => {
    await bind(b);
    const both = [vwOf("root"), vwOf("shard-1")].sort();
    await eventually(
      async () => (JSON.stringify(await sliceUrls()) === JSON.stringify(both) ? true : undefined),
      `the endpoint slice lists ${both.join(" and ")}`,
      60_000,
    );
    await Promise.all([fulfil(b, "release-2"), fulfil(a, "release-2")]);
    // The Events reach the tenant through the export's claim on events there.
    const events = await rejectionEvents(b);
    assert.match(events[0]?.message ?? "", /InternalService "no-such-service" does not exist/);
    const metrics = (await f.manager?.metrics.registry.metrics()) ?? "";
    for (const w of ["root:tenant-a", "root:tenant-b"])
      assert.match(
        metrics,
        new RegExp(
          `internal_requests_completed_total\\{workspace="${w}",service="advise",reason="Succeeded"\\}`,
        ),
      );
  });

  it("stops following a shard that leaves the slice (its last binding gone), serves the rest, and follows it again", async () => {
    const followed = (url: string) =>
      logged.filter((l) => l.url === url && l.msg === "kcp virtual workspace endpoint followed").length;
    assert.equal(followed(vwOf("shard-1")), 1);
    await b.kubeConfig.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({
      group: "apis.kcp.io",
      version: "v1alpha2",
      plural: "apibindings",
      name: "internal-services",
    });
    await eventually(
      async () => (JSON.stringify(await sliceUrls()) === JSON.stringify([vwOf("root")]) ? true : undefined),
      "the endpoint slice lists the root shard only",
      60_000,
    );
    await eventually(
      () => logged.some((l) => l.url === vwOf("shard-1") && l.msg === "kcp virtual workspace endpoint gone"),
      "the controller drops shard-1",
    );
    await fulfil(a, "release-3");
    await bind(b);
    await eventually(() => followed(vwOf("shard-1")) === 2 || undefined, "shard-1 followed again", 60_000);
    await fulfil(b, "release-3");
  });

  /** The HTTP status of listing InternalRequests across every bound workspace of a shard's virtual workspace. */
  const listStatus = (kc: KubeConfig) =>
    new ResourceClient<InternalRequest>(kc, internalRequests).list(undefined).then(
      () => 200,
      (err: unknown) => apiStatus(err)?.code ?? String(err),
    );
  const vwKc = (shard: string, token: string) => kcp.tokenKubeConfig(`${vwOf(shard)}/clusters/*`, token);

  it("kcp v0.30.0: a ServiceAccount's bound token authenticates only on the shard that holds the account", async () => {
    // Bound tokens are always checked against the ServiceAccount, which exists on its own shard only.
    assert.equal(await listStatus(vwKc("root", boundToken)), 200);
    assert.equal(await listStatus(vwKc("shard-1", boundToken)), 401);
    // A legacy token is checked against the account only with --service-account-lookup (off here).
    assert.equal(await listStatus(vwKc("root", legacyToken)), 200);
    assert.equal(await listStatus(vwKc("shard-1", legacyToken)), 200);
  });

  it("a shard that refuses the controller (a bound token) does not hold the others back", async () => {
    // A shard's workspaces are served once its caches are listed; one that never lists is waited for
    // a bounded time at start, then the controller serves the rest, saying which shard is missing.
    const warnings: { url?: string; err?: string }[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
    const manager = startManager({
      workspaces: [],
      kcp: [
        {
          kubeConfig: kcp.tokenKubeConfig(`${kcp.url}/clusters/${provider.path}`, boundToken),
          export: exportName,
        },
      ],
      serveRequests: false,
      serveCustomTasks: false,
      metrics: new Metrics({ processMetrics: false }),
      log,
    });
    try {
      await eventually(
        () => warnings.some((w) => w.url === vwOf("shard-1") && /\b401\b/.test(w.err ?? "")),
        "a 401 warning naming shard-1's virtual workspace",
      );
      assert.ok(!warnings.some((w) => w.url === vwOf("root")), JSON.stringify(warnings));
      await eventually(() => manager.isReady() || undefined, "ready without shard-1", 45_000);
      const late = warnings.find((w) => /kcp shards not listed within 30 s/.test(JSON.stringify(w)));
      assert.deepEqual((late as { shards?: string[] } | undefined)?.shards, [vwOf("shard-1")]);
    } finally {
      await manager.stop();
    }
  });

  it("a user every shard authenticates, bound to deploy/kcp's ClusterRole, reads both shards' virtual workspaces", async () => {
    await kcp.apply(
      provider.path,
      `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: internal-service-controller-cert
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: internal-service-controller-remote
subjects:
  - kind: User
    name: internal-service-controller
---
# A user from outside the workspace (unlike its own ServiceAccount) needs access to it, too.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: internal-service-controller-access
rules:
  - nonResourceURLs: ["/"]
    verbs: ["access"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: internal-service-controller-access
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: internal-service-controller-access
subjects:
  - kind: User
    name: internal-service-controller
`,
    );
    for (const shard of ["root", "shard-1"]) {
      const kc = await kcp.certKubeConfig(`${vwOf(shard)}/clusters/*`, "internal-service-controller");
      // Each shard authorizes with the provider's RBAC once it has it (shard-1: from the cache server).
      await eventually(
        async () => {
          const status = await listStatus(kc);
          if (status !== 200) throw new Error(`HTTP ${status}`);
          return true;
        },
        `the certificate user lists InternalRequests through ${shard}'s virtual workspace`,
        30_000,
      );
    }
    // Still least privilege: no tenant workspace directly.
    const direct = await kcp.certKubeConfig(`${kcp.url}/clusters/${b.path}`, "internal-service-controller");
    assert.equal(
      await new ResourceClient<InternalRequest>(direct, internalRequests).list("default").then(
        () => 200,
        (err: unknown) => apiStatus(err)?.code,
      ),
      403,
    );
  });
});
