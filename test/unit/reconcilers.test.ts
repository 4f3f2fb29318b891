// The reconcile rules of both reconcilers, table-driven, against objects in memory and a fixed clock:
// each case is a starting state, a few steps (a reconcile pass, Tekton moving a run, time passing,
// a tenant acting), and what must then hold. The same rules run against real API servers and
// Tekton's controller in test/integration; here each is checked in milliseconds.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { CustomRunReconciler, maxRetries } from "../../src/customtask/reconciler.ts";
import type {
  InternalRequest,
  InternalRequestSpec,
  InternalServiceSpec,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../../src/generated/tekton.ts";
import { type ConcurrencySpec, concurrencyKey } from "../../src/policy/concurrency.ts";
import {
  concurrencyKeyLabel,
  finalizer,
  legacyFinalizer,
  pipelineRunName,
  requestNameLabel,
  requestNamespaceLabel,
  requestUidLabel,
  supersededByAnnotation,
} from "../../src/requests/naming.ts";
import { RequestReconciler } from "../../src/requests/reconciler.ts";
import type { ReconcileResult } from "../../src/runtime/controller.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { MemoryResources } from "../support/memory-resources.ts";
import { MemoryRuns } from "../support/memory-runs.ts";

const log = pino({ level: "silent" });
const t0 = Date.parse("2026-03-01T10:00:00Z");
const at = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
const M = 60_000;
const H = 60 * M;
const ns = "team-a";
const privateNs = "isc";

// --- InternalRequests ---------------------------------------------------------------------------

type TektonOutcome = "Running" | "Succeeded" | "Failed" | "PipelineRunTimeout";
type RequestStep =
  | "reconcile"
  /** The run sweep looks at the request's run (woken by a request's deletion, or at start). */
  | "sweep"
  | { advance: number }
  /** Tekton moves the run; `unseen`: the controller's cache keeps the copy from before (a lost event). */
  | { tekton: TektonOutcome; results?: Record<string, string>; unseen?: boolean }
  | { tenant: "cancel" | "delete" | "remove finalizer" }
  | { privately: "delete run" | "refuse deletes" | "allow deletes" }
  /** A reconcile that must fail (the queue retries it). */
  | { reconcile: "fails" }
  /** The other request's run of the same concurrency key (see sameKey) ends so. */
  | { other: "Succeeded" | "Failed" | "Cancelled" };

interface RequestCase {
  name: string;
  service?: Partial<InternalServiceSpec> | null;
  config?: InternalServicesConfigSpec;
  request?: Partial<InternalRequestSpec>;
  /** Runs of the same service already going (each holds a concurrency slot). */
  busy?: number;
  /** The request was started by the original Go controller: its run, succeeded or still pending. */
  goRun?: "succeeded" | "pending";
  /** The workspace the Go controller served (default "public", where the request is). */
  goWorkspace?: string;
  /** Namespaces whose runs the controller's cache does not have (yet). */
  unwatched?: string[];
  /** A Tekton run still going that refers to the request (see liveReferrer). */
  referrer?: string;
  /** The request carries the finalizer earlier versions of this controller set. */
  oldFinalizer?: boolean;
  /** Another request "r0" of the same concurrency key (the service's concurrency must be set), made
   *  before r1 (older) or after it, and its run "keyed-0": going, or succeeded `succeededAgo` ms ago. */
  sameKey?: { older: boolean; run: "running" | "succeeded"; succeededAgo?: number };
  steps: RequestStep[];
  expect: {
    reason?: string;
    status?: "True" | "False" | "Unknown";
    message?: RegExp;
    results?: Record<string, string>;
    /** The request's internal PipelineRun: exists, or gone. */
    run?: "running" | "gone";
    /** The namespace the run was created in. */
    runNamespace?: string;
    /** The run was patched to spec.status Cancelled (a finished run is deleted right after). */
    runCancelled?: boolean;
    finalizer?: boolean;
    /** The Go controller's run: followed and deleted once finished, or left alone. */
    goRun?: "gone" | "untouched";
    /** The request itself is gone (deleted, finalizer released). */
    requestGone?: boolean;
    requeueAfterMs?: number | "none";
    events?: string[];
    /** status.concurrency of the request. */
    concurrency?: Record<string, string>;
    /** The other request's run (see sameKey): cancelled for r1 (annotated superseded-by), or not. */
    otherRun?: "superseded" | "untouched";
    /** Writes of the last step, by verb, across both clusters. */
    lastStepWrites?: Partial<Record<"create" | "patch" | "status" | "delete", number>>;
  };
}

function requestWorld(c: RequestCase) {
  let now = t0;
  const clock = () => now;
  const requests = new MemoryResources<InternalRequest>(clock);
  const memory = new MemoryRuns(clock);
  const { runs, taskRuns, slots } = memory;
  const events: string[] = [];
  const byName = (name: string) => memory.byName(name);
  const syncSlots = () => memory.sync();
  /** What the cache still shows of runs whose change it missed. */
  const stale = new Map<string, V1PipelineRun>();
  const config: InternalServicesConfigSpec = c.config ?? { allowList: [ns] };
  const service =
    c.service === null
      ? undefined
      : {
          apiVersion: "appstudio.redhat.com/v1alpha1" as const,
          kind: "InternalService" as const,
          metadata: { name: "sign", namespace: privateNs, uid: "svc-1" },
          spec: {
            pipeline: { pipelineName: "sign-pipeline" },
            paramsSchema: { properties: { image: { type: "string" } } },
            ...c.service,
          },
        };
  const reconciler = new RequestReconciler({
    workspaces: new Map([
      [
        "public",
        {
          name: "public",
          requests,
          getRequest: (key) => structuredClone(requests.objects.get(key)),
          observe: () => undefined, // the cache is the store itself
          referrer: async () => c.referrer,
          events: { record: (_obj, _type, reason) => events.push(reason) },
        },
      ],
    ]),
    private: {
      namespace: privateNs,
      pipelineRuns: runs,
      taskRuns,
      findPipelineRun: (name) => structuredClone(stale.get(name) ?? byName(name)),
      watchesRunsIn: (namespace) => !(c.unwatched ?? []).includes(namespace),
      getService: (name) => (name === "sign" ? service : undefined),
      getConfig: () => ({
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalServicesConfig",
        metadata: { name: "config", namespace: privateNs },
        spec: config,
      }),
      slots,
    },
    metrics: new Metrics({ processMetrics: false }),
    now: clock,
    goWorkspace: c.goWorkspace ?? "public",
  });
  const request = requests.put({
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalRequest",
    metadata: {
      name: "r1",
      namespace: ns,
      ...(c.goRun ? { finalizers: [legacyFinalizer] } : c.oldFinalizer ? { finalizers: [finalizer] } : {}),
    },
    spec: { service: "sign", params: { image: "quay.io/x@sha256:1" }, ...c.request } as InternalRequestSpec,
    ...(c.goRun
      ? {
          status: {
            conditions: [
              {
                type: "Succeeded",
                status: "False",
                reason: "Running",
                message: "",
                lastTransitionTime: at(t0),
              },
            ],
            pipelineRun: `${privateNs}/go-run`,
          },
        }
      : {}),
  });
  if (c.goRun)
    runs.put({
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: {
        name: "go-run",
        namespace: privateNs,
        labels: { [requestNameLabel]: "r1", [requestNamespaceLabel]: ns },
      },
      status:
        c.goRun === "succeeded"
          ? {
              startTime: at(t0),
              completionTime: at(t0),
              conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded", message: "" }],
              results: [{ name: "signature", value: "sig" }],
            }
          : {},
    });
  const runName = pipelineRunName("public", "r1", request.metadata.uid as string);
  if (c.sameKey) {
    const other = requests.put({
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: {
        name: "r0",
        namespace: ns,
        // As the API server stores it (a string, whatever client-node's type says).
        creationTimestamp: at(t0 + (c.sameKey.older ? -M : M)) as unknown as Date,
      },
      spec: { service: "sign", params: { image: "quay.io/x@sha256:1" } } as InternalRequestSpec,
    });
    const key = concurrencyKey({
      spec: service?.spec.concurrency as ConcurrencySpec,
      workspace: "public",
      namespace: ns,
      scope: "sign",
      labels: {},
      params: { image: "quay.io/x@sha256:1" },
      sensitiveParams: [],
    });
    // The other run's key; a case whose request lacks what the key is made of gets one of its own.
    const hash = "plan" in key ? key.plan.hash : "unrendered";
    const done = at(t0 - (c.sameKey.succeededAgo ?? 0));
    runs.put({
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: {
        name: "keyed-0",
        namespace: privateNs,
        labels: {
          "app.kubernetes.io/managed-by": "internal-service-controller",
          [concurrencyKeyLabel]: hash,
          [requestUidLabel]: other.metadata.uid as string,
        },
        annotations: {
          "internal-services.appstudio.openshift.io/service": "sign",
          "internal-services.appstudio.openshift.io/workspace": "public",
          "internal-services.appstudio.openshift.io/request": `${ns}/r0`,
        },
      },
      status:
        c.sameKey.run === "succeeded"
          ? {
              startTime: done,
              completionTime: done,
              conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded", message: "" }],
              results: [{ name: "signature", value: "sig-of-r0" }],
            }
          : {
              startTime: at(t0),
              conditions: [{ type: "Succeeded", status: "Unknown", reason: "Running", message: "" }],
            },
    });
  }
  for (let i = 0; i < (c.busy ?? 0); i++)
    runs.put({
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: {
        name: `other-${i}`,
        namespace: privateNs,
        labels: { "app.kubernetes.io/managed-by": "internal-service-controller" },
        annotations: { "internal-services.appstudio.openshift.io/service": "sign" },
      },
    });
  syncSlots();

  const current = () => requests.objects.get(`${ns}/r1`);
  const goRun = () => runs.objects.get(`${privateNs}/go-run`);
  const run = () => byName(runName);
  let result: ReconcileResult | undefined;
  const step = async (s: RequestStep) => {
    if (s === "reconcile") {
      result = await reconciler.reconcile({ workspace: "public", namespace: ns, name: "r1" }, log);
    } else if (s === "sweep") result = await reconciler.reconcileRun(runName, log);
    else if ("advance" in s) now += s.advance;
    else if ("tekton" in s) {
      const r = run();
      assert.ok(r, "a run for Tekton to finish");
      if (s.unseen) stale.set(runName, structuredClone(r));
      const started = r.status?.startTime ?? at(now);
      const status = s.tekton === "Running" ? "Unknown" : s.tekton === "Succeeded" ? "True" : "False";
      r.status = {
        startTime: started,
        ...(status === "Unknown" ? {} : { completionTime: at(now) }),
        conditions: [{ type: "Succeeded", status, reason: s.tekton, message: "" }],
        results: Object.entries(s.results ?? {}).map(([name, value]) => ({ name, value })),
      };
    } else if ("tenant" in s) {
      if (s.tenant === "cancel") await requests.mergePatch(ns, "r1", { spec: { status: "Cancelled" } });
      if (s.tenant === "delete") await requests.delete(ns, "r1");
      if (s.tenant === "remove finalizer")
        await requests.mergePatch(ns, "r1", { metadata: { finalizers: null } });
    } else if ("other" in s) {
      const other = byName("keyed-0") as V1PipelineRun;
      const reason = s.other === "Cancelled" ? "PipelineRunCancelled" : s.other;
      other.status = {
        ...other.status,
        completionTime: at(now),
        conditions: [
          { type: "Succeeded", status: s.other === "Succeeded" ? "True" : "False", reason, message: "" },
        ],
        results: [{ name: "signature", value: "sig-of-r0" }],
      };
    } else if ("reconcile" in s) {
      await assert.rejects(reconciler.reconcile({ workspace: "public", namespace: ns, name: "r1" }, log));
    } else if (s.privately === "refuse deletes" || s.privately === "allow deletes")
      runs.refuseDeletes = s.privately === "refuse deletes";
    else await runs.delete(run()?.metadata?.namespace as string, runName);
    syncSlots();
  };
  const otherRun = () => byName("keyed-0");
  return { step, current, run, goRun, otherRun, events, requests, runs, result: () => result };
}

const requestCases: RequestCase[] = [
  {
    name: "an allowed request gets its run, then Running with the run's name: two writes, no finalizer, no Event",
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      reason: "Running",
      message: /^accepted; internal PipelineRun started$/,
      run: "running",
      finalizer: false,
      requeueAfterMs: H,
      events: [],
      lastStepWrites: { patch: 0, create: 1, status: 1 },
    },
  },
  {
    name: "a second pass over a started request writes nothing",
    steps: ["reconcile", "reconcile"],
    expect: {
      reason: "Running",
      run: "running",
      lastStepWrites: { patch: 0, create: 0, status: 0, delete: 0 },
    },
  },
  {
    name: "a service that does not exist: Rejected, no finalizer, nothing run",
    request: { service: "nope" },
    steps: ["reconcile"],
    expect: {
      status: "False",
      reason: "Rejected",
      message: /nope/,
      run: "gone",
      finalizer: false,
      events: ["Rejected"],
      lastStepWrites: { status: 1, create: 0, patch: 0 },
    },
  },
  {
    name: "a namespace the allow-list leaves out: Rejected",
    config: { allowList: ["team-b"] },
    steps: ["reconcile"],
    expect: { reason: "Rejected", run: "gone", finalizer: false },
  },
  {
    name: "a run that succeeds: Succeeded with its results, then the run is deleted: two writes, no Event",
    steps: [
      "reconcile",
      { advance: 5 * M },
      { tekton: "Succeeded", results: { digest: "sha256:2" } },
      "reconcile",
    ],
    expect: {
      status: "True",
      reason: "Succeeded",
      results: { digest: "sha256:2" },
      run: "gone",
      finalizer: false,
      events: [],
      lastStepWrites: { status: 1, delete: 1, patch: 0 },
    },
  },
  {
    name: "retention: a finished request stays for keepFinished, looked at again when it is due",
    config: { allowList: [ns], requestRetention: { keepFinished: "1h" } },
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", { advance: 30 * M }, "reconcile"],
    expect: { reason: "Succeeded", requeueAfterMs: 30 * M, lastStepWrites: { delete: 0, status: 0 } },
  },
  {
    name: "retention: then it is deleted, with one delete and nothing else",
    config: { allowList: [ns], requestRetention: { keepFinished: "1h" } },
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", { advance: 61 * M }, "reconcile"],
    expect: { requestGone: true, requeueAfterMs: "none", lastStepWrites: { delete: 1, status: 0, patch: 0 } },
  },
  {
    name: "retention: a rejected request goes too",
    config: { allowList: [ns], requestRetention: { keepFinished: "10m" } },
    request: { service: "nope" },
    steps: ["reconcile", { advance: 11 * M }, "reconcile"],
    expect: { requestGone: true },
  },
  {
    name: "retention: a Tekton run still going that refers to it keeps it, looked at again in 5 minutes",
    config: { allowList: [ns], requestRetention: { keepFinished: "1h" } },
    referrer: "PipelineRun release-1",
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", { advance: 2 * H }, "reconcile"],
    expect: { reason: "Succeeded", requeueAfterMs: 5 * M, lastStepWrites: { delete: 0 } },
  },
  {
    name: "retention: a workspace excepted without keepFinished keeps its requests",
    config: {
      allowList: [ns],
      requestRetention: { keepFinished: "1h", workspaces: [{ workspace: "pub*" }] },
    },
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", { advance: 2 * H }, "reconcile"],
    expect: { reason: "Succeeded", requeueAfterMs: "none", lastStepWrites: { delete: 0 } },
  },
  {
    name: "a run that fails: Failed",
    steps: ["reconcile", { tekton: "Failed" }, "reconcile"],
    expect: { status: "False", reason: "Failed", run: "gone", finalizer: false },
  },
  {
    name: "Tekton's own timeout: TimedOut",
    steps: ["reconcile", { tekton: "PipelineRunTimeout" }, "reconcile"],
    expect: { reason: "TimedOut", message: /timed out/, run: "gone" },
  },
  {
    name: "retention keeps the finished run for keepFinishedPipelineRuns, counted from its completion",
    service: { retention: { keepFinishedPipelineRuns: "10m" } },
    steps: ["reconcile", { advance: 2 * M }, { tekton: "Succeeded" }, { advance: 4 * M }, "reconcile"],
    expect: { reason: "Succeeded", run: "running", requeueAfterMs: 6 * M },
  },
  {
    name: "retention over: the run goes and the finalizer with it",
    service: { retention: { keepFinishedPipelineRuns: "10m" } },
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", { advance: 10 * M }, "reconcile"],
    expect: { reason: "Succeeded", run: "gone", finalizer: false, requeueAfterMs: "none" },
  },
  {
    name: "a tenant cancelling: the run is cancelled, the request Cancelled",
    steps: ["reconcile", { tenant: "cancel" }, "reconcile"],
    expect: {
      status: "False",
      reason: "Cancelled",
      message: /internal PipelineRun cancelled/,
      runCancelled: true,
      run: "gone",
    },
  },
  {
    name: "a tenant deleting a running request: it goes at once; the run sweep cancels and deletes its run",
    steps: ["reconcile", { tenant: "delete" }, "reconcile", "sweep"],
    expect: { requestGone: true, run: "gone", runCancelled: true },
  },
  {
    name: "a request of an earlier version, held by its finalizer when deleted: run cancelled and deleted, then let go",
    oldFinalizer: true,
    steps: ["reconcile", { tenant: "delete" }, "reconcile"],
    expect: { requestGone: true, run: "gone", runCancelled: true },
  },
  {
    name: "a request of an earlier version that finishes: its finalizer is removed",
    oldFinalizer: true,
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile"],
    expect: {
      reason: "Succeeded",
      run: "gone",
      finalizer: false,
      lastStepWrites: { status: 1, delete: 1, patch: 1 },
    },
  },
  {
    name: "the run deleted out of band: Failed at once",
    steps: ["reconcile", { privately: "delete run" }, "reconcile"],
    expect: {
      status: "False",
      reason: "Failed",
      message: /was deleted before it finished/,
      finalizer: false,
    },
  },
  {
    name: "every slot taken: queued, saying so, and looked at again",
    service: { maxConcurrentRuns: 2 },
    busy: 2,
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      message: /^queued: service "sign" is running 2 of at most 2 concurrent runs$/,
      run: "gone",
      finalizer: false,
      requeueAfterMs: 2_000,
      lastStepWrites: { create: 0 },
    },
  },
  {
    name: "queued past the queue timeout: TimedOut, nothing run",
    service: { maxConcurrentRuns: 1, timeouts: { queue: "30m" } },
    busy: 1,
    steps: ["reconcile", { advance: 31 * M }, "reconcile"],
    expect: {
      status: "False",
      reason: "TimedOut",
      message: /queue timeout \(30m0s\)/,
      run: "gone",
      finalizer: false,
    },
  },
  {
    name: "the pipeline timeout passing without Tekton ending the run: cancelled, TimedOut",
    request: { timeouts: { pipeline: "1h" } },
    steps: ["reconcile", { advance: 5 * M }, { tekton: "Running" }, { advance: H }, "reconcile"],
    expect: { reason: "TimedOut", message: /timed out after 1h/, runCancelled: true, run: "gone" },
  },
  {
    name: "the pipeline timeout with the cache behind (the run's end never seen): the live run decides, Succeeded",
    request: { timeouts: { pipeline: "1h" } },
    steps: [
      "reconcile",
      { tekton: "Running" },
      "reconcile",
      { tekton: "Succeeded", results: { digest: "sha256:2" }, unseen: true },
      { advance: H + M },
      "reconcile",
    ],
    expect: { reason: "Succeeded", results: { digest: "sha256:2" }, runCancelled: false, run: "gone" },
  },
  {
    name: "the queue timeout with the cache behind (the run's start never seen): the live run decides, still running",
    request: { timeouts: { pipeline: "1h", queue: "30m" } },
    steps: ["reconcile", { tekton: "Running", unseen: true }, { advance: 31 * M }, "reconcile"],
    expect: { status: "Unknown", runCancelled: false, run: "running" },
  },
  {
    name: "the pipeline timeout counts from Tekton's start: a run still pending admission is not timed out",
    request: { timeouts: { pipeline: "1h" } },
    steps: ["reconcile", { advance: H + M }, "reconcile"],
    expect: { status: "Unknown", runCancelled: false, run: "running" },
  },
  {
    name: "a service's runNamespace is where its runs go, and where they are followed",
    service: { runNamespace: "sign-runs" },
    steps: ["reconcile", { tekton: "Succeeded", results: { digest: "sha256:2" } }, "reconcile"],
    expect: { reason: "Succeeded", results: { digest: "sha256:2" }, run: "gone" },
  },
  {
    name: "a run in the service's runNamespace",
    service: { runNamespace: "sign-runs" },
    steps: ["reconcile"],
    expect: { reason: "Running", run: "running", runNamespace: "sign-runs" },
  },
  {
    name: "a run namespace the controller does not watch yet: queued, saying why; no finalizer, no run",
    service: { runNamespace: "sign-runs" },
    unwatched: ["sign-runs"],
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      message: /^queued: waiting for the controller to see PipelineRuns in namespace sign-runs/,
      run: "gone",
      finalizer: false,
      requeueAfterMs: 5_000,
    },
  },
  {
    name: "a request the Go controller started is taken over: its run's outcome copied, the run deleted",
    goRun: "succeeded",
    steps: ["reconcile"],
    expect: {
      status: "True",
      reason: "Succeeded",
      results: { signature: "sig" },
      goRun: "gone",
      finalizer: false,
    },
  },
  {
    name: "a Go run whose deletion failed is deleted when the reconcile is retried (no cache of ours shows it)",
    goRun: "succeeded",
    steps: [
      { privately: "refuse deletes" },
      { reconcile: "fails" },
      { privately: "allow deletes" },
      "reconcile",
    ],
    expect: { status: "True", reason: "Succeeded", results: { signature: "sig" }, goRun: "gone" },
  },
  {
    name: "a Go run not started yet is looked at again on a timer (no watch of ours sees it)",
    goRun: "pending",
    steps: ["reconcile"],
    expect: { status: "False", reason: "Running", goRun: "untouched", requeueAfterMs: 10_000 },
  },
  {
    name: "a Go run not started within the default queue timeout: cancelled, TimedOut",
    goRun: "pending",
    steps: ["reconcile", { advance: 24 * H }, "reconcile"],
    expect: { reason: "TimedOut", message: /queue timeout/ },
  },
  {
    name: "Go runs are followed only in the workspace the Go controller served (they name none)",
    goRun: "succeeded",
    goWorkspace: "other",
    steps: ["reconcile"],
    expect: { goRun: "untouched" },
  },
  {
    name: "nor for a caller the allow-list leaves out",
    goRun: "succeeded",
    config: { allowList: ["team-b"] },
    steps: ["reconcile"],
    expect: { goRun: "untouched", reason: "Rejected" },
  },
  {
    name: "a finished request is left alone: no reads, no writes",
    steps: ["reconcile", { tekton: "Succeeded" }, "reconcile", "reconcile"],
    expect: { reason: "Succeeded", lastStepWrites: { patch: 0, create: 0, status: 0, delete: 0 } },
  },
  {
    name: "concurrency Queue: another run of the key is going: Running, naming it, nothing created",
    service: { concurrency: { key: "$(params.image)" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      message:
        /^queued: waiting for request team-a\/r0 \(internal PipelineRun isc\/keyed-0\), which has the same concurrency key, to finish$/,
      concurrency: {
        key: "quay.io/x@sha256:1",
        policy: "Queue",
        pipelineRun: "isc/keyed-0",
        request: "team-a/r0",
      },
      run: "gone",
      finalizer: false,
      otherRun: "untouched",
      requeueAfterMs: 2_000,
      lastStepWrites: { status: 1, create: 0, patch: 0 },
    },
  },
  {
    name: "concurrency Queue: a second look while it waits reads and writes nothing",
    service: { concurrency: { key: "$(params.image)" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", "reconcile"],
    expect: { run: "gone", lastStepWrites: { status: 0, create: 0, patch: 0 } },
  },
  {
    name: "concurrency Queue: once that run ends, the request runs (its run labelled with the key)",
    service: { concurrency: { key: "$(params.image)", policy: "Queue" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", { other: "Failed" }, "reconcile"],
    expect: {
      message: /^accepted; internal PipelineRun started$/,
      concurrency: { key: "quay.io/x@sha256:1", policy: "Queue" },
      run: "running",
    },
  },
  {
    name: "concurrency Queue: the wait counts against the queue timeout: TimedOut, naming the run",
    service: { concurrency: { key: "$(params.image)" }, timeouts: { queue: "30m" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", { advance: 31 * M }, "reconcile"],
    expect: {
      reason: "TimedOut",
      message: /queue timeout \(30m0s\) for internal PipelineRun isc\/keyed-0/,
      run: "gone",
    },
  },
  {
    name: "concurrency Supersede: the older request's run is cancelled, annotated with this one, which waits",
    service: { concurrency: { key: "$(params.image)", policy: "Supersede" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      message:
        /^superseding request team-a\/r0, which has the same concurrency key: waiting for its internal PipelineRun isc\/keyed-0 to stop$/,
      otherRun: "superseded",
      run: "gone",
    },
  },
  {
    name: "concurrency Supersede: once the cancelled run stops, the newer request runs",
    service: { concurrency: { key: "$(params.image)", policy: "Supersede" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", { other: "Cancelled" }, "reconcile"],
    expect: { message: /^accepted; internal PipelineRun started$/, run: "running", otherRun: "superseded" },
  },
  {
    name: "concurrency Supersede: a request older than the live run's ends Cancelled, unrun, the run untouched",
    service: { concurrency: { key: "$(params.image)", policy: "Supersede" } },
    sameKey: { older: false, run: "running" },
    steps: ["reconcile"],
    expect: {
      status: "False",
      reason: "Cancelled",
      message: /^superseded by request team-a\/r0, which is newer and has the same concurrency key/,
      run: "gone",
      otherRun: "untouched",
      finalizer: false,
    },
  },
  {
    name: "concurrency Reuse: a run of the key that succeeded within reuseWithin hands over its results, nothing runs",
    service: { concurrency: { key: "$(params.image)", policy: "Reuse", reuseWithin: "1h" } },
    sameKey: { older: true, run: "succeeded", succeededAgo: 10 * M },
    steps: ["reconcile"],
    expect: {
      status: "True",
      reason: "Succeeded",
      message: /^reused the results of internal PipelineRun isc\/keyed-0 \(request team-a\/r0\)/,
      results: { signature: "sig-of-r0" },
      concurrency: {
        key: "quay.io/x@sha256:1",
        policy: "Reuse",
        pipelineRun: "isc/keyed-0",
        request: "team-a/r0",
      },
      run: "gone",
      lastStepWrites: { create: 0, status: 1, patch: 0 },
    },
  },
  {
    name: "concurrency Reuse: one that succeeded before the window runs again",
    service: { concurrency: { key: "$(params.image)", policy: "Reuse", reuseWithin: "1h" } },
    sameKey: { older: true, run: "succeeded", succeededAgo: 2 * H },
    steps: ["reconcile"],
    expect: { message: /^accepted; internal PipelineRun started$/, run: "running" },
  },
  {
    name: "concurrency Reuse: a request follows the live run and takes its results when it succeeds",
    service: { concurrency: { key: "$(params.image)", policy: "Reuse", reuseWithin: "0s" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", { advance: 3 * M }, { other: "Succeeded" }, "reconcile"],
    expect: { reason: "Succeeded", results: { signature: "sig-of-r0" }, run: "gone", otherRun: "untouched" },
  },
  {
    name: "concurrency Reuse: if the followed run fails, the request runs itself",
    service: { concurrency: { key: "$(params.image)", policy: "Reuse" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile", { other: "Failed" }, "reconcile"],
    expect: { message: /^accepted; internal PipelineRun started$/, run: "running" },
  },
  {
    name: "concurrency: a request without what its key is made of runs unkeyed, saying so",
    service: { concurrency: { key: "$(labels['example.com/attempt'])/$(params.image)" } },
    sameKey: { older: true, run: "running" },
    steps: ["reconcile"],
    expect: {
      message:
        /^accepted; internal PipelineRun started \(no concurrency key \(the request has no label "example.com\/attempt"\)\)$/,
      run: "running",
    },
  },
];

describe("RequestReconciler rules", () => {
  for (const c of requestCases) {
    test(c.name, async () => {
      const w = requestWorld(c);
      let from = { requests: 0, runs: 0 };
      for (const s of c.steps) {
        from = { requests: w.requests.writes.length, runs: w.runs.writes.length };
        await w.step(s);
      }
      const { expect } = c;
      const request = w.current();
      if (expect.requestGone) assert.equal(request, undefined, "the request is gone");
      const cond = request?.status?.conditions?.[0];
      if (expect.status) assert.equal(cond?.status, expect.status, cond?.message);
      if (expect.reason) assert.equal(cond?.reason, expect.reason, cond?.message);
      if (expect.message) assert.match(cond?.message ?? "", expect.message);
      if (expect.results) assert.deepEqual(request?.status?.results, expect.results);
      if (expect.finalizer !== undefined)
        assert.equal(
          request?.metadata.finalizers?.includes(finalizer) ?? false,
          expect.finalizer,
          "our finalizer",
        );
      const run = w.run();
      if (expect.run === "gone") assert.equal(run, undefined, "no run");
      if (expect.runNamespace) assert.equal(run?.metadata?.namespace, expect.runNamespace);
      if (expect.run === "running") {
        assert.ok(run, "the run exists");
        assert.equal(
          run.metadata?.labels?.[requestUidLabel],
          request?.metadata.uid,
          "labelled with the request's uid",
        );
      }
      if (expect.runCancelled !== undefined) {
        const cancels = w.runs.writes.filter(
          (x) =>
            x.verb === "patch" && (x.body as { spec?: { status?: string } }).spec?.status === "Cancelled",
        );
        assert.equal(cancels.length, expect.runCancelled ? 1 : 0, "cancel patches of the run");
      }
      if (expect.requeueAfterMs === "none") assert.equal(w.result()?.requeueAfterMs, undefined);
      else if (expect.requeueAfterMs !== undefined)
        assert.equal(w.result()?.requeueAfterMs, expect.requeueAfterMs);
      if (expect.events) assert.deepEqual(w.events, expect.events);
      if (expect.concurrency) assert.deepEqual(request?.status?.concurrency, expect.concurrency);
      if (expect.otherRun) {
        const other = w.otherRun();
        const by = other?.metadata?.annotations?.[supersededByAnnotation];
        if (expect.otherRun === "superseded") {
          assert.equal(other?.spec?.status, "Cancelled", "the other run was cancelled");
          assert.equal(by, `${ns}/r1`, "annotated with the request that superseded it");
        } else {
          assert.equal(other?.spec?.status, undefined, "the other run was not cancelled");
          assert.equal(w.runs.writes.filter((x) => x.name === "keyed-0").length, 0, "no write to it");
        }
      }
      if (expect.goRun === "gone") assert.equal(w.goRun(), undefined, "the Go run was deleted");
      if (expect.goRun === "untouched") {
        assert.ok(w.goRun(), "the Go run is still there");
        assert.equal(w.runs.writes.filter((x) => x.name === "go-run").length, 0, "no write to the Go run");
      }
      for (const [verb, n] of Object.entries(expect.lastStepWrites ?? {})) {
        const v = verb as "create" | "patch" | "status" | "delete";
        assert.equal(w.requests.count(v, from.requests) + w.runs.count(v, from.runs), n, `${verb} writes`);
      }
    });
  }

  test("the run's start and the request's times come from the injected clock", async () => {
    const w = requestWorld({ name: "", steps: [], expect: {} });
    await w.step("reconcile");
    assert.equal(w.current()?.status?.startTime, at(t0));
    assert.equal(w.current()?.status?.conditions?.[0]?.lastTransitionTime, at(t0));
    await w.step({ advance: 7 * M });
    await w.step({ tekton: "Succeeded" });
    await w.step("reconcile");
    assert.equal(w.current()?.status?.completionTime, at(t0 + 7 * M));
  });
});

// --- CustomRuns ---------------------------------------------------------------------------------

type RunStep =
  | "reconcile"
  | { advance: number }
  | {
      request: "Succeeded" | "Failed" | "Rejected" | "Running";
      message?: string;
      results?: Record<string, string>;
    }
  | { pipeline: "cancel" }
  | { tenant: "create request" };

interface RunCase {
  name: string;
  spec?: Partial<NonNullable<V1beta1CustomRun["spec"]>>;
  steps: RunStep[];
  expect: {
    status?: "True" | "False" | "Unknown";
    reason?: string;
    message?: RegExp;
    results?: { name: string; value: string }[];
    /** Requests that exist, by attempt. */
    requests?: number;
    /** The attempt's request was cancelled. */
    requestCancelled?: boolean;
    attempts?: number;
    requeueAfterMs?: number | "none";
    /** Status writes of every reconcile pass, in order: never more than one. */
    statusWrites?: number[];
  };
}

function customRunWorld(c: RunCase) {
  let now = t0;
  const clock = () => now;
  const customRuns = new MemoryResources<V1beta1CustomRun>(clock);
  const requests = new MemoryResources<InternalRequest>(clock);
  const reconciler = new CustomRunReconciler(
    new Map([
      [
        "public",
        {
          name: "public",
          customRuns,
          requests,
          getCustomRun: (key) => structuredClone(customRuns.objects.get(key)),
          getRequest: (key) => structuredClone(requests.objects.get(key)),
          observeCustomRun: () => undefined,
        },
      ],
    ]),
    clock,
  );
  customRuns.put({
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: { name: "release-sign", namespace: ns },
    spec: {
      customRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest", name: "sign" },
      params: [{ name: "image", value: "quay.io/x@sha256:1" }],
      ...c.spec,
    },
  });
  const run = () => customRuns.objects.get(`${ns}/release-sign`) as V1beta1CustomRun;
  const requestOf = (attempt: number) => requests.objects.get(`${ns}/release-sign-${attempt}`);
  const latest = () => {
    const all = [...requests.objects.values()];
    return all[all.length - 1];
  };
  let result: ReconcileResult | undefined;
  const statusWrites: number[] = [];
  const step = async (s: RunStep) => {
    if (s === "reconcile") {
      const before = customRuns.count("status");
      result = await reconciler.reconcile({ workspace: "public", namespace: ns, name: "release-sign" }, log);
      statusWrites.push(customRuns.count("status") - before);
    } else if ("advance" in s) now += s.advance;
    else if ("request" in s) {
      const r = latest();
      assert.ok(r, "a request to move");
      const done = s.request !== "Running";
      await requests.patchStatus(ns, r.metadata.name as string, {
        conditions: [
          {
            type: "Succeeded",
            status: s.request === "Succeeded" ? "True" : done ? "False" : "Unknown",
            reason: s.request,
            message: s.message ?? "",
            lastTransitionTime: at(now),
          },
        ],
        ...(s.results ? { results: s.results } : {}),
        pipelineRun: `${privateNs}/run-1`,
      });
    } else if ("pipeline" in s) {
      await customRuns.mergePatch(ns, "release-sign", { spec: { status: "RunCancelled" } });
    } else {
      requests.put({
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata: { name: "release-sign-0", namespace: ns },
        spec: { service: "sign", params: { image: "quay.io/x@sha256:1" } },
      });
    }
  };
  return { step, run, requests, requestOf, statusWrites, result: () => result };
}

const runCases: RunCase[] = [
  {
    name: "a new CustomRun: its request is created and the attempt recorded, in one status write",
    steps: ["reconcile"],
    expect: {
      status: "Unknown",
      reason: "Running",
      message: /creating InternalRequest/,
      requests: 1,
      statusWrites: [1],
    },
  },
  {
    name: "the request's progress is mirrored, and the run's timeout is the next look",
    spec: { timeout: "30m" },
    steps: ["reconcile", { advance: M }, { request: "Running", message: "2/5 tasks completed" }, "reconcile"],
    expect: {
      status: "Unknown",
      message: /^2\/5 tasks completed$/,
      requeueAfterMs: 29 * M,
      statusWrites: [1, 1],
    },
  },
  {
    name: "nothing new from the request: no write",
    steps: ["reconcile", { request: "Running", message: "running" }, "reconcile", "reconcile"],
    expect: { status: "Unknown", statusWrites: [1, 1, 0] },
  },
  {
    name: "the request succeeds: Succeeded with its results as task results, sorted",
    steps: ["reconcile", { request: "Succeeded", results: { z: "2", a: "1" } }, "reconcile"],
    expect: {
      status: "True",
      reason: "Succeeded",
      results: [
        { name: "a", value: "1" },
        { name: "z", value: "2" },
      ],
      statusWrites: [1, 1],
    },
  },
  {
    name: "the request fails with no retries left: the CustomRun fails with its reason and message",
    steps: ["reconcile", { request: "Failed", message: "task sign failed" }, "reconcile"],
    expect: { status: "False", reason: "Failed", message: /^task sign failed$/, statusWrites: [1, 1] },
  },
  {
    name: "a failed attempt with retries left: its snapshot kept, the next attempt's request made on the next pass",
    spec: { retries: 1 },
    steps: ["reconcile", { request: "Failed" }, "reconcile", "reconcile"],
    expect: {
      status: "Unknown",
      message: /retrying: attempt 2 of 2/,
      requests: 2,
      attempts: 1,
      statusWrites: [1, 1, 1],
    },
  },
  {
    name: "Rejected is never retried",
    spec: { retries: 3 },
    steps: ["reconcile", { request: "Rejected", message: "not allowed" }, "reconcile"],
    expect: { status: "False", reason: "Rejected", requests: 1, attempts: 0 },
  },
  {
    name: "the attempt's timeout: its request is cancelled, CustomRunTimedOut",
    spec: { timeout: "10m" },
    steps: ["reconcile", { advance: 10 * M }, "reconcile"],
    expect: { status: "False", reason: "CustomRunTimedOut", requestCancelled: true, statusWrites: [1, 1] },
  },
  {
    name: "cancelled by the pipeline: the request is cancelled, CustomRunCancelled",
    steps: ["reconcile", { pipeline: "cancel" }, "reconcile"],
    expect: { status: "False", reason: "CustomRunCancelled", requestCancelled: true, statusWrites: [1, 1] },
  },
  {
    name: `more than ${maxRetries} retries: InvalidRetries, nothing created`,
    spec: { retries: maxRetries + 1 },
    steps: ["reconcile"],
    expect: { status: "False", reason: "InvalidRetries", requests: 0, statusWrites: [1] },
  },
  {
    name: "a timeout that is no duration: InvalidTimeout, nothing created",
    spec: { timeout: "soon" },
    steps: ["reconcile"],
    expect: { status: "False", reason: "InvalidTimeout", message: /^spec\.timeout: /, requests: 0 },
  },
  {
    name: "a request under the attempt's name that this run did not make: RequestNotOwned, nothing copied",
    steps: [{ tenant: "create request" }, "reconcile"],
    expect: {
      status: "False",
      reason: "RequestNotOwned",
      message: /not created for this CustomRun/,
      results: [],
    },
  },
  {
    name: "a finished CustomRun is left alone",
    steps: ["reconcile", { request: "Succeeded" }, "reconcile", "reconcile"],
    expect: { status: "True", statusWrites: [1, 1, 0] },
  },
];

describe("CustomRunReconciler rules", () => {
  for (const c of runCases) {
    test(c.name, async () => {
      const w = customRunWorld(c);
      for (const s of c.steps) await w.step(s);
      const { expect } = c;
      const status = w.run().status;
      const cond = status?.conditions?.[0];
      if (expect.status) assert.equal(cond?.status, expect.status, cond?.message);
      if (expect.reason) assert.equal(cond?.reason, expect.reason, cond?.message);
      if (expect.message) assert.match(cond?.message ?? "", expect.message);
      if (expect.results) assert.deepEqual(status?.results, expect.results);
      if (expect.requests !== undefined) assert.equal(w.requests.objects.size, expect.requests, "requests");
      if (expect.requestCancelled) assert.equal(w.requestOf(0)?.spec.status, "Cancelled");
      if (expect.attempts !== undefined)
        assert.equal(status?.retriesStatus?.length ?? 0, expect.attempts, "retriesStatus");
      if (expect.requeueAfterMs === "none") assert.equal(w.result()?.requeueAfterMs, undefined);
      else if (expect.requeueAfterMs !== undefined)
        assert.equal(w.result()?.requeueAfterMs, expect.requeueAfterMs);
      if (expect.statusWrites)
        assert.deepEqual(w.statusWrites, expect.statusWrites, "status writes per pass");
      assert.ok(
        w.statusWrites.every((n) => n <= 1),
        "at most one status write per pass",
      );
    });
  }

  test("the attempt's request is owned by the CustomRun, and times come from the injected clock", async () => {
    const w = customRunWorld({ name: "", steps: [], expect: {} });
    await w.step("reconcile");
    const request = w.requestOf(0);
    const owner = request?.metadata.ownerReferences?.find((o) => o.controller);
    assert.equal(owner?.kind, "CustomRun");
    assert.equal(owner?.uid, w.run().metadata?.uid);
    assert.equal(w.run().status?.startTime, at(t0));
    await w.step({ advance: 3 * M });
    await w.step({ request: "Succeeded" });
    await w.step("reconcile");
    assert.equal(w.run().status?.completionTime, at(t0 + 3 * M));
  });
});
