// Keeps samples/ and tasks/ valid: every object is created for real on the plane it belongs to (private:
// the policy, the service, the internal Pipeline; public: requests, release PipelineRuns, the Task) and
// read back intact; broken copies are rejected by the CRD schemas; the samples agree with each other under
// the controller's own admission rules; and the internal-request Task's script runs against the public
// plane (no Tekton webhook runs here, so Tekton kinds are checked by their CRDs' structural schemas only).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { ensureTools } from "../../envtest/binaries.ts";
import { createNamespace, readYamlObjects, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import {
  internalRequests,
  leases as leaseType,
  ResourceClient,
  type ResourceType,
} from "../../src/api/resources.ts";
import { plannedSpec } from "../../src/customtask/request.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "../../src/generated/crds.ts";
import type {
  V1beta1CustomRun,
  V1PipelineRun,
  V1PipelineTask,
  V1TaskSpec,
} from "../../src/generated/tekton.ts";
import { admit } from "../../src/policy/admit.ts";
import { servingAnnotation } from "../../src/runtime/heartbeat.ts";
import { testPlanes } from "../support/planes.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
/** Kinds that live in the private cluster; everything else is created where release pipelines run. */
const privateKinds = new Set(["InternalServicesConfig", "InternalService", "Pipeline"]);

type Obj = KubernetesObject & { spec?: Record<string, unknown> };
type Task = KubernetesObject & { spec?: V1TaskSpec };
interface Sample {
  file: string;
  object: Obj;
}

async function loadSamples(): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const dir of ["samples", "tasks"]) {
    const files = (await readdir(join(repoRoot, dir))).filter((f) => f.endsWith(".yaml")).sort();
    for (const f of files) {
      const text = await readFile(join(repoRoot, dir, f), "utf8");
      assert.match(text, /^# \S/, `${dir}/${f} starts with a header comment`);
      for (const object of await readYamlObjects(join(repoRoot, dir, f))) {
        samples.push({ file: `${dir}/${f}`, object: object as Obj });
      }
    }
  }
  return samples;
}

/** group/version/plural of a CR from its apiVersion and kind (every kind here pluralises with "s"). */
function resourceOf(obj: KubernetesObject): ResourceType {
  const [group, version] = (obj.apiVersion ?? "").split("/") as [string, string];
  const kind = obj.kind as string;
  return { group, version, kind, plural: `${kind.toLowerCase()}s` };
}

const clientFor = (kc: KubeConfig, obj: KubernetesObject) =>
  new ResourceClient<Obj>(kc, resourceOf(obj), "samples-test");

/** Every value in `expected` is in `actual` unchanged: nothing was pruned (defaults may be added). */
function assertKept(actual: unknown, expected: unknown, path: string): void {
  if (expected !== null && typeof expected === "object") {
    assert.ok(actual !== null && typeof actual === "object", `${path} was dropped`);
    if (Array.isArray(expected)) {
      assert.ok(Array.isArray(actual), `${path} is no longer a list`);
      assert.equal(actual.length, expected.length, `${path} changed length`);
    }
    for (const [key, value] of Object.entries(expected)) {
      assertKept((actual as Record<string, unknown>)[key], value, `${path}.${key}`);
    }
    return;
  }
  assert.equal(actual, expected, `${path} changed`);
}

const isUnprocessable = (pattern: RegExp) => (err: unknown) => {
  const e = err as { code?: number; message?: string; body?: unknown };
  assert.equal(e.code, 422, `expected 422, got ${e.code}: ${e.message}`);
  assert.match(`${e.message} ${String(e.body)}`, pattern);
  return true;
};

