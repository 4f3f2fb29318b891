// One process serving two remote clusters, and the controller running with only the least-privilege
// RBAC shipped in deploy/ on both sides.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { CoreV1Api, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { createNamespace, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { internalRequests, ResourceClient } from "../../src/api/resources.ts";
import type { InternalRequest, InternalServiceSpec } from "../../src/generated/crds.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { testPlanes } from "../support/planes.ts";

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const service: InternalServiceSpec = { pipeline: { pipelineName: "advise" } };

describe("workspaces and least privilege", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });

  it("serves two remote clusters from one process, keeping their requests apart", async () => {
    // The private plane also serves InternalRequests here, standing in for a second remote cluster.
    const otherNs = await createNamespace(planes.privateAdmin, uniqueName("team-b"));
    const f = await Fixture.create({
      config: (ns) => ({ allowList: [`ws-a/${ns[0]}`, `ws-b/${otherNs}`] }),
      services: { advise: service },
      startController: false,
    });
    fixtures.push(f);
    await f.startController({
      workspaces: [
        { name: "ws-a", kubeConfig: planes.publicAdmin, namespaces: [f.namespaces[0] as string] },
        { name: "ws-b", kubeConfig: planes.privateAdmin, namespaces: [otherNs] },
      ],
    });
    const inB = new ResourceClient<InternalRequest>(planes.privateAdmin, internalRequests, "test");
    // Same namespace/name shape in both clusters: identity includes the workspace.
    await f.createRequest("same", { service: "advise" });
    await inB.create(otherNs, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: "same" },
      spec: { service: "advise" },
    });
    const runs = await f.tekton.waitForRuns(2);
    const byWorkspace = new Map(
      runs.map((r) => [r.metadata?.labels?.["internal-services.appstudio.openshift.io/workspace"], r]),
    );
    assert.deepEqual([...byWorkspace.keys()].sort(), ["ws-a", "ws-b"]);
    for (const r of runs)
      await f.tekton.succeed(r.metadata?.name as string, [
        {
          name: "ws",
          value: r.metadata?.labels?.["internal-services.appstudio.openshift.io/workspace"] ?? "",
        },
      ]);
    const a = await f.waitForReason("same", "Succeeded");
    assert.deepEqual(a.status?.results, { ws: "ws-a" });
    const b = await eventually(async () => {
      const r = await inB.get(otherNs, "same");
      return r.status?.conditions?.[0]?.reason === "Succeeded" && r;
    }, "request in ws-b succeeded");
    assert.deepEqual(b.status?.results, { ws: "ws-b" });
  });

  it("serves the namespaces a label selector picks, following label changes", async () => {
    const tenant = uniqueName("tenant");
    const selector = `isc.test/tenant=${tenant}`;
    const labelled = await createNamespace(planes.publicAdmin, uniqueName("sel-in"), {
      "isc.test/tenant": tenant,
    });
    const later = await createNamespace(planes.publicAdmin, uniqueName("sel-later"));
    const f = await Fixture.create({
      namespaces: 0,
      config: () => ({ allowList: [labelled, later] }),
      services: { advise: service },
      startController: false,
    });
    fixtures.push(f);
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: planes.publicAdmin, namespaceSelector: selector }],
    });
    await f.createRequest("in", { service: "advise" }, { namespace: labelled });
    await f.createRequest("not-yet", { service: "advise" }, { namespace: later });
    await f.waitForRequest("in", (r) => r.status?.pipelineRun !== undefined, "served", labelled);
    assert.equal((await f.tekton.list()).length, 1, "the unlabelled namespace is not served");
    assert.equal((await f.requests.get(later, "not-yet")).status, undefined);
    await planes.publicAdmin
      .makeApiClient(CoreV1Api)
      .patchNamespace(
        { name: later, body: { metadata: { labels: { "isc.test/tenant": tenant } } } },
        mergePatch,
      );
    await f.waitForRequest(
      "not-yet",
      (r) => r.status?.pipelineRun !== undefined,
      "served once labelled",
      later,
    );
    assert.equal((await f.tekton.list()).length, 2);
  });

  it("works with only the documented least-privilege RBAC on both clusters", async () => {
    const f = await Fixture.create({
      namespaces: 2,
      config: (ns) => ({ allowList: [ns[0] as string] }),
      services: { advise: service },
      startController: false,
    });
    fixtures.push(f);
    const { remote, priv: privateIdentity } = await shippedIdentities(planes, f);
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: remote.kubeConfig, namespaces: f.namespaces }],
      privateKubeConfig: privateIdentity.kubeConfig,
    });

    await f.createRequest("ok", { service: "advise" });
    const [run] = await f.tekton.waitForRuns(1);
    await f.waitForRequest("ok", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.tekton.succeed(run?.metadata?.name as string, [{ name: "advisory", value: "RHSA-1" }]);
    await f.waitForReason("ok", "Succeeded");
    await eventually(async () => (await f.tekton.list()).length === 0, "finished run garbage-collected");
    await f.createRequest("not-allowed", { service: "advise" }, { namespace: f.namespaces[1] });
    await f.waitForReason("not-allowed", "Rejected", f.namespaces[1]);
    await f.createRequest("to-cancel", { service: "advise" });
    await f.tekton.waitForRuns(1);
    await f.waitForRequest("to-cancel", (r) => r.status?.pipelineRun !== undefined, "started");
    await f.requests.delete(f.namespaces[0] as string, "to-cancel");
    await eventually(async () => (await f.tekton.list()).length === 0, "cancelled run deleted");
  });
});
