// The controller as a real process: crash consistency and leader election.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { eventually } from "../../envtest/wait.ts";
import type { InternalServiceSpec } from "../../src/generated/crds.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const service: InternalServiceSpec = {
  pipeline: { pipelineName: "publish" },
  paramsSchema: { type: "object", properties: { version: { type: "string" } } },
};

describe("controller process", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  after(async () => {
    await Promise.all(fixtures.map((f) => f.stop()));
  });
  const setup = async () => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { publish: service },
      startController: false,
    });
    fixtures.push(f);
    const opts = {
      remoteKubeconfig: planes.public.kubeconfigPath,
      workspaces: [`public=${f.namespaces[0]}`],
      privateKubeconfig: planes.private.kubeconfigPath,
      namespace: f.privateNs,
    };
    return { f, opts };
  };

  it("never creates a second PipelineRun after a crash between create and the status write", async () => {
    const { f, opts } = await setup();
    const crashing = await ControllerProcess.start({
      ...opts,
      extraArgs: ["--leader-elect=false"],
      env: { ISC_TEST_FAILPOINT: "crash-after-pipelinerun-create" },
    });
    await f.createRequest("crash-1", { service: "publish", params: { version: "1.0" } });
    const exit = await crashing.exited;
    assert.equal(
      exit.signal,
      "SIGKILL",
      `the failpoint should have killed the process; logs:\n${crashing.logs}`,
    );
    const [run] = await f.tekton.waitForRuns(1);
    const stale = await f.requests.get(f.namespaces[0] as string, "crash-1");
    assert.equal(stale.status?.pipelineRun, undefined, "the crash happened before the status write");

    const restarted = await ControllerProcess.start({ ...opts, extraArgs: ["--leader-elect=false"] });
    await restarted.waitForReady();
    const adopted = await f.waitForRequest(
      "crash-1",
      (r) => r.status?.pipelineRun !== undefined,
      "run adopted",
    );
    assert.equal(adopted.status?.pipelineRun, `${f.privateNs}/${run?.metadata?.name}`);
    assert.equal((await f.tekton.list()).length, 1, "exactly one PipelineRun");
    await f.tekton.succeed(run?.metadata?.name as string, [{ name: "url", value: "https://x" }]);
    const done = await f.waitForReason("crash-1", "Succeeded");
    assert.deepEqual(done.status?.results, { url: "https://x" });
    await restarted.kill("SIGTERM");
  });

  it("runs two replicas with leader election: only the leader works, a standby takes over", async () => {
    const { f, opts } = await setup();
    const leaderArgs = [
      "--leader-elect=true",
      "--leader-lease-duration=3s",
      "--leader-renew-deadline=2s",
      "--leader-retry-period=250ms",
    ];
    const a = await ControllerProcess.start({ ...opts, extraArgs: leaderArgs });
    await a.waitForReady();
    const leases = planes.privateAdmin.makeApiClient(CustomObjectsApi);
    const lease = () =>
      leases.getNamespacedCustomObject({
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        namespace: f.privateNs,
        name: "internal-service-controller",
      }) as Promise<{ spec: { holderIdentity: string; leaseTransitions: number } }>;
    const first = await eventually(
      async () => (await lease()).spec.holderIdentity.endsWith(`_${a.child.pid}`) && lease(),
      "a holds the lease",
    );
    const b = await ControllerProcess.start({ ...opts, extraArgs: leaderArgs });
    await b.waitForReady(); // a standby is ready (not leading) so rollouts proceed

    await f.createRequest("le-1", { service: "publish" });
    await f.waitForRequest("le-1", (r) => r.status?.pipelineRun !== undefined, "started by the leader");
    // The status write lands before the reconcile returns and is counted: wait for the count.
    await eventually(
      async () => (await a.metric("controller_runtime_reconcile_total")) > 0,
      "the leader reconciled",
    );
    assert.equal(await b.metric("controller_runtime_reconcile_total"), 0, "the standby did not reconcile");
    assert.equal(await a.metric("leader_election_master_status"), 1);
    assert.equal(await b.metric("leader_election_master_status"), 0);

    const killedAt = Date.now();
    await a.kill("SIGKILL");
    await eventually(
      async () => (await lease()).spec.holderIdentity.endsWith(`_${b.child.pid}`),
      "b takes over",
      15_000,
    );
    const takeoverMs = Date.now() - killedAt;
    assert.ok(
      takeoverMs < 3_000 + 2_000 + 1_000,
      `takeover within lease duration + renew deadline (took ${takeoverMs} ms)`,
    );
    assert.equal((await lease()).spec.leaseTransitions, first.spec.leaseTransitions + 1);

    await f.createRequest("le-2", { service: "publish" });
    await f.waitForRequest("le-2", (r) => r.status?.pipelineRun !== undefined, "started by the new leader");
    assert.equal((await f.tekton.list()).length, 2, "one run per request, none duplicated");
    await b.kill("SIGTERM");
  });
});