describe("samples and tasks", () => {
  const planes = testPlanes();
  let samples: Sample[];
  let publicNs: string;
  let privateNs: string;
  /** file -> the object as the API server stored it. */
  const stored = new Map<string, Obj>();

  const planeOf = (obj: KubernetesObject) =>
    privateKinds.has(obj.kind as string)
      ? { kc: planes.privateAdmin, ns: privateNs }
      : { kc: planes.publicAdmin, ns: publicNs };
  const storedOf = <T>(file: string) => {
    const obj = stored.get(file);
    assert.ok(obj, `${file} was created`);
    return obj as T;
  };

  before(async () => {
    samples = await loadSamples();
    publicNs = await createNamespace(planes.publicAdmin, uniqueName("samples"));
    privateNs = await createNamespace(planes.privateAdmin, uniqueName("samples-private"));
  });

  it("every file holds objects without a namespace", () => {
    const files = new Set(samples.map((s) => s.file));
    for (const expected of [
      "samples/internalservicesconfig.yaml",
      "samples/internalservice-sign-artifact.yaml",
      "samples/internalrequest.yaml",
      "samples/internalrequest-raw-pipeline.yaml",
      "samples/release-pipelinerun.yaml",
      "samples/release-pipelinerun-embedded.yaml",
      "tasks/internal-request.yaml",
      "tasks/example-internal-pipeline.yaml",
    ]) {
      assert.ok(files.has(expected), `${expected} exists`);
    }
    assert.equal(files.size, samples.length, "one object per file");
    for (const { file, object } of samples) {
      assert.equal(object.metadata?.namespace, undefined, `${file} leaves metadata.namespace out`);
    }
  });

  it("creates every object on its plane and reads it back intact", async () => {
    for (const { file, object } of samples) {
      const { kc, ns } = planeOf(object);
      const client = clientFor(kc, object);
      const created = await client.create(ns, object).catch((err: Error) => {
        throw new Error(`${file}: create failed: ${err.message}`);
      });
      const name = created.metadata?.name as string;
      const back = await client.get(ns, name);
      assertKept(back.spec, object.spec, `${file} spec`);
      assertKept(back.metadata?.labels ?? {}, object.metadata?.labels ?? {}, `${file} metadata.labels`);
      stored.set(file, back);
    }

    const service = storedOf<InternalService>("samples/internalservice-sign-artifact.yaml");
    const schema = service.spec.paramsSchema as { properties: Record<string, { pattern?: string }> };
    assert.equal(schema.properties.digest?.pattern, "^sha256:[a-f0-9]{64}$", "paramsSchema kept");
    assert.equal(service.spec.maxConcurrentRuns, 4);
    const config = storedOf<InternalServicesConfig>("samples/internalservicesconfig.yaml");
    assert.equal(config.metadata.name, "config");
    assert.deepEqual(
      config.spec?.allowedPipelineSources?.map((s) => s.resolver),
      ["git", "bundles"],
    );
    const request = storedOf<InternalRequest>("samples/internalrequest.yaml");
    assert.match(request.metadata.name ?? "", /^sign-artifact-/);
    assert.equal(request.spec.service, "sign-artifact");

    const byRef = storedOf<V1PipelineRun>("samples/release-pipelinerun.yaml");
    const [sign, publish] = byRef.spec?.pipelineSpec?.tasks ?? [];
    assert.deepEqual(sign?.taskRef, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      name: "sign-artifact",
    });
    assert.ok(publish?.params?.some((p) => p.value === "$(tasks.sign.results.signature)"));
    assert.equal(byRef.spec?.pipelineSpec?.results?.[0]?.value, "$(tasks.sign.results.signature)");
    const embedded = storedOf<V1PipelineRun>("samples/release-pipelinerun-embedded.yaml");
    const embeddedSign = embedded.spec?.pipelineSpec?.tasks?.[0]?.taskSpec as Record<string, unknown>;
    assert.equal(embeddedSign.kind, "InternalRequest");
    assert.equal((embeddedSign.spec as { service?: string }).service, "sign-artifact");

    const task = storedOf<Task>("tasks/internal-request.yaml");
    assert.ok(task.spec?.steps?.[0]?.script?.includes("kubectl create"));
    const pipeline = storedOf<Obj>("tasks/example-internal-pipeline.yaml");
    assert.equal(
      pipeline.metadata?.name,
      "sign-artifact",
      "the name the InternalService's pipelineName uses",
    );
  });

  it("the CRD schemas reject broken copies with 422", async () => {
    const original = (file: string) => {
      const found = samples.find((s) => s.file === file);
      assert.ok(found, file);
      return structuredClone(found.object);
    };
    const rawPipeline = original("samples/internalrequest-raw-pipeline.yaml").spec?.pipeline;
    const broken: [string, Obj, RegExp][] = [
      [
        "request with both service and pipeline",
        (() => {
          const o = original("samples/internalrequest.yaml");
          (o.spec as Record<string, unknown>).pipeline = rawPipeline;
          return o;
        })(),
        /exactly one of service/,
      ],
      [
        "request with a non-string param",
        (() => {
          const o = original("samples/internalrequest.yaml");
          (o.spec as { params: Record<string, unknown> }).params.digest = 42;
          return o;
        })(),
        /spec\.params\.digest/,
      ],
      [
        "service with maxConcurrentRuns 0",
        (() => {
          const o = original("samples/internalservice-sign-artifact.yaml");
          (o.spec as Record<string, unknown>).maxConcurrentRuns = 0;
          return o;
        })(),
        /maxConcurrentRuns/,
      ],
      [
        "config with an unknown resolver",
        (() => {
          const o = original("samples/internalservicesconfig.yaml");
          (o.spec as { allowedPipelineSources: { resolver: string }[] }).allowedPipelineSources[0] = {
            resolver: "ftp",
          };
          return o;
        })(),
        /resolver/,
      ],
    ];
    for (const [what, object, pattern] of broken) {
      const { kc, ns } = planeOf(object);
      await assert.rejects(clientFor(kc, object).create(ns, object), isUnprocessable(pattern), what);
    }
  });

  it("the samples agree: the requests and release PipelineRuns are admitted by the sample policy", () => {
    const config = storedOf<InternalServicesConfig>("samples/internalservicesconfig.yaml").spec;
    const service = storedOf<InternalService>("samples/internalservice-sign-artifact.yaml");
    const check = (what: string, request: InternalRequest["spec"], namespace = "releng-tenant") => {
      const decision = admit({ workspace: "prod", namespace, request, config, service });
      assert.ok(decision.allowed, `${what}: ${decision.allowed ? "" : decision.message}`);
      return decision.run;
    };
    const ours = check(
      "internalrequest.yaml",
      storedOf<InternalRequest>("samples/internalrequest.yaml").spec,
    );
    assert.equal(ours.pipelineName, "sign-artifact");
    assert.deepEqual(ours.sensitiveParams, ["keyId"]);
    check(
      "internalrequest.yaml from prod/release-team",
      storedOf<InternalRequest>("samples/internalrequest.yaml").spec,
      "release-team",
    );
    const raw = check(
      "internalrequest-raw-pipeline.yaml",
      storedOf<InternalRequest>("samples/internalrequest-raw-pipeline.yaml").spec,
    );
    assert.equal(raw.pipelineRef?.resolver, "git");

    // The request the custom task makes for each release PipelineRun's "sign" task.
    for (const file of ["samples/release-pipelinerun.yaml", "samples/release-pipelinerun-embedded.yaml"]) {
      const pr = storedOf<V1PipelineRun>(file);
      const digest = pr.spec?.params?.find((p) => p.name === "digest")?.value as string;
      const task = pr.spec?.pipelineSpec?.tasks?.find((t) => t.name === "sign") as V1PipelineTask;
      const run = {
        metadata: { name: "release-sign", namespace: "releng-tenant" },
        spec: {
          ...(task.taskRef ? { customRef: task.taskRef } : { customSpec: task.taskSpec }),
          params: task.params?.map((p) => ({
            name: p.name,
            value: p.value === "$(params.digest)" ? digest : p.value,
          })),
        },
      } as V1beta1CustomRun;
      const planned = plannedSpec(run);
      assert.ok(planned.ok, `${file}: ${planned.ok ? "" : planned.message}`);
      const plan = check(file, planned.spec);
      assert.equal(plan.params.digest, digest, file);
      assert.ok(plan.params.keyId, `${file}: keyId filled in`);
    }
  });
});

