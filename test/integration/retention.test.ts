// Finished requests cleaning up after themselves (the config's requestRetention), on the real planes,
// the controller as a process under the shipped Roles plus the optional retention Role: a finished
// request is deleted once its keepFinished has passed; one a Tekton run still going refers to (an
// owning CustomRun, or the release PipelineRun its pipelinerun-uid label names) stays until that run
// is done; without the retention Role in a namespace nothing there is deleted, and the log says what
// to bind.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { KubernetesObject } from "@kubernetes/client-node";
import { applyObjects, readYamlObjects } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { ignoreNotFound } from "../../src/api/errors.ts";
import { ResourceClient, type ResourceType } from "../../src/api/resources.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";
import { signService } from "../support/services.ts";

const digest = "sha256:abcdef12";
const tekton = (plural: string, kind: string, version = "v1"): ResourceType => ({
  group: "tekton.dev",
  version,
  plural,
  kind,
});
type Obj = KubernetesObject & { spec?: unknown; status?: unknown };

describe("request retention", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });

  it("deletes finished requests after keepFinished, never one a running Tekton run refers to", async () => {
    const f = await Fixture.create({
      namespaces: 2,
      config: (ns) => ({ allowList: ns, requestRetention: { keepFinished: "1s" } }),
      services: { sign: signService },
      startController: false,
    });
    fixtures.push(f);
    const [ns, unbound] = f.namespaces as [string, string];
    const { remote, priv } = await shippedIdentities(planes, f);
    // The optional Role, bound in the first namespace only.
    const [role] = await readYamlObjects(
      fileURLToPath(new URL("../../deploy/public/request-retention.yaml", import.meta.url)),
    );
    await applyObjects(planes.publicAdmin, [
      role as KubernetesObject,
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "retention", namespace: ns },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role?.metadata?.name },
        subjects: [{ kind: "User", name: remote.user }],
      } as KubernetesObject,
    ]);

    // A release PipelineRun still going (with a TaskRun Tekton labelled with its uid) and a CustomRun of
    // another custom task, still going.
    const pipelineRuns = new ResourceClient<Obj>(planes.publicAdmin, tekton("pipelineruns", "PipelineRun"));
    const taskRuns = new ResourceClient<Obj>(planes.publicAdmin, tekton("taskruns", "TaskRun"));
    const customRuns = new ResourceClient<Obj>(
      planes.publicAdmin,
      tekton("customruns", "CustomRun", "v1beta1"),
    );
    const release = await pipelineRuns.create(ns, {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name: "release-1" },
      spec: { pipelineRef: { name: "release" } },
    });
    const releaseUid = release.metadata?.uid as string;
    await taskRuns.create(ns, {
      apiVersion: "tekton.dev/v1",
      kind: "TaskRun",
      metadata: {
        name: "release-1-sign",
        labels: { "tekton.dev/pipelineRunUID": releaseUid },
        ownerReferences: [
          { apiVersion: "tekton.dev/v1", kind: "PipelineRun", name: "release-1", uid: releaseUid },
        ],
      },
      spec: { taskRef: { name: "sign" } },
    });
    const approval = await customRuns.create(ns, {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: "approval" },
      spec: { customRef: { apiVersion: "example.dev/v1", kind: "Approval" } },
    });

    const request = (name: string, metadata: Partial<InternalRequest["metadata"]> = {}, namespace = ns) =>
      f.requests.create(namespace, {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata: { name, ...metadata },
        spec: { service: "sign", params: { digest } },
      });
    await request("plain");
    await request("labelled", {
      labels: { "internal-services.appstudio.openshift.io/pipelinerun-uid": releaseUid },
    });
    await request("owned", {
      ownerReferences: [
        {
          apiVersion: "tekton.dev/v1beta1",
          kind: "CustomRun",
          name: "approval",
          uid: approval.metadata?.uid as string,
        },
      ],
    });
    await request("elsewhere", {}, unbound);

    const options = {
      remoteKubeconfig: remote.kubeconfigPath,
      workspaces: [`${remote.kubeConfig.getCurrentContext()}=${ns},${unbound}`],
      privateKubeconfig: priv.kubeconfigPath,
      namespace: f.privateNs,
      extraArgs: [
        "--leader-elect=false",
        "--log-level=debug",
        "--custom-tasks=false",
        "--heartbeat-namespace=",
      ],
    };
    const controller = await ControllerProcess.start(options);
    await controller.waitForReady();
    // Every request runs and succeeds.
    for (const [name, namespace] of [
      ["plain", ns],
      ["labelled", ns],
      ["owned", ns],
      ["elsewhere", unbound],
    ] as const) {
      const r = await f.waitForRequest(
        name,
        (x) => x.status?.pipelineRun !== undefined,
        "started",
        namespace,
      );
      await f.tekton.succeed(r.status?.pipelineRun?.split("/")[1] as string);
    }
    const gone = (name: string, namespace = ns) =>
      eventually(
        async () => ((await ignoreNotFound(f.requests.get(namespace, name))) ? undefined : true),
        `${name} deleted; logs:\n${controller.logs}`,
      );
    const logged = (pattern: RegExp, what: string) =>
      eventually(() => pattern.test(controller.logs) || undefined, `${what}; logs:\n${controller.logs}`);
    await gone("plain");
    await logged(
      /"name":"labelled".*finished request kept: a Tekton run still going refers to it/,
      "labelled kept",
    );
    await logged(
      /"name":"owned".*finished request kept: a Tekton run still going refers to it/,
      "owned kept",
    );
    await logged(
      /"name":"elsewhere".*cannot delete a finished request under requestRetention: bind the public retention Role/,
      "elsewhere refused",
    );
    for (const name of ["labelled", "owned"]) assert.ok(await f.requests.get(ns, name), `${name} kept`);
    assert.ok(await f.requests.get(unbound, "elsewhere"), "elsewhere kept");
    assert.match(controller.logs, /"referrer":"PipelineRun release-1"/);
    assert.match(controller.logs, /"referrer":"CustomRun approval"/);

    // The runs finish; the controller looks again (here: after a restart, rather than in 5 minutes).
    const done = { conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded", message: "" }] };
    await pipelineRuns.patchStatus(ns, "release-1", done);
    await customRuns.patchStatus(ns, "approval", done);
    await controller.kill("SIGTERM");
    await controller.exited;
    const again = await ControllerProcess.start(options);
    await again.waitForReady();
    await gone("labelled");
    await gone("owned");
    assert.ok(await f.requests.get(unbound, "elsewhere"), "still kept without the Role");
    await again.kill("SIGTERM");
  });
});
