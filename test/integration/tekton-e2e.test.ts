// End to end with Tekton's real pipelines controller on the public plane: a release PipelineRun with
// an InternalRequest task, fulfilled in the private plane (the test plays the private Tekton), whose
// results feed a downstream task. No kubelet: downstream TaskRuns are completed by the test.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { CoreV1Api } from "@kubernetes/client-node";
import { ensureTools } from "../../envtest/binaries.ts";
import { TektonController } from "../../envtest/tekton-controller.ts";
import { eventually } from "../../envtest/wait.ts";
import { customRuns, pipelineRuns, ResourceClient, taskRuns } from "../../src/api/resources.ts";
import type { InternalServiceSpec } from "../../src/generated/crds.ts";
import type {
  V1beta1CustomRun,
  V1PipelineRun,
  V1PipelineTask,
  V1TaskRun,
} from "../../src/generated/tekton.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";

const service: InternalServiceSpec = {
  pipeline: { pipelineName: "sign" },
  paramsSchema: { type: "object", required: ["digest"], properties: { digest: { type: "string" } } },
};

const signTask: V1PipelineTask = {
  name: "sign",
  taskRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest", name: "sign" },
  params: [{ name: "digest", value: "$(params.digest)" }],
};

const echoSpec = (params: { name: string; type?: string }[]) => ({
  params,
  steps: [{ name: "echo", image: "registry.invalid/busybox", script: "echo never runs without a kubelet" }],
});

