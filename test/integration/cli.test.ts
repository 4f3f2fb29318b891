// `isc request …` as a real process against the real public plane, with an in-process controller and
// the test playing Tekton in the private cluster.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createNamespace, mintIdentity, uniqueName } from "../../envtest/cluster.ts";
import { freePort } from "../../envtest/controlplane.ts";
import { type CommandResult, runCommand } from "../../envtest/run-command.ts";
import { eventually } from "../../envtest/wait.ts";
import { ResourceClient } from "../../src/api/resources.ts";
import { explainError } from "../../src/cli/request-errors.ts";
import { Progress } from "../../src/cli/request-wait.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";
import { signService } from "../support/services.ts";

const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

const digest = "sha256:abcdef12";

type Run = CommandResult;

const running = new Set<ChildProcess>();
const tmp = mkdtempSync(join(tmpdir(), "isc-cli-test-"));
const emptyHome = join(tmp, "home");
after(() => {
  for (const child of running) child.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs `isc request …` as a process; it is killed (and the test fails) if it outlives timeoutMs. */
function isc(
  args: string[],
  opts: {
    env?: Record<string, string | undefined>;
    kubeconfig?: string;
    timeoutMs?: number;
    onSpawn?: (child: ChildProcess) => void;
  } = {},
): Promise<Run> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: emptyHome };
  const kubeconfig = "kubeconfig" in opts ? opts.kubeconfig : testPlanes().public.kubeconfigPath;
  if (kubeconfig) env.KUBECONFIG = kubeconfig;
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
  return runCommand(process.execPath, [cli, "request", ...args], {
    env,
    timeoutMs: opts.timeoutMs,
    onSpawn: (child) => {
      running.add(child);
      child.on("exit", () => running.delete(child));
      opts.onSpawn?.(child);
    },
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe("isc request", () => {
  let f: Fixture;
  let ns: string;
  let heartbeatNs: string;
  const heartbeatName = "internal-service-controller";
  before(async () => {
    f = await Fixture.create({
      config: (n) => ({ allowList: n }),
      services: { sign: signService },
      startController: false,
    });
    ns = f.namespaces[0] as string;
    heartbeatNs = await createNamespace(testPlanes().publicAdmin, uniqueName("heartbeat"));
    await f.startController({
      heartbeat: { namespace: heartbeatNs, name: heartbeatName, identity: "cli-test", intervalMs: 1000 },
    });
  });
  after(async () => {
    await f?.stop();
  });

  /** The PipelineRun the controller started for request `name`, once the request records it. */
  const runOf = async (name: string) => {
    const r = await f.waitForRequest(name, (x) => x.status?.pipelineRun !== undefined, "started");
    return (r.status?.pipelineRun ?? "").split("/")[1] as string;
  };

  it("create --wait prints progress and the results as JSON, exit 0", async () => {
    const proc = isc([
      "create",
      "-n",
      ns,
      "--service",
      "sign",
      "-p",
      `digest=${digest}`,
      "-l",
      "team=a",
      "--label",
      "release=r1",
      "--timeout",
      "30m",
      "--name",
      "cli-ok",
      "--wait",
    ]);
    const run = await runOf("cli-ok");
    await f.tekton.progress(run, 1, 3);
    await f.waitForRequest(
      "cli-ok",
      (r) => r.status?.conditions?.[0]?.message === "1/3 tasks completed",
      "progress",
    );
    await f.tekton.succeed(run, [
      { name: "signature", value: "c2ln" },
      { name: "digests", value: ["sha256:1"] },
    ]);
    const succeededAt = Date.now();
    const r = await proc;
    assert.ok(Date.now() - succeededAt < 15_000, "the watch (or the 2s poll) notices the change promptly");
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(JSON.parse(r.stdout), { signature: "c2ln", digests: '["sha256:1"]' });
    assert.match(r.stderr, new RegExp(`created InternalRequest ${ns}/cli-ok`));
    assert.match(r.stderr, /cli-ok: Running: 1\/3 tasks completed/);
    assert.match(r.stderr, /cli-ok: Succeeded/);
    const created = await f.requests.get(ns, "cli-ok");
    assert.deepEqual(created.metadata.labels, { team: "a", release: "r1" });
    assert.deepEqual(created.spec, { service: "sign", params: { digest }, timeouts: { pipeline: "30m" } });
  });

  it("create --generate-name --wait --results-dir writes one file per result", async () => {
    const dir = join(tmp, "results");
    const proc = isc([
      "create",
      "-n",
      ns,
      "--service=sign",
      `--param=digest=${digest}`,
      "--wait",
      "--results-dir",
      dir,
      "-l",
      "case=results-dir",
    ]);
    const request = await eventually(async () => {
      const page = await f.requests.list(ns, { labelSelector: "case=results-dir" });
      return page.items[0];
    }, "the created request");
    assert.match(request.metadata.name as string, /^sign-[a-z0-9]{5}$/, "default generateName is <service>-");
    await f.tekton.succeed(await runOf(request.metadata.name as string), [
      { name: "signature", value: "line1\nline2" },
      { name: "url", value: "https://example.test/x" },
    ]);
    const r = await proc;
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "", "--results-dir alone prints no JSON");
    assert.deepEqual(readdirSync(dir).sort(), ["signature", "url"]);
    assert.equal(readFileSync(join(dir, "signature"), "utf8"), "line1\nline2");
    assert.equal(readFileSync(join(dir, "url"), "utf8"), "https://example.test/x");
  });

  it("a failed request exits 21 with the failing task's message", async () => {
    const proc = isc([
      "create",
      "-n",
      ns,
      "--service",
      "sign",
      "-p",
      `digest=${digest}`,
      "--name",
      "cli-fail",
      "--wait",
    ]);
    await f.tekton.fail(
      await runOf("cli-fail"),
      { name: "sign", reason: "Failed", message: "key release-key-1 is revoked" },
      [{ name: "partial", value: "p" }],
    );
    const r = await proc;
    assert.equal(r.code, 21, show(r));
    assert.match(r.stderr, /isc: cli-fail Failed: task sign failed: Failed: key release-key-1 is revoked/);
    assert.deepEqual(JSON.parse(r.stdout), { partial: "p" }, "results are printed on failure too");
  });

  it("a rejected request (unknown service, params failing the schema) exits 21 with the policy's message", async () => {
    const unknown = await isc([
      "create",
      "-n",
      ns,
      "--service",
      "no-such-service",
      "--wait",
      "--timeout",
      "1m",
    ]);
    assert.equal(unknown.code, 21, show(unknown));
    assert.match(unknown.stderr, /Rejected: .*no-such-service.*does not exist/);
    const bad = await isc(["create", "-n", ns, "--service", "sign", "-p", "digest=md5:1234", "--wait"]);
    assert.equal(bad.code, 21, show(bad));
    assert.match(bad.stderr, /Rejected: .*digest.*pattern/);
    const extra = await isc([
      "create",
      "-n",
      ns,
      "--service",
      "sign",
      "-p",
      `digest=${digest}`,
      "-p",
      "evil=x",
      "--wait",
    ]);
    assert.equal(extra.code, 21, show(extra));
    assert.match(extra.stderr, /evil/);
  });

  it("wait -l waits for every matching request; any failure exits 21, results keyed by name", async () => {
    const labels = { batch: "b1" };
    await f.createRequest("batch-a", { service: "sign", params: { digest } }, { labels });
    await f.createRequest("batch-b", { service: "sign", params: { digest } }, { labels });
    let progress = "";
    const proc = isc(["wait", "-n", ns, "-l", "batch=b1", "--timeout", "2m"], {
      onSpawn: (child) =>
        child.stderr?.on("data", (chunk: Buffer) => {
          progress += chunk.toString();
        }),
    });
    let exited = false;
    void proc.then(() => {
      exited = true;
    });
    const [a, b] = [await runOf("batch-a"), await runOf("batch-b")];
    await f.tekton.succeed(a, [{ name: "out", value: "a" }]);
    await f.waitForReason("batch-a", "Succeeded");
    // The process has seen batch-a succeed while batch-b runs (its progress line says so) and goes on
    // waiting: it has not exited, and below it reports batch-b's failure, which comes only after this.
    await eventually(() => /^batch-a: Succeeded/m.test(progress), "isc wait to report batch-a's success");
    assert.equal(exited, false, `still waiting for batch-b; progress:\n${progress}`);
    await f.tekton.fail(b, { name: "publish", reason: "Failed", message: "registry down" });
    const r = await proc;
    assert.equal(r.code, 21, show(r));
    assert.match(r.stderr, /isc: batch-b Failed: .*registry down/);
    assert.doesNotMatch(r.stderr, /isc: batch-a/);
    assert.deepEqual(JSON.parse(r.stdout), { "batch-a": { out: "a" }, "batch-b": {} });

    const both = await isc(["wait", "-n", ns, "batch-a", "--results", "none"]);
    assert.equal(both.code, 0, show(both));
    assert.equal(both.stdout, "");
    const none = await isc(["wait", "-n", ns, "-l", "batch=nothing"]);
    assert.equal(none.code, 1, show(none));
    assert.match(none.stderr, /^isc: no InternalRequests match selector "batch=nothing"/);
  });

  it("wait --timeout exits 124 (and --cancel-on-timeout cancels)", async () => {
    await f.createRequest("slow", { service: "sign", params: { digest } });
    await runOf("slow");
    await f.waitForReason("slow", "Running");
    const started = Date.now();
    const r = await isc(["wait", "-n", ns, "slow", "--timeout", "2s", "--cancel-on-timeout"]);
    assert.equal(r.code, 124, show(r));
    assert.ok(Date.now() - started < 30_000);
    assert.match(r.stderr, /isc: timed out after 2s waiting for slow \(Running: /);
    assert.match(r.stderr, /isc: cancelled slow/);
    await f.waitForReason("slow", "Cancelled");
  });

  it("exits 22 when no controller takes a request up, saying when one was last seen", async () => {
    const unserved = await createNamespace(testPlanes().publicAdmin, uniqueName("unserved"));
    const lease = `${heartbeatNs}/${heartbeatName}`;
    const started = Date.now();
    const r = await isc([
      ...["create", "-n", unserved, "--service", "sign", "-p", `digest=${digest}`, "--name", "nobody"],
      ...["--wait", "--pickup-timeout", "2s", "--heartbeat-lease", lease],
    ]);
    assert.equal(r.code, 22, show(r));
    assert.ok(Date.now() - started < 30_000);
    assert.match(
      r.stderr,
      /isc: no controller has picked up nobody after 2s \(no status yet\); a controller is running \(seen \d+s ago: cli-test, serving InternalRequests and InternalRequest CustomRuns in 1 listed namespace of workspace public\), but has not taken this request up: it may not serve this namespace; ask the platform owners\n/,
    );
    // create --wait gives up for good: the request is cancelled, so a controller arriving later runs nothing.
    assert.equal((await f.requests.get(unserved, "nobody")).spec.status, "Cancelled");

    // No heartbeat at all; and --pickup-timeout 0 waits for the whole --timeout instead.
    const none = await isc([
      ...["wait", "-n", unserved, "nobody", "--pickup-timeout", "1s"],
      ...["--heartbeat-lease", `${heartbeatNs}/absent`],
    ]);
    assert.equal(none.code, 22, show(none));
    assert.match(
      none.stderr,
      new RegExp(
        `no controller has left a heartbeat in this cluster \\(Lease ${heartbeatNs}/absent not found\\): is one deployed and serving this cluster\\?`,
      ),
    );
    const patient = await isc(["wait", "-n", unserved, "nobody", "--pickup-timeout", "0", "--timeout", "2s"]);
    assert.equal(patient.code, 124, show(patient));
    const bad = await isc(["wait", "-n", unserved, "nobody", "--heartbeat-lease", "just-a-name"]);
    assert.equal(bad.code, 2, show(bad));
    assert.match(bad.stderr, /--heartbeat-lease: want NAMESPACE\/NAME, got "just-a-name"/);
  });

  it("create --wait cancels its request when it is terminated (SIGTERM), exit 143", async () => {
    let child: ChildProcess | undefined;
    let stderr = "";
    const proc = isc(
      ["create", "-n", ns, "--service", "sign", "-p", `digest=${digest}`, "--name", "cli-term", "--wait"],
      {
        onSpawn: (c) => {
          child = c;
          c.stderr?.on("data", (b: Buffer) => {
            stderr += b.toString();
          });
        },
      },
    );
    await runOf("cli-term");
    // It handles signals once it is waiting, and names the state it last saw: wait until that is Running
    // (the run exists before the request's status says so).
    await eventually(
      () => stderr.includes("cli-term: Running"),
      "create --wait has seen the request Running",
    );
    child?.kill("SIGTERM");
    const r = await proc;
    assert.equal(r.code, 143, show(r));
    assert.match(r.stderr, /isc: SIGTERM while waiting for cli-term \(Running/);
    assert.match(r.stderr, /isc: cancelled cli-term/);
    await f.waitForReason("cli-term", "Cancelled");
  });

  it("cancel sets spec.status Cancelled, and says when a request had already finished", async () => {
    await f.createRequest("to-cancel", { service: "sign", params: { digest } });
    await runOf("to-cancel");
    const r = await isc(["cancel", "-n", ns, "to-cancel"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "to-cancel: cancellation requested\n");
    assert.equal((await f.requests.get(ns, "to-cancel")).spec.status, "Cancelled");
    await f.waitForReason("to-cancel", "Cancelled");
    const again = await isc(["cancel", "-n", ns, "to-cancel"]);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /to-cancel: already finished \(Cancelled/);
    const waited = await isc(["wait", "-n", ns, "to-cancel"]);
    assert.equal(waited.code, 21, show(waited));
    assert.match(waited.stderr, /isc: to-cancel Cancelled/);
  });

  it("get, list and describe show the request, its PipelineRun, results and Events", async () => {
    await f.createRequest("shown", { service: "sign", params: { digest } }, { labels: { show: "yes" } });
    const run = await runOf("shown");
    await f.tekton.succeed(run, [{ name: "signature", value: "c2ln" }]);
    await f.waitForReason("shown", "Succeeded");

    const results = await isc(["get", "-n", ns, "shown"]);
    assert.equal(results.code, 0, show(results));
    assert.deepEqual(JSON.parse(results.stdout), { signature: "c2ln" });
    const json = await isc(["get", "shown", "-n", ns, "-o", "json"]);
    assert.equal((JSON.parse(json.stdout) as InternalRequest).status?.pipelineRun, `${f.privateNs}/${run}`);
    const yaml = await isc(["get", "shown", "-n", ns, "-o", "yaml"]);
    assert.match(yaml.stdout, /^apiVersion: appstudio.redhat.com\/v1alpha1\nkind: InternalRequest\n/);
    const wide = await isc(["get", "shown", "-n", ns, "-o", "wide"]);
    assert.match(wide.stdout, /^NAME\s+SERVICE\s+SUCCEEDED\s+REASON\s+AGE\s+PIPELINERUN\s+MESSAGE\n/);
    assert.match(
      wide.stdout,
      new RegExp(`shown\\s+sign\\s+True\\s+Succeeded\\s+\\d+s\\s+${f.privateNs}/${run}`),
    );

    const listed = await isc(["list", "-n", ns, "-l", "show=yes"]);
    assert.equal(listed.code, 0, show(listed));
    assert.equal(listed.stdout.split("\n")[0], "NAME    SERVICE   SUCCEEDED   REASON      AGE");
    assert.match(listed.stdout, /\nshown {3}sign {6}True {8}Succeeded {3}\d+s\n/);
    const all = await isc(["list", "-A", "-l", "show=yes"]);
    assert.match(all.stdout, /^NAMESPACE\s+NAME\s+SERVICE\s+SUCCEEDED\s+REASON\s+AGE\n/);
    assert.match(all.stdout, new RegExp(`\\n${ns}\\s+shown\\s+sign\\s+True\\s+Succeeded`));
    const names = await isc(["list", "-n", ns, "-l", "show=yes", "-o", "name"]);
    assert.equal(names.stdout, "shown\n");

    const described = await isc(["describe", "-n", ns, "shown"]);
    assert.equal(described.code, 0, show(described));
    const out = described.stdout;
    assert.match(out, /^Name:\s+shown\n/);
    assert.match(out, new RegExp(`\\nNamespace:\\s+${ns}\\n`));
    assert.match(out, /\nLabels:\s+show=yes\n/);
    assert.match(out, /\nService:\s+sign\n/);
    assert.match(out, /\nParams:\n {2}digest:\s+sha256:abcdef12\n/);
    assert.match(out, /\nStatus:\s+Succeeded \(Succeeded=True\)\n/);
    assert.match(out, new RegExp(`\\nPipelineRun:\\s+${f.privateNs}/${run} \\(private cluster\\)\\n`));
    assert.match(
      out,
      /\nConditions:\n {2}TYPE\s+STATUS\s+REASON\s+LAST TRANSITION\s+MESSAGE\n {2}Succeeded\s+True\s+Succeeded\s+\d{4}-/,
    );
    assert.match(out, /\nResults:\n {2}signature:\s+c2ln\n/);
    // A success has its status and no Event; a failure has both.
    assert.match(out, /\nEvents:\s+<none>\n/);
    await f.createRequest("failing", { service: "sign", params: { digest } });
    await f.tekton.fail(await runOf("failing"), { name: "sign", reason: "Failed", message: "no key" });
    await f.waitForReason("failing", "Failed");
    // Events are written asynchronously by the controller: wait for it.
    const failed = await eventually(async () => {
      const d = await isc(["describe", "-n", ns, "failing"]);
      return /Warning\s+Failed\s+\S+\s+internal-service-controller\s+task sign failed: Failed/.test(d.stdout)
        ? d
        : undefined;
    }, "describe shows the Failed event");
    assert.match(failed.stdout, /\nEvents:\n {2}TYPE\s+REASON\s+AGE\s+FROM\s+MESSAGE\n/);
  });

  it("describe lists dropped results", async () => {
    await f.createRequest("dropping", { service: "sign", params: { digest } });
    await f.tekton.succeed(await runOf("dropping"), [
      { name: "small", value: "ok" },
      { name: "huge", value: "x".repeat(100 * 1024) },
    ]);
    await f.waitForReason("dropping", "Succeeded");
    const d = await isc(["describe", "-n", ns, "dropping"]);
    assert.match(d.stdout, /\nDropped Results:\s+huge \(too large to copy\)\n/);
  });

  it("reports errors a user can act on, one line each", async () => {
    const oneLine = (r: Run) => {
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, show(r));
      assert.match(r.stderr, /^isc: /);
    };
    const port = await freePort(); // nothing listens there
    const unreachable = join(tmp, "unreachable.kubeconfig");
    writeFileSync(
      unreachable,
      `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`,
    );
    const [none, missing, refused, ctx, notFound, noNs, invalid, usage, badFlag, badDuration] =
      await Promise.all([
        // No kubeconfig anywhere (HOME is empty) and not in a cluster.
        isc(["list"], { kubeconfig: undefined }),
        isc(["list", "--kubeconfig", join(tmp, "nope")]),
        isc(["get", "x"], { kubeconfig: unreachable }),
        isc(["list", "--context", "nope"]),
        isc(["get", "-n", ns, "no-such-request"]),
        isc(["create", "-n", "no-such-namespace", "--service", "sign"]),
        // Invalid params: the CRD schema's 422, with the API's message.
        isc(["create", "-n", ns, "--service", "sign", "-p", "9bad=x", "--timeout", "1h"]),
        isc(["create", "-n", ns, "--service", "sign", "--pipeline-resolver", "git"]),
        isc(["wait", "x", "--frobnicate"]),
        isc(["wait", "x", "--timeout", "soon"]),
      ]);
    assert.equal(none.code, 2, show(none));
    oneLine(none);
    assert.match(none.stderr, /no kubeconfig: pass --kubeconfig PATH or set ISC_KUBECONFIG or KUBECONFIG/);
    assert.match(none.stderr, /no in-cluster config was found/);
    assert.equal(missing.code, 2, show(missing));
    assert.match(missing.stderr, /--kubeconfig .*nope.* does not exist/);

    assert.equal(refused.code, 1, show(refused));
    oneLine(refused);
    assert.match(
      refused.stderr,
      new RegExp(`cannot reach the API server https://127.0.0.1:${port} .*ECONNREFUSED`),
    );

    assert.equal(ctx.code, 2, show(ctx));
    assert.match(ctx.stderr, /context "nope" is not in the kubeconfig \(contexts: public\)/);

    assert.equal(notFound.code, 1, show(notFound));
    assert.equal(notFound.stderr, `isc: InternalRequest "no-such-request" not found in namespace "${ns}"\n`);
    assert.equal(noNs.code, 1, show(noNs));
    assert.match(noNs.stderr, /namespace "no-such-namespace" does not exist/);

    assert.equal(invalid.code, 1, show(invalid));
    oneLine(invalid);
    assert.match(
      invalid.stderr,
      /^isc: invalid request: InternalRequest.appstudio.redhat.com ".*" is invalid: .*param names must/,
    );

    assert.equal(usage.code, 2, show(usage));
    assert.match(usage.stderr, /give --service or --pipeline-resolver, not both/);
    assert.equal(badFlag.code, 2, show(badFlag));
    assert.match(badFlag.stderr, /--frobnicate.*\(see isc request wait --help\)/);
    assert.equal(badDuration.code, 2, show(badDuration));
    assert.match(badDuration.stderr, /--timeout: invalid duration "soon"/);
  });

  it("permission denied names the verb, resource and namespace", async () => {
    const planes = testPlanes();
    const reader = await mintIdentity(planes.public, planes.publicAdmin, {
      namespace: ns,
      name: "cli-reader",
      rules: [
        {
          apiGroups: ["appstudio.redhat.com"],
          resources: ["internalrequests"],
          verbs: ["get", "list", "watch"],
        },
      ],
    });
    // The identity's context carries its namespace: no -n needed.
    const listed = await isc(["list"], { kubeconfig: reader.kubeconfigPath });
    assert.equal(listed.code, 0, show(listed));
    const denied = await isc(["create", "--service", "sign", "-p", `digest=${digest}`], {
      kubeconfig: reader.kubeconfigPath,
    });
    assert.equal(denied.code, 1, show(denied));
    assert.equal(denied.stderr.trimEnd().split("\n").length, 1);
    assert.match(denied.stderr, /^isc: permission denied: /);
    assert.match(denied.stderr, /cannot create resource "internalrequests"/);
    assert.match(denied.stderr, new RegExp(`in the namespace "${ns}"`));
    await f.createRequest("not-yours", { service: "sign", params: { digest } });
    await runOf("not-yours");
    const cancel = await isc(["cancel", "not-yours"], { kubeconfig: reader.kubeconfigPath });
    assert.equal(cancel.code, 1, show(cancel));
    assert.match(cancel.stderr, /cannot patch resource "internalrequests"/);
  });

  it("maps a 404 on the resource itself (CRD not installed) apart from a missing object", async () => {
    const planes = testPlanes();
    // The real API server's answer for a resource it does not serve.
    const unserved = new ResourceClient(planes.publicAdmin, {
      group: "appstudio.redhat.com",
      version: "v1alpha1",
      plural: "internalrequestz",
      kind: "InternalRequestz",
    });
    const err = await unserved.get(ns, "x").then(
      () => assert.fail("expected a 404"),
      (e: unknown) => e,
    );
    const server = planes.public.server;
    assert.deepEqual(explainError(err, { server, namespace: ns }), {
      message: `the InternalRequest CRD is not installed on ${server}: kubectl apply -f crds/`,
      exitCode: 1,
    });
    const list = await unserved.list(ns).then(
      () => assert.fail("expected a 404"),
      (e: unknown) => e,
    );
    assert.match(explainError(list, { server }).message, /CRD is not installed/);
    // And a missing object is not mistaken for it.
    const missing = await f.requests.get(ns, "absent").catch((e: unknown) => e);
    assert.equal(
      explainError(missing, { server, namespace: ns }).message,
      `InternalRequest "absent" not found in namespace "${ns}"`,
    );
  });

  it("shows live progress lines on a terminal, rewriting them in place", () => {
    let out = "";
    const tty = {
      isTTY: true,
      columns: 60,
      write(s: string) {
        out += s;
        return true;
      },
    } as unknown as NodeJS.WriteStream;
    const progress = new Progress({ out: tty });
    const req = (name: string, reason?: string, message?: string): InternalRequest => ({
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name },
      spec: { service: "sign" },
      status: reason
        ? {
            conditions: [
              {
                type: "Succeeded",
                status: reason === "Running" ? "Unknown" : "True",
                reason,
                message: message ?? "",
                lastTransitionTime: new Date().toISOString(),
              },
            ],
          }
        : undefined,
    });
    const esc = "\x1b";
    progress.update([req("a"), req("bb", "Running", "accepted; internal PipelineRun started")]);
    assert.ok(out.includes(`${esc}[2K… a   Pending: waiting for the controller\n`), out);
    assert.ok(out.includes(`${esc}[2K… bb  Running: accepted; internal PipelineRun started\n`), out);
    out = "";
    progress.update([req("a", "Running", "2/5 tasks completed ".repeat(5)), req("bb", "Succeeded", "done")]);
    assert.ok(out.startsWith(`${esc}[3F${esc}[J`), "moves up over the previous three lines and clears them");
    assert.ok(out.includes("✓ bb  Succeeded: done\n"), out);
    const ansi = new RegExp(`${esc}\\[[0-9]*[A-Za-z]`, "g");
    for (const line of out.split("\n")) assert.ok(line.replace(ansi, "").length <= 59, line);
  });

  it("has help for request and each subcommand", async () => {
    const top = await isc(["--help"], { kubeconfig: undefined });
    assert.equal(top.code, 0, show(top));
    assert.match(top.stdout, /Usage: isc request <command>/);
    const subs = ["create", "wait", "get", "list", "describe", "cancel"];
    const helps = await Promise.all(subs.map((sub) => isc([sub, "--help"], { kubeconfig: undefined })));
    subs.forEach((sub, i) => {
      const r = helps[i] as Run;
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`^Usage: isc request ${sub}`));
      assert.match(r.stdout, /--kubeconfig PATH/);
    });
    const waitHelp = await isc(["wait", "-h"], { kubeconfig: undefined });
    assert.match(waitHelp.stdout, /0 all succeeded; 21 any failed.*124 --timeout passed first/s);
  });
});
