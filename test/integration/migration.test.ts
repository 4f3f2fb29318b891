// Taking over from the original Go controller: requests in each of the shapes it leaves behind, made
// while this controller is stopped, then this controller starts. Every one reaches the right terminal
// state, deletions complete, and no run is created twice (the Go controller's runs are followed).
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { eventually } from "../../envtest/wait.ts";
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
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });

  it("takes over every request shape it leaves, with no manual step", async () => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { sign: { pipeline: { pipelineName: "sign" } } },
      startController: false,
    });
    fixtures.push(f);
    const ns = f.namespaces[0] as string;
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
});