// kubectl and jq (gojq) are built from Go modules like the control planes, so this always runs.
describe("tasks/internal-request.yaml step script", { concurrency: true }, () => {
  const planes = testPlanes();
  const requests = new ResourceClient<InternalRequest>(planes.publicAdmin, internalRequests, "samples-test");
  let ns: string;
  let task: Task;
  let dir: string;
  let toolsDir: string;

  before(async () => {
    toolsDir = await ensureTools();
    ns = await createNamespace(planes.publicAdmin, uniqueName("samples-task"));
    task = (await readYamlObjects(join(repoRoot, "tasks/internal-request.yaml")))[0] as Task;
    dir = await mkdtemp(join(tmpdir(), "isc-task-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Runs the step as Tekton would: params and context substituted into env, results to files. */
  const runStep = async (params: Record<string, string>) => {
    const step = task.spec?.steps?.[0];
    const script = step?.script as string;
    assert.doesNotMatch(script, /\$\(params\./, "params reach the script only through env");
    const uid = uniqueName("pr-uid");
    const out = await mkdtemp(join(dir, "run-"));
    const vars: Record<string, string> = {
      "context.taskRun.name": "release-sign",
      "context.taskRun.namespace": ns,
    };
    for (const p of task.spec?.params ?? []) {
      const value = params[p.name] ?? (p.default as string | undefined);
      if (value !== undefined) vars[`params.${p.name}`] = value;
    }
    for (const r of task.spec?.results ?? []) vars[`results.${r.name}.path`] = join(out, r.name);
    const substitute = (s: string) => s.replace(/\$\(([^)]+)\)/g, (m, key: string) => vars[key] ?? m);
    const env: Record<string, string> = {
      PATH: `${toolsDir}:${process.env.PATH ?? ""}`,
      KUBECONFIG: planes.public.kubeconfigPath,
      HOME: out, // kubectl keeps its discovery cache under $HOME/.kube
    };
    for (const e of step?.env ?? []) {
      if (e.value !== undefined) env[e.name] = substitute(substitute(e.value));
      else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.labels['tekton.dev/pipelineRunUID']") {
        env[e.name] = uid;
      }
    }
    const file = join(out, "script.sh");
    await writeFile(file, substitute(script));
    const child = spawn("bash", [file], { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => {
      output += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      output += b.toString();
    });
    // "close", not "exit": only then has all of the step's output been read.
    const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
    const result = async (name: string) => readFile(join(out, name), "utf8");
    const listed = async () =>
      (
        await requests.list(ns, {
          labelSelector: `internal-services.appstudio.openshift.io/pipelinerun-uid=${uid}`,
        })
      ).items;
    const created = () =>
      eventually(async () => (await listed())[0], `request created by the step; output:\n${output}`);
    return { exited, result, created, listed, output: () => output };
  };

  const finish = (name: string, status: "True" | "False", reason: string, message: string, results = {}) =>
    requests.patchStatus(ns, name, {
      conditions: [
        { type: "Succeeded", status, reason, message, lastTransitionTime: new Date().toISOString() },
      ],
      results,
    });

  it("creates the request, waits, writes its results and exits 0 on Succeeded", async () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const step = await runStep({ service: "sign-artifact", params: JSON.stringify({ digest }) });
    const request = await step.created();
    const name = request.metadata.name as string;
    assert.match(name, /^release-sign-/, "generateName from requestNamePrefix's default");
    assert.deepEqual(request.spec, { service: "sign-artifact", params: { digest } });
    await finish(name, "True", "Succeeded", "done", { signature: "MEUCIQ", result: "Success" });
    assert.equal(await step.exited, 0, step.output());
    assert.equal(await step.result("requestName"), name);
    assert.equal(await step.result("reason"), "Succeeded");
    assert.deepEqual(JSON.parse(await step.result("results")), { signature: "MEUCIQ", result: "Success" });
  });

  it("exits 21 with the condition's message when the request is rejected", async () => {
    const step = await runStep({ service: "sign-artifact", params: "{}" });
    const request = await step.created();
    assert.deepEqual(request.spec, { service: "sign-artifact" }, "empty params are left out");
    await finish(request.metadata.name as string, "False", "Rejected", "digest is required");
    assert.equal(await step.exited, 21, step.output());
    assert.match(step.output(), /Rejected: digest is required/);
    assert.equal(await step.result("reason"), "Rejected");
    assert.equal(await step.result("results"), "{}");
  });

  it("exits 124 and cancels the request when the timeout passes", async () => {
    const step = await runStep({ service: "sign-artifact", timeout: "1s" });
    assert.equal(await step.exited, 124, step.output());
    const request = await step.created();
    assert.equal(request.spec.status, "Cancelled");
    assert.equal(await step.result("reason"), "Timeout");
  });

  it("exits 22 and cancels when no controller picks the request up, saying when one was last seen", async () => {
    // A controller that renewed its heartbeat ten minutes ago, every minute, and then stopped.
    const leases = new ResourceClient<Obj>(planes.publicAdmin, leaseType, "samples-test");
    const renewTime = new Date(Date.now() - 600_000).toISOString().replace(/Z$/, "000Z");
    await leases.create(ns, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "gone", annotations: { [servingAnnotation]: "InternalRequests in all namespaces" } },
      spec: { holderIdentity: "isc-7d9f_1", leaseDurationSeconds: 180, renewTime },
    });
    const step = await runStep({
      service: "sign-artifact",
      pickupTimeout: "1s",
      heartbeatLease: `${ns}/gone`,
    });
    assert.equal(await step.exited, 22, step.output());
    assert.match(
      step.output(),
      /no controller has picked up \S+ after 1s \(no status yet\); a controller was last seen 6\d\ds ago \(isc-7d9f_1, serving InternalRequests in all namespaces\) and has missed its heartbeats since: it is probably down; cancelling it/,
    );
    assert.equal((await step.created()).spec.status, "Cancelled");
    assert.equal(await step.result("reason"), "NotPickedUp");
    assert.equal(await step.result("results"), "{}");

    const none = await runStep({
      service: "sign-artifact",
      pickupTimeout: "1s",
      heartbeatLease: `${ns}/absent`,
    });
    assert.equal(await none.exited, 22, none.output());
    assert.match(none.output(), new RegExp(`Lease ${ns}/absent not found\\): is one deployed`));
  });

  it("refuses params that are not a JSON object of strings, creating nothing", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      ...['{"digest": 1}', '{"a":"b"}, "pipeline": {}', "[]", "not json"].map(
        (params): [Record<string, string>, RegExp] => [
          { service: "sign-artifact", params },
          /params must be a JSON object of string values/,
        ],
      ),
      [{ service: "sign-artifact", timeout: "soon" }, /timeout "soon" must be a duration/],
      [{ service: "sign-artifact", pickupTimeout: "2" }, /pickupTimeout "2" must be a duration/],
      [
        { service: "sign-artifact", heartbeatLease: "a/b/c" },
        /heartbeatLease "a\/b\/c" must be NAMESPACE\/NAME/,
      ],
      [{ service: "" }, /service is empty/],
    ];
    for (const [params, message] of cases) {
      const step = await runStep(params);
      assert.equal(await step.exited, 1, `${JSON.stringify(params)}: ${step.output()}`);
      assert.match(step.output(), message);
      assert.deepEqual(await step.listed(), [], "no request created");
    }
  });
});
