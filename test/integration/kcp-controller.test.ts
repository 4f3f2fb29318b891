// The controller serving kcp workspaces through the APIExport's virtual workspace, on a real kcp (started
// by this file) and the shared private plane: as the least-privilege provider identity of deploy/kcp,
// requests in several tenant workspaces fulfilled end to end, policy by workspace path, a tenant that
// binds the export while the controller runs, and kcp workspaces beside a plain cluster in one process.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { KubeConfig } from "@kubernetes/client-node";
import { type Kcp, type KcpWorkspace, startKcp } from "../../envtest/kcp.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { internalRequests, ResourceClient } from "../../src/api/resources.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { workspaceAnnotation } from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";
import {
  createTenantRequest,
  rejectionEvents,
  runFor,
  tenantRequests,
  waitBound,
  waitForTenantReason,
} from "../support/kcp-tenants.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const kcpDir = join(repoRoot, "deploy/kcp");
const exportName = "internal-services";

const advise = {
  pipeline: { pipelineRef: { resolver: "cluster", params: [{ name: "name", value: "advise" }] } },
  paramsSchema: { type: "object", properties: { advisory: { type: "string" } } },
};

describe("kcp workspaces through an APIExport's virtual workspace", () => {
  let kcp: Kcp;
  let f: Fixture;
  const ws: Record<string, KcpWorkspace> = {};

  /** Binds the export in a tenant workspace with the shipped APIBinding, and waits until Bound. */
  async function bind(w: KcpWorkspace): Promise<void> {
    await kcp.apply(w.path, readFileSync(join(kcpDir, "apibinding-tenant.yaml"), "utf8"));
    await waitBound(w, exportName);
  }

  const createRequest = (w: KcpWorkspace, name: string, params: Record<string, string> = {}) =>
    createTenantRequest(w, name, "advise", params);
  const waitForReason = waitForTenantReason;

  before(async () => {
    kcp = await startKcp();
    const made = await Promise.all([
      kcp.createWorkspace(exportName),
      kcp.createWorkspace("tenant-a"),
      kcp.createWorkspace("tenant-b"),
      kcp.createWorkspace("tenant-c"),
      kcp.createWorkspace("outsider"),
      kcp.createWorkspace("org"),
    ]);
    for (const w of made) ws[w.name] = w;
    ws.team = await kcp.createWorkspace("team", "root:org");
    await kcp.apply((ws[exportName] as KcpWorkspace).path, await kcp.kustomize(kcpDir));
    await Promise.all(["tenant-a", "tenant-b", "outsider", "team"].map((n) => bind(ws[n] as KcpWorkspace)));

    f = await Fixture.create({
      // A bare "default" names no workspace: it allows no kcp workspace (tenants make their own).
      config: (ns) => ({
        allowList: [
          ...ns,
          "default",
          "root:tenant-a/default",
          "root:tenant-b/default",
          "root:tenant-c/default",
          "root:org:team/default",
        ],
      }),
      services: { advise },
      startController: false,
    });
    // The least-privilege provider identity of deploy/kcp, with a bound token.
    const provider = ws[exportName] as KcpWorkspace;
    const token = await kcp.createToken(
      provider.path,
      "internal-services-remote",
      "internal-service-controller-remote",
    );
    const kubeConfig: KubeConfig = kcp.tokenKubeConfig(`${kcp.url}/clusters/${provider.path}`, token);
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: f.publicKc, namespaces: f.namespaces }],
      kcp: [{ kubeConfig, export: exportName }],
      serveCustomTasks: false,
    });
  });
  after(async () => {
    await f?.stop();
    await kcp?.stop();
  });

  it("fulfils requests in every bound workspace the policy names by path", async () => {
    const a = ws["tenant-a"] as KcpWorkspace;
    const b = ws["tenant-b"] as KcpWorkspace;
    const team = ws.team as KcpWorkspace;
    for (const w of [a, b, team]) await createRequest(w, "release-1", { advisory: `RHSA-${w.name}` });
    for (const w of [a, b, team]) {
      const run = await runFor(f.tekton, w, "release-1");
      assert.deepEqual(run.spec?.params, [{ name: "advisory", value: `RHSA-${w.name}` }]);
      await f.tekton.succeed(run.metadata?.name as string, [
        { name: "url", value: `https://errata/${w.name}` },
      ]);
    }
    for (const w of [a, b, team]) {
      const done = await waitForReason(w, "release-1", "Succeeded");
      assert.deepEqual(done.status?.results, { url: `https://errata/${w.name}` });
      assert.match(done.status?.pipelineRun ?? "", new RegExp(`^${f.privateNs}/release-1-`));
    }
    // The Events reach the tenant through the export's claim on events.
    const events = await rejectionEvents(a);
    assert.match(events[0]?.message ?? "", /InternalService "no-such-service" does not exist/);
  });

  it("rejects a bound workspace the policy does not name, saying which path to add", async () => {
    const outsider = ws.outsider as KcpWorkspace;
    await createRequest(outsider, "sneaky");
    const r = await waitForReason(outsider, "sneaky", "Rejected");
    assert.equal(
      r.status?.conditions?.[0]?.message,
      'namespace "default" in workspace "root:outsider" is not in the InternalServicesConfig allowList (ask the service owners to add "root:outsider/default" to spec.allowList of config in the controller namespace)',
    );
    assert.equal(
      (await f.tekton.list()).filter(
        (run) => run.metadata?.annotations?.[workspaceAnnotation] === outsider.path,
      ).length,
      0,
    );
    // Tenants make kcp workspaces: one the config does not name never becomes a metric label.
    const metrics = (await f.manager?.metrics.registry.metrics()) ?? "";
    assert.match(
      metrics,
      /internal_requests_completed_total\{workspace="\(not allowed\)",service="advise",reason="Rejected"\} 1/,
    );
    assert.doesNotMatch(metrics, /root:outsider/);
    assert.match(
      metrics,
      /internal_requests_completed_total\{workspace="root:tenant-a",service="advise",reason="Succeeded"\}/,
    );
  });

  it("a tenant cannot pass its request off as another workspace's (kcp.io/cluster is kcp's, not the tenant's)", async (t) => {
    const outsider = ws.outsider as KcpWorkspace;
    const a = ws["tenant-a"] as KcpWorkspace;
    const forged = {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: "forged", annotations: { "kcp.io/cluster": a.logicalCluster } },
      spec: { service: "advise" },
    };
    const created = await tenantRequests(outsider)
      .create("default", forged as InternalRequest)
      .catch((err: unknown) => apiStatus(err)?.code ?? 0);
    if (typeof created === "number") {
      assert.ok(created >= 400 && created < 500, `refused (${created})`);
      t.diagnostic(`kcp refused the forged kcp.io/cluster annotation: ${created}`);
      return;
    }
    t.diagnostic(`kcp accepted the object, naming its real logical cluster`);
    assert.equal(created.metadata.annotations?.["kcp.io/cluster"], outsider.logicalCluster);
    // Accepted: then kcp names the real logical cluster, and the controller treats it as the outsider's.
    const r = await waitForReason(outsider, "forged", "Rejected");
    assert.match(r.status?.conditions?.[0]?.message ?? "", /workspace "root:outsider"/);
    await assert.rejects(
      tenantRequests(a).get("default", "forged"),
      (err: unknown) => apiStatus(err)?.code === 404,
    );
  });

  it("serves a workspace that binds the export while it runs", async () => {
    const c = ws["tenant-c"] as KcpWorkspace;
    await bind(c);
    await createRequest(c, "late");
    const run = await runFor(f.tekton, c, "late");
    await f.tekton.succeed(run.metadata?.name as string);
    await waitForReason(c, "late", "Succeeded");
  });

  it("a workspace that unbinds while a request of it runs: as if deleted, its run is cancelled and deleted; the others are served", async () => {
    const c = ws["tenant-c"] as KcpWorkspace;
    const a = ws["tenant-a"] as KcpWorkspace;
    await createRequest(c, "leaving");
    const run = await runFor(f.tekton, c, "leaving");
    await kcp.kubectl(c.path, ["delete", "apibinding", exportName]);
    // The API is gone from the workspace; the controller keeps serving every other one.
    await eventually(
      async () =>
        (await tenantRequests(c)
          .list("default")
          .catch((err: unknown) => apiStatus(err)?.code)) === 404
          ? true
          : undefined,
      "InternalRequests no longer served in root:tenant-c",
    );
    await createRequest(a, "after-unbind");
    await f.tekton.succeed((await runFor(f.tekton, a, "after-unbind")).metadata?.name as string);
    await waitForReason(a, "after-unbind", "Succeeded");
    // Its requests left the virtual workspace as deletions do: the run goes as a deleted request's does
    // (checked with a live read, which the unbound workspace answers 404).
    await eventually(
      async () =>
        (await f.tekton.list()).some((r) => r.metadata?.name === run.metadata?.name) ? undefined : true,
      "the unbound workspace's run cancelled and deleted",
    );
  });

  it("serves a plain cluster's namespaces in the same process", async () => {
    await f.createRequest("plain", { service: "advise" });
    const r = await f.waitForRequest("plain", (x) => x.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(r.status?.pipelineRun?.split("/")[1] as string);
    await f.waitForReason("plain", "Succeeded");
  });

  it("the least-privilege identity reaches no tenant workspace directly", async () => {
    // A token never sent through the virtual workspace: kcp v0.30.0 makes one that was the tenant's
    // admin for ~10 s (see docs/kcp.md), which test/integration/kcp.test.ts pins.
    const provider = ws[exportName] as KcpWorkspace;
    const token = await kcp.createToken(
      provider.path,
      "internal-services-remote",
      "internal-service-controller-remote",
    );
    const direct = new ResourceClient<InternalRequest>(
      kcp.tokenKubeConfig(`${kcp.url}/clusters/${(ws["tenant-a"] as KcpWorkspace).path}`, token),
      internalRequests,
    );
    const code = await direct.list("default").then(
      () => 200,
      (err: unknown) => apiStatus(err)?.code,
    );
    assert.equal(code, 403);
  });
});
