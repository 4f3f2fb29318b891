// Where internal PipelineRuns run: raw requests in a namespace of their own (the config's), a
// service's in its runNamespace, others in the controller's; the controller holding only the shipped
// Roles (its namespace's, and the run Role in each run namespace). A namespace without the run Role
// holds only that service's requests, saying why, never the controller.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { KubernetesObject, V1RoleBinding } from "@kubernetes/client-node";
import { applyObjects, createNamespace, readYamlObjects, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { testPlanes } from "../support/planes.ts";
import { signService } from "../support/services.ts";
import { FakeTekton } from "../support/tekton.ts";

const runRole = fileURLToPath(new URL("../../deploy/private/run-namespace/role.yaml", import.meta.url));

describe("run namespaces", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  after(() => Promise.all(fixtures.map((f) => f.stop())));

  it("runs raw requests, each service and the rest where the policy says, with the shipped Roles only", async () => {
    const [rawNs, signNs, noRoleNs] = [
      uniqueName("raw-runs"),
      uniqueName("sign-runs"),
      uniqueName("no-role"),
    ];
    const f = await Fixture.create({
      startController: false,
      config: (ns) => ({
        allowList: ns,
        allowedPipelineSources: [
          { resolver: "git", params: { url: "https://git.internal/*", revision: "*" } },
        ],
        rawPipelineRequests: { namespace: rawNs },
      }),
      services: {
        sign: { ...signService, runNamespace: signNs },
        plain: signService,
        nowhere: { ...signService, runNamespace: noRoleNs },
      },
    });
    fixtures.push(f);
    for (const ns of [rawNs, signNs, noRoleNs]) await createNamespace(planes.privateAdmin, ns);
    const { priv } = await shippedIdentities(planes, f);
    // The run Role in the raw and the sign namespace (not in noRoleNs), bound to the controller's identity.
    for (const ns of [rawNs, signNs]) {
      const objects = (await readYamlObjects(runRole)).map((o) => {
        const copy = { ...o, metadata: { ...o.metadata, namespace: ns } } as KubernetesObject;
        if (o.kind === "RoleBinding")
          (copy as V1RoleBinding).subjects = [
            { kind: "ServiceAccount", name: "isc-controller", namespace: f.privateNs },
          ];
        return copy;
      });
      await applyObjects(planes.privateAdmin, objects);
    }
    await f.startController({ privateKubeConfig: priv.kubeConfig });

    const digest = { digest: "sha256:abcdef12" };
    await f.createRequest("raw", {
      pipeline: {
        pipelineRef: {
          resolver: "git",
          params: [
            { name: "url", value: "https://git.internal/x" },
            { name: "revision", value: "v1" },
          ],
        },
      },
    });
    await f.createRequest("signed", { service: "sign", params: digest });
    await f.createRequest("plain", { service: "plain", params: digest });
    await f.createRequest("nowhere", { service: "nowhere", params: digest });

    const where: Record<string, [string, FakeTekton]> = {
      raw: [rawNs, new FakeTekton(planes.privateAdmin, rawNs)],
      signed: [signNs, new FakeTekton(planes.privateAdmin, signNs)],
      plain: [f.privateNs, f.tekton],
    };
    for (const [name, [ns, tekton]] of Object.entries(where)) {
      const [run] = await tekton.waitForRuns(1);
      const started = await f.waitForRequest(name, (r) => r.status?.pipelineRun !== undefined, "started");
      assert.equal(started.status?.pipelineRun, `${ns}/${run?.metadata?.name}`, `${name} runs in ${ns}`);
      await tekton.succeed(run?.metadata?.name as string, [{ name: "out", value: name }]);
      const done = await f.waitForReason(name, "Succeeded");
      assert.deepEqual(done.status?.results, { out: name });
      await eventually(async () => (await tekton.list()).length === 0, `${name}'s run deleted (retention 0)`);
    }
    // No run Role in noRoleNs: its requests wait, saying why; nothing is created there.
    const waiting = await f.waitForRequest(
      "nowhere",
      (r) =>
        /waiting for the controller to see PipelineRuns in namespace/.test(
          r.status?.conditions?.[0]?.message ?? "",
        ),
      "queued for its namespace",
    );
    assert.equal(waiting.status?.conditions?.[0]?.status, "Unknown");
    assert.match(waiting.status?.conditions?.[0]?.message ?? "", new RegExp(noRoleNs));
    assert.deepEqual(await new FakeTekton(planes.privateAdmin, noRoleNs).list(), []);
    assert.equal(waiting.metadata.finalizers, undefined, "no finalizer: nothing of it exists privately");
  });
});
