// Taking over from the original Go controller: requests in each of the shapes it leaves behind, made
// while this controller is stopped, then this controller starts. Every one reaches the right terminal
// state, deletions complete, and no run is created twice (the Go controller's runs are followed).
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { KubernetesObjectApi } from "@kubernetes/client-node";
import { applyObjects, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import type { InternalRequest, InternalRequestStatus } from "../../src/generated/crds.ts";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";
import {
  legacyFinalizer,
  managedSelector,
  requestNameLabel,
  requestNamespaceLabel,
} from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";

const at = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");
const goRunning = (pipelineRun?: string): InternalRequestStatus => ({
  conditions: [
    { type: "Succeeded", status: "False", reason: "Running", message: "", lastTransitionTime: at() },
  ],
  startTime: at(),
  ...(pipelineRun ? { pipelineRun } : {}),
});
const goSucceeded = (pipelineRun: string): InternalRequestStatus => ({
  conditions: [
    { type: "Succeeded", status: "True", reason: "Succeeded", message: "", lastTransitionTime: at() },
  ],
  startTime: at(),
  completionTime: at(),
  pipelineRun,
  results: { result: "Success" },
});

describe("migration from the Go controller", () => {
  const fixtures: Fixture[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await Promise.all(fixtures.map((f) => f.stop()));
  });
  /** A service "sign" and a namespace allowed to use it; the controller not started yet. */
  const setup = async () => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { sign: { pipeline: { pipelineName: "sign" } } },
      startController: false,
    });
    fixtures.push(f);
    return { f, ns: f.namespaces[0] as string };
  };

  it("takes over every request shape it leaves, with no manual step", async () => {
    const { f, ns } = await setup();
    /** A run as the Go controller creates it: generated name, the request's name/namespace labels. */
    const goRun = async (request: string, state?: "succeeded") => {
      const run = await f.tekton.runs.create(f.privateNs, {
        apiVersion: "tekton.dev/v1",
        kind: "PipelineRun",
        metadata: {
          generateName: `${request}-`,
          labels: { [requestNameLabel]: request, [requestNamespaceLabel]: ns },
        },
        spec: { pipelineRef: { name: "sign" } },
      } as V1PipelineRun);
      const name = run.metadata?.name as string;
      if (state === "succeeded") await f.tekton.succeed(name, [{ name: "result", value: "Success" }]);
      else await f.tekton.progress(name, 0, 1);
      return name;
    };
    const request = async (name: string, status?: InternalRequestStatus, finalizers?: string[]) => {
      await f.requests.create(ns, {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata: { name, ...(finalizers ? { finalizers } : {}) },
        spec: { service: "sign" },
      } as InternalRequest);
      if (status) await f.requests.patchStatus(ns, name, status);
    };
    const go = [legacyFinalizer];

    /** A request the Go controller took up: the request, then its run (always created after it), then
     *  the status it wrote (naming the run, or not yet). */
    const takenUp = async (
      name: string,
      status: (run: string) => InternalRequestStatus,
      state?: "succeeded",
    ) => {
      await request(name, undefined, go);
      const run = await goRun(name, state);
      await f.requests.patchStatus(ns, name, status(`${f.privateNs}/${run}`));
      return run;
    };

    // While this controller is stopped, the Go controller's leftovers:
    await request("new"); // never picked up
    const running = await takenUp("running", goRunning);
    const doneWhileDown = await takenUp("done-while-down", goRunning, "succeeded");
    const done = await takenUp("done", goSucceeded, "succeeded");
    const goingWhenDeleted = await takenUp("going-when-deleted", goRunning);
    await request("lost-run", goRunning(`${f.privateNs}/lost-run-gone`), go);
    // Created, the Go controller stopped before recording it:
    const unrecorded = await takenUp("unrecorded", () => goRunning());
    const other = await goRun("someone-else");
    await request("forged", goRunning(`${f.privateNs}/${other}`), go);
    const goRuns = (await f.tekton.list()).length;

    await f.startController();

    // Followed to the end: the Go controller's runs, not new ones.
    await f.tekton.succeed(running, [{ name: "result", value: "Success" }]);
    for (const name of ["running", "done-while-down"]) {
      const r = await f.waitForReason(name, "Succeeded");
      assert.deepEqual(r.status?.results, { result: "Success" });
    }
    await f.waitForRequest(
      "unrecorded",
      (r) => r.status?.pipelineRun === `${f.privateNs}/${unrecorded}`,
      "adopted",
    );
    await f.tekton.succeed(unrecorded, [{ name: "result", value: "Success" }]);
    await f.waitForReason("unrecorded", "Succeeded");
    assert.equal(
      (await f.waitForReason("lost-run", "Failed")).status?.conditions?.[0]?.message,
      "internal PipelineRun lost-run-gone was deleted before it finished",
    );
    assert.match(
      (await f.waitForReason("forged", "Failed")).status?.conditions?.[0]?.message ?? "",
      new RegExp(
        `^a PipelineRun named ${other} exists in the private cluster but was not created for this request`,
      ),
    );
    // The one never picked up runs as this controller's own.
    const [ours] = await eventually(async () => {
      const managed = (await f.tekton.runs.list(f.privateNs, { labelSelector: managedSelector })).items;
      return managed.length === 1 ? managed : undefined;
    }, "one run of this controller's");
    await f.tekton.succeed(ours?.metadata?.name as string);
    await f.waitForReason("new", "Succeeded");

    // Deletions complete: the Go finalizer is released, a going run cancelled, finished runs deleted.
    for (const name of ["done", "going-when-deleted"]) await f.requests.delete(ns, name);
    await eventually(async () => {
      const left = (await f.requests.list(ns)).items.map((r) => r.metadata.name);
      return !left.includes("done") && !left.includes("going-when-deleted") ? true : undefined;
    }, "deletions complete");
    const remaining = new Set((await f.tekton.list()).map((r) => r.metadata?.name));
    for (const name of [running, doneWhileDown, done, goingWhenDeleted, unrecorded]) {
      assert.equal(remaining.has(name), false, `${name} deleted`);
    }
    assert.equal(remaining.has(other), true, "a run that is not the request's is never touched");
    // Finished requests keep no finalizer of either controller.
    for (const name of ["running", "done-while-down", "unrecorded", "lost-run", "forged", "new"]) {
      const r = await f.requests.get(ns, name);
      assert.deepEqual(r.metadata.finalizers ?? [], [], name);
    }
    console.log(`migration: ${goRuns} Go runs followed or left alone, 1 run of this controller's`);
  });

  it("deletes a finished Go run whose first deletes were refused, on the retry (no watch of ours shows it)", async () => {
    const { f, ns } = await setup();
    // The private API server refuses deleting labelled runs in this namespace while the binding exists.
    const refuse = "isc.test/refuse-delete";
    const policy = uniqueName("isc-refuse-delete");
    const binding = {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name: policy },
      spec: {
        policyName: policy,
        validationActions: ["Deny"],
        matchResources: {
          namespaceSelector: {
            matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: [f.privateNs] }],
          },
        },
      },
    };
    await applyObjects(f.privateKc, [
      {
        apiVersion: "admissionregistration.k8s.io/v1",
        kind: "ValidatingAdmissionPolicy",
        metadata: { name: policy },
        spec: {
          failurePolicy: "Fail",
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ["tekton.dev"],
                apiVersions: ["*"],
                operations: ["DELETE"],
                resources: ["pipelineruns"],
              },
            ],
          },
          validations: [
            {
              expression: `!has(oldObject.metadata.labels) || !('${refuse}' in oldObject.metadata.labels)`,
              message: "deletes refused by the test",
            },
          ],
        },
      } as never,
      binding as never,
    ]);
    const objects = KubernetesObjectApi.makeApiClient(f.privateKc);
    cleanups.push(() => objects.delete(binding as never).catch(() => undefined));
    cleanups.push(() =>
      objects.delete({ ...binding, kind: "ValidatingAdmissionPolicy" } as never).catch(() => undefined),
    );
    const labelled = (name: string, request?: string) =>
      f.tekton.runs.create(f.privateNs, {
        apiVersion: "tekton.dev/v1",
        kind: "PipelineRun",
        metadata: {
          name,
          labels: {
            [refuse]: "true",
            ...(request ? { [requestNameLabel]: request, [requestNamespaceLabel]: ns } : {}),
          },
        },
        spec: { pipelineRef: { name: "sign" } },
      } as V1PipelineRun);
    // In force once a labelled probe can no longer be deleted.
    let probes = 0;
    await eventually(async () => {
      const probe = `probe-${probes++}`;
      await labelled(probe);
      const refused = await f.tekton.runs.delete(f.privateNs, probe).then(
        () => false,
        // Denied by the policy: 422 for a delete on this API server.
        (err: unknown) => /ValidatingAdmissionPolicy/.test(apiStatus(err)?.message ?? ""),
      );
      return refused ? true : undefined;
    }, "the delete-refusing policy in force");

    // The Go controller's leftover: a request it took up, then its run (always created after it),
    // which succeeded while no controller ran.
    await f.requests.create(ns, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: "refused", finalizers: [legacyFinalizer] },
      spec: { service: "sign" },
    } as InternalRequest);
    const run = "go-refused";
    await labelled(run, "refused");
    await f.tekton.succeed(run, [{ name: "result", value: "Success" }]);
    await f.requests.patchStatus(ns, "refused", goRunning(`${f.privateNs}/${run}`));

    await f.startController();
    const done = await f.waitForReason("refused", "Succeeded");
    assert.deepEqual(done.status?.results, { result: "Success" });
    assert.ok(await f.tekton.runs.get(f.privateNs, run), "its deletion refused, the run is still there");
    await objects.delete(binding as never);
    await eventually(
      async () => ((await f.tekton.list()).some((r) => r.metadata?.name === run) ? undefined : true),
      "the Go run deleted once the API server lets it",
    );
  });
});