describe("Tekton end to end", { timeout: 300_000 }, () => {
  const planes = testPlanes();
  let tekton: TektonController;
  let f: Fixture;
  let ns: string;
  let prs: ResourceClient<V1PipelineRun>;
  let trs: ResourceClient<V1TaskRun>;
  let crs: ResourceClient<V1beta1CustomRun>;

  before(async () => {
    tekton = await TektonController.start(planes.public, planes.publicAdmin);
    f = await Fixture.create({ config: (n) => ({ allowList: n }), services: { sign: service } });
    ns = f.namespaces[0] as string;
    // Tekton reads the TaskRun's service account for credentials; no controller-manager creates it here.
    await planes.publicAdmin
      .makeApiClient(CoreV1Api)
      .createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });
    prs = new ResourceClient<V1PipelineRun>(planes.publicAdmin, pipelineRuns, "test");
    trs = new ResourceClient<V1TaskRun>(planes.publicAdmin, taskRuns, "test");
    crs = new ResourceClient<V1beta1CustomRun>(planes.publicAdmin, customRuns, "test");
  });
  after(async () => {
    await f?.stop();
    await tekton?.stop();
  });

  /** Runs Tekton's CLI (built from Go modules like the other binaries) against the public plane. */
  const tkn = async (...args: string[]) => {
    const dir = await ensureTools();
    const { stdout } = await promisify(execFile)(`${dir}/tkn`, args, {
      env: { ...process.env, KUBECONFIG: planes.public.kubeconfigPath, HOME: tmpdir(), NO_COLOR: "1" },
    });
    return stdout;
  };

  const startPipeline = (name: string, spec: NonNullable<V1PipelineRun["spec"]>) =>
    prs.create(ns, {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name },
      spec,
    } as V1PipelineRun);

  /** The private-side PipelineRun of the request made for `customRun`. */
  const internalRun = async (customRun: string) => {
    const request = await f.waitForRequest(
      `${customRun}-0`,
      (r) => r.status?.pipelineRun !== undefined,
      "internal run started",
    );
    return request.status?.pipelineRun?.split("/")[1] as string;
  };

  const completeTaskRun = async (name: string) => {
    await trs.patchStatus(ns, name, {
      podName: "",
      startTime: new Date().toISOString(),
      completionTime: new Date().toISOString(),
      conditions: [
        {
          type: "Succeeded",
          status: "True",
          reason: "Succeeded",
          message: "completed by the test (no kubelet)",
        },
      ],
    });
  };

  const waitPipeline = (name: string, reason?: string) =>
    eventually(
      async () => {
        const pr = await prs.get(ns, name);
        const c = pr.status?.conditions?.[0];
        return c && c.status !== "Unknown" && (!reason || c.reason === reason) ? pr : undefined;
      },
      `PipelineRun ${name} done${reason ? ` (${reason})` : ""}; Tekton logs:\n${tekton.logs.slice(-2000)}`,
      60_000,
    );

  it("feeds the request's results to a downstream task and a pipeline result", async () => {
    await startPipeline("release-ok", {
      params: [{ name: "digest", value: "sha256:feedface" }],
      pipelineSpec: {
        params: [{ name: "digest", type: "string" }],
        tasks: [
          signTask,
          {
            name: "publish",
            params: [
              { name: "signature", value: "$(tasks.sign.results.signature)" },
              { name: "digests", value: ["$(tasks.sign.results.digests[*])"] },
            ],
            taskSpec: echoSpec([{ name: "signature" }, { name: "digests", type: "array" }]),
          },
        ],
        results: [{ name: "signature", value: "$(tasks.sign.results.signature)" }],
      },
    });
    const run = await internalRun("release-ok-sign");
    const request = await f.requests.get(ns, "release-ok-sign-0");
    assert.deepEqual(
      request.spec.params,
      { digest: "sha256:feedface" },
      "pipeline params substituted by Tekton",
    );
    await f.tekton.succeed(run, [
      { name: "signature", value: "MEUCIQ-signature" },
      { name: "digests", value: ["sha256:1", "sha256:2"] },
    ]);
    const publish = await eventually(
      async () => {
        const items = (
          await trs.list(ns, {
            labelSelector: "tekton.dev/pipelineRun=release-ok,tekton.dev/pipelineTask=publish",
          })
        ).items;
        return items[0];
      },
      `downstream TaskRun created; Tekton logs:\n${tekton.logs.slice(-2000)}`,
      60_000,
    );
    assert.deepEqual(publish.spec?.params, [
      { name: "signature", value: "MEUCIQ-signature" },
      { name: "digests", value: ["sha256:1", "sha256:2"] },
    ]);
    await completeTaskRun(publish.metadata?.name as string);
    const done = await waitPipeline("release-ok", "Succeeded");
    assert.deepEqual(done.status?.results, [{ name: "signature", value: "MEUCIQ-signature" }]);
    const cr = await crs.get(ns, "release-ok-sign");
    assert.equal(cr.status?.conditions?.[0]?.reason, "Succeeded");

    // What people see with Tekton's real CLI.
    const list = await tkn("customrun", "list", "-n", ns);
    assert.match(list, /release-ok-sign\s+.*Succeeded/);
    const describe = await tkn("customrun", "describe", "release-ok-sign", "-n", ns);
    assert.match(describe, /Succeeded/);
    assert.match(describe, /digest\s+sha256:feedface/);
    assert.match(describe, /signature\s+MEUCIQ-signature/);
  });

  it("fails the PipelineRun when the internal run fails, with the request's message on the CustomRun", async () => {
    await startPipeline("release-fails", {
      params: [{ name: "digest", value: "sha256:1" }],
      pipelineSpec: { params: [{ name: "digest", type: "string" }], tasks: [signTask] },
    });
    const run = await internalRun("release-fails-sign");
    await f.tekton.fail(run, { name: "sign", reason: "Failed", message: "signing key expired" });
    const done = await waitPipeline("release-fails");
    assert.equal(done.status?.conditions?.[0]?.status, "False");
    const cr = await crs.get(ns, "release-fails-sign");
    assert.equal(cr.status?.conditions?.[0]?.status, "False");
    assert.match(cr.status?.conditions?.[0]?.message ?? "", /signing key expired/);
    const describe = await tkn("customrun", "describe", "release-fails-sign", "-n", ns);
    assert.match(describe, /Failed/);
    assert.match(describe, /signing key expired/);
  });

  it("cancelling the PipelineRun cancels the CustomRun and the internal PipelineRun", async () => {
    await startPipeline("release-cancel", {
      params: [{ name: "digest", value: "sha256:1" }],
      pipelineSpec: { params: [{ name: "digest", type: "string" }], tasks: [signTask] },
    });
    const run = await internalRun("release-cancel-sign");
    // Tekton cancels the children its PipelineRun's status lists: cancelled before the CustomRun is
    // recorded there (Tekton's status write then conflicts with the cancel), it is never cancelled.
    await eventually(async () => {
      const pr = await prs.get(ns, "release-cancel");
      return pr.status?.childReferences?.some((c) => c.name === "release-cancel-sign") || undefined;
    }, "the CustomRun recorded in the PipelineRun's status");
    await prs.mergePatch(ns, "release-cancel", { spec: { status: "Cancelled" } });
    const cr = await eventually(
      async () => {
        const c = await crs.get(ns, "release-cancel-sign");
        return c.status?.conditions?.[0]?.reason === "CustomRunCancelled" && c;
      },
      "CustomRun cancelled",
      60_000,
    ).catch(async (err: Error) => {
      // Which side stalled: Tekton (the CustomRun's spec.status) or the controller (the statuses).
      const c = await crs.get(ns, "release-cancel-sign");
      const r = await f.requests.get(ns, "release-cancel-sign-0").catch(() => undefined);
      const said = (x: { status?: { conditions?: { reason?: string; message?: string }[] } } | undefined) =>
        `${x?.status?.conditions?.[0]?.reason}: ${x?.status?.conditions?.[0]?.message}`;
      throw new Error(
        `${err.message}\nCustomRun spec.status ${c.spec?.status}, ${said(c)}\nrequest spec.status ${r?.spec?.status}, ${said(r)}`,
      );
    });
    assert.equal(cr.spec?.status, "RunCancelled");
    await f.waitForReason("release-cancel-sign-0", "Cancelled");
    await eventually(async () => {
      const live = await f.tekton.runs.get(f.privateNs, run).catch(() => undefined);
      return !live || live.spec?.status === "Cancelled";
    }, "internal PipelineRun cancelled");
    await waitPipeline("release-cancel", "Cancelled");
  });

  it("times out: a task timeout ends CustomRunTimedOut, timeouts.tasks cancels for timeout; finally tasks start", async () => {
    const finallyTask = { name: "notify", taskSpec: echoSpec([]) };
    await startPipeline("release-task-timeout", {
      params: [{ name: "digest", value: "sha256:1" }],
      pipelineSpec: {
        params: [{ name: "digest", type: "string" }],
        tasks: [{ ...signTask, timeout: "2s" }],
        finally: [finallyTask],
      },
    });
    await startPipeline("release-tasks-timeout", {
      params: [{ name: "digest", value: "sha256:1" }],
      timeouts: { pipeline: "1h", tasks: "3s" },
      pipelineSpec: {
        params: [{ name: "digest", type: "string" }],
        tasks: [signTask],
        finally: [finallyTask],
      },
    });
    const own = await eventually(
      async () => {
        const c = await crs.get(ns, "release-task-timeout-sign");
        return c.status?.conditions?.[0]?.status === "False" && c;
      },
      "task-timeout CustomRun done",
      60_000,
    );
    assert.equal(own.status?.conditions?.[0]?.reason, "CustomRunTimedOut");
    const byPipeline = await eventually(
      async () => {
        const c = await crs.get(ns, "release-tasks-timeout-sign");
        return c.status?.conditions?.[0]?.status === "False" && c;
      },
      "timeouts.tasks CustomRun done",
      60_000,
    );
    assert.equal(byPipeline.status?.conditions?.[0]?.reason, "CustomRunCancelled");
    assert.match(byPipeline.status?.conditions?.[0]?.message ?? "", /timed out/);
    for (const pr of ["release-task-timeout", "release-tasks-timeout"]) {
      await eventually(
        async () =>
          (
            await trs.list(ns, {
              labelSelector: `tekton.dev/pipelineRun=${pr},tekton.dev/pipelineTask=notify`,
            })
          ).items.length === 1,
        `finally task of ${pr} started`,
        60_000,
      );
    }
  });

  it("retries: a failing first attempt, success on the second", async () => {
    await startPipeline("release-retry", {
      params: [{ name: "digest", value: "sha256:1" }],
      pipelineSpec: { params: [{ name: "digest", type: "string" }], tasks: [{ ...signTask, retries: 1 }] },
    });
    const first = await internalRun("release-retry-sign");
    await f.tekton.fail(first, { name: "sign", reason: "Failed", message: "transient" });
    const second = await f.waitForRequest(
      "release-retry-sign-1",
      (r) => r.status?.pipelineRun !== undefined,
      "attempt 2",
    );
    await f.tekton.succeed(second.status?.pipelineRun?.split("/")[1] as string, [
      { name: "signature", value: "s2" },
    ]);
    await waitPipeline("release-retry", "Succeeded");
    const cr = await crs.get(ns, "release-retry-sign");
    assert.equal(cr.status?.retriesStatus?.length, 1);
    assert.deepEqual(cr.status?.results, [{ name: "signature", value: "s2" }]);
  });

  it("embedded taskSpec form, with dynamic values through params", async () => {
    await startPipeline("release-embedded", {
      params: [{ name: "digest", value: "sha256:embedded" }],
      pipelineSpec: {
        params: [{ name: "digest", type: "string" }],
        tasks: [
          {
            name: "sign",
            taskSpec: {
              apiVersion: "appstudio.redhat.com/v1alpha1",
              kind: "InternalRequest",
              spec: { service: "sign" },
            },
            params: [{ name: "digest", value: "$(params.digest)" }],
          } as V1PipelineTask,
        ],
      },
    });
    const run = await internalRun("release-embedded-sign");
    assert.deepEqual((await f.requests.get(ns, "release-embedded-sign-0")).spec, {
      service: "sign",
      params: { digest: "sha256:embedded" },
    });
    await f.tekton.succeed(run, [{ name: "signature", value: "e" }]);
    await waitPipeline("release-embedded", "Succeeded");
  });
});
