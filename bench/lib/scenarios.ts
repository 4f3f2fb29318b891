// The benchmark scenarios. Each starts a fresh controller process on its own namespaces, drives a
// closed loop of `inFlight` requests (a new one is created as soon as one is terminal), and measures
// the controller's overhead per request from watch timestamps, its CPU and memory from /proc, and its
// API writes from the audit log.
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import type { InternalRequest, InternalServiceSpec } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun } from "../../src/generated/tekton.ts";
import { finalizer } from "../../src/requests/naming.ts";
import type { AuditLog, AuditWindow, WriteCounts } from "./audit.ts";
import { ControllerProcess } from "./controller.ts";
import { Executor, type RunTimes } from "./executor.ts";
import { mergePatch, paths, type RawClient } from "./http.ts";
import type { BenchPlanes } from "./planes.ts";
import { type Distribution, distribution, pool, round, sleep, waitFor } from "./stats.ts";
import { TimedWatch } from "./watch.ts";

export const runLabel = "bench.isc.dev/run";
export const serviceName = "bench";
/** One request may take at most this long before the run is declared broken (no hang). */
const requestTimeoutMs = 120_000;

export interface BenchContext {
  bench: BenchPlanes;
  controllerCmd: string;
  repoRoot: string;
  workDir: string;
  log: (msg: string) => void;
}

export interface ControllerFigures {
  /** Spawn to the first 200 from /readyz. */
  readyMs: number;
  /** Resident memory once ready, before the load. */
  rssMbAtReady: number;
  cpuSeconds: number;
  cpuMsPerRequest: number;
  peakRssMb: number;
  /** Anonymous resident memory (heap, buffers; not the mapped Node binary) at the end. */
  rssAnonMbAtEnd: number;
  reconciles: number;
  reconcilesPerRequest: number;
  queueRetries: number;
  /** Mean time a key waited in a work queue for a worker, and mean time a worker spent on it (ms). */
  queueWaitMeanMs: number;
  workMeanMs: number;
}

export interface WriteFigures {
  controllerTotal: number;
  controllerPerRequest: number;
  controllerFailed: number;
  /** Per request, by "<plane> <verb> <resource>[/<sub>]". */
  controllerByKind: Record<string, number>;
  controllerFailedByKind: Record<string, number>;
  /** The bench's own writes (creating requests, the executor's status patches). */
  benchTotal: number;
  benchByKind: Record<string, number>;
  /**
   * kcp: the internal requests its virtual workspace made to the shard for the controller's writes,
   * impersonating it (each write through the virtual workspace is forwarded as one more request).
   */
  forwardedPerRequest?: number;
  forwardedByKind?: Record<string, number>;
  /**
   * kcp v0.30.0: the warrants each forwarded request carried, mean and most. Its virtual workspace
   * appends one to the caller's cached authentication per request, kept 10 s (docs/kcp.md).
   */
  forwardedWarrantsMean?: number;
  forwardedWarrantsMax?: number;
}

export interface LoadResult {
  scenario: string;
  requests: number;
  namespaces: number;
  inFlight: number;
  durationS: number;
  /** Requests (or CustomRuns) per second, first create to last terminal. */
  throughput: number;
  notSucceeded: number;
  /** Controller overhead per request, ms. */
  overhead: Record<string, Distribution>;
  /** Create to terminal, ms, everything included. */
  endToEnd: Distribution;
  /** The executor's own time (run seen to status patch answered), ms: excluded from the overhead. */
  executor: Distribution;
  controller: ControllerFigures;
  writes: WriteFigures;
  watchRestarts: number;
}

export interface ScaleResult {
  existing: number;
  populateS: number;
  /** A plain client listing all existing requests (the same per-namespace pages the controller lists). */
  rawListMs: number;
  readyMs: number;
  startupWrites: number;
  startupWritesByKind: Record<string, number>;
  startupCpuSeconds: number;
  rssMbAfterStartup: number;
  burst: LoadResult;
}

export interface BacklogResult {
  backlog: number;
  /** From the controller's ready to each backlog request's PipelineRun, and to its terminal status, ms. */
  readyToRun: Distribution;
  readyToTerminal: Distribution;
  /** The new load that arrived at once (its figures include the backlog's work). */
  burst: LoadResult;
}

export interface KeysResult {
  policy: KeyPolicy;
  /** Consecutive requests per key (one operation's attempts). */
  attempts: number;
  keys: number;
  /** Private PipelineRuns the executor saw: Queue one per request, Reuse about one per key. */
  runsCreated: number;
  /** The most runs of one key live at once (created, not yet done or deleted): must be 1. */
  maxLivePerKey: number;
  /** Reuse followers have no run of their own: create → run and done → terminal leave them out. */
  burst: LoadResult;
}

export const hex = (n: number) => randomBytes(n).toString("hex");

/** Namespaces `${prefix}-0..count-1` on the public plane. */
export async function createNamespaces(raw: RawClient, prefix: string, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  await pool(count, 25, async (i) => {
    await raw.retrying("POST", paths.namespaces(), { metadata: { name: names[i] } });
  });
  return names;
}

/** The params of the service "bench": one digest. */
export const benchParamsSchema = {
  type: "object",
  required: ["digest"],
  properties: { digest: { type: "string", pattern: "^sha256:" } },
};

/**
 * The controller's private namespace: a config allowing `namespaces`, the service "bench", and
 * `more` services (name -> their spec; the pipeline is named after the service unless given).
 */
export async function setupPrivate(
  raw: RawClient,
  prefix: string,
  namespaces: string[],
  more: Record<string, Partial<InternalServiceSpec>> = {},
): Promise<string> {
  const ns = `${prefix}-private`;
  await raw.retrying("POST", paths.namespaces(), { metadata: { name: ns } });
  await raw.retrying("POST", paths.configs(ns), {
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalServicesConfig",
    metadata: { name: "config" },
    spec: { allowList: namespaces },
  });
  for (const [name, spec] of Object.entries({
    [serviceName]: { paramsSchema: benchParamsSchema },
    ...more,
  })) {
    await raw.retrying("POST", paths.services(ns), {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalService",
      metadata: { name },
      spec: { pipeline: { pipelineName: name }, ...spec },
    });
  }
  return ns;
}

export function requestBody(
  name: string,
  labels: Record<string, string>,
  service = serviceName,
): InternalRequest {
  return {
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalRequest",
    metadata: { name, labels },
    spec: { service, params: { digest: `sha256:${hex(32)}` } },
  };
}

interface Tracked {
  createdAt?: number;
  terminalAt?: number;
  reason?: string;
  results?: number;
  waiter?: () => void;
}

/**
 * Watches the public objects of one run (requests or CustomRuns) and timestamps their milestones: one
 * watch per kubeconfig (a kube-apiserver, or each kcp workspace as its tenant sees it).
 */
class Tracker<T extends InternalRequest | V1beta1CustomRun> {
  readonly items = new Map<string, Tracked>();
  readonly withFinalizer = new Set<string>();
  readonly watches: TimedWatch<T>[];

  constructor(
    kubeConfigs: KubeConfig[],
    path: string,
    labelSelector: string,
    outcome: (obj: T) => { reason: string; results: number } | undefined,
  ) {
    this.watches = kubeConfigs.map(
      (kc) =>
        new TimedWatch<T>(kc, path, labelSelector, (type, obj, at) => {
          const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
          if (type === "DELETED") {
            this.withFinalizer.delete(key);
            return;
          }
          if (obj.metadata?.finalizers?.includes(finalizer)) this.withFinalizer.add(key);
          else this.withFinalizer.delete(key);
          const item = this.#item(key);
          if (item.createdAt === undefined || at < item.createdAt) item.createdAt = at;
          const done = outcome(obj);
          if (done && item.terminalAt === undefined) {
            item.terminalAt = at;
            item.reason = done.reason;
            item.results = done.results;
            item.waiter?.();
          }
        }),
    );
  }

  async start(): Promise<void> {
    await pool(this.watches.length, 10, (i) => (this.watches[i] as TimedWatch<T>).start());
  }

  stop(): void {
    for (const w of this.watches) w.stop();
  }

  get restarts(): number {
    return this.watches.reduce((n, w) => n + w.restarts, 0);
  }

  #item(key: string): Tracked {
    let item = this.items.get(key);
    if (!item) {
      item = {};
      this.items.set(key, item);
    }
    return item;
  }

  created(key: string, at: number): void {
    const item = this.#item(key);
    if (item.createdAt === undefined || at < item.createdAt) item.createdAt = at;
  }

  /** Resolves when `key` is terminal; rejects after requestTimeoutMs. */
  terminal(key: string): Promise<void> {
    const item = this.#item(key);
    if (item.terminalAt !== undefined) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${key} not terminal after ${requestTimeoutMs / 1000}s`)),
        requestTimeoutMs,
      );
      item.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

const requestOutcome = (r: InternalRequest) => {
  const c = r.status?.conditions?.find((x) => x.type === "Succeeded");
  if (!c || c.status === "Unknown") return undefined;
  const results = Object.keys(r.status?.results ?? {}).length;
  // "Terminal with results": a Succeeded status without its results is not the end yet.
  if (c.reason === "Succeeded" && results === 0) return undefined;
  return { reason: c.reason, results };
};

const customRunOutcome = (r: V1beta1CustomRun) => {
  const c = r.status?.conditions?.find((x) => x.type === "Succeeded");
  if (!c || c.status === "Unknown") return undefined;
  return { reason: c.reason ?? "", results: r.status?.results?.length ?? 0 };
};

/** The state a request the controller is finished with has (the scale scenario's existing requests). */
function finishedStatus(privateNs: string, name: string) {
  const at = new Date(Date.now() - 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
  return {
    status: {
      conditions: [
        {
          type: "Succeeded",
          status: "True",
          reason: "Succeeded",
          message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
          lastTransitionTime: at,
          observedGeneration: 1,
        },
      ],
      startTime: at,
      completionTime: at,
      observedGeneration: 1,
      pipelineRun: `${privateNs}/${name}-${hex(8)}`,
      service: serviceName,
      results: { digest: `sha256:${hex(32)}`, signature: `sig-${hex(8)}` },
    },
  };
}

/** Instead of the public plane's namespaces: every kcp workspace bound to an APIExport. */
export interface KcpServing {
  /** The provider workspace's kubeconfig (current context), as the controller's identity there. */
  kubeconfig: string;
  export: string;
}

export async function startController(
  ctx: BenchContext,
  tag: string,
  namespaces: string[],
  privateNs: string,
  kcp?: KcpServing,
): Promise<{ controller: ControllerProcess; readyMs: number; rssMbAtReady: number }> {
  const controller = await ControllerProcess.start({
    cmd: ctx.controllerCmd,
    cwd: ctx.repoRoot,
    publicKubeconfig: kcp?.kubeconfig ?? ctx.bench.controllerKubeconfig.public,
    privateKubeconfig: ctx.bench.controllerKubeconfig.private,
    ...(kcp ? { kcpExport: kcp.export } : { namespaces }),
    privateNamespace: privateNs,
    logFile: join(ctx.workDir, `controller-${tag}.log`),
  });
  try {
    const readyMs = await controller.waitReady();
    return { controller, readyMs, rssMbAtReady: (await controller.usage()).rssMb };
  } catch (err) {
    await controller.stop();
    throw new Error(`${(err as Error).message}; see ${join(ctx.workDir, `controller-${tag}.log`)}`);
  }
}

function perRequest(counts: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, round(v / n, 3)]),
  );
}

function writeFigures(window: AuditWindow, n: number): WriteFigures {
  const c: WriteCounts = window.controller;
  return {
    controllerTotal: c.total,
    controllerPerRequest: round(c.total / n, 3),
    controllerFailed: c.failed,
    controllerByKind: perRequest(c.byKind, n),
    controllerFailedByKind: perRequest(c.failedByKind, n),
    benchTotal: window.bench.total,
    benchByKind: perRequest(window.bench.byKind, n),
    ...(window.forwarded.total > 0
      ? {
          forwardedPerRequest: round(window.forwarded.total / n, 3),
          forwardedByKind: perRequest(window.forwarded.byKind, n),
          forwardedWarrantsMean: round(window.forwardedWarrants.sum / window.forwarded.total, 1),
          forwardedWarrantsMax: window.forwardedWarrants.max,
        }
      : {}),
  };
}

/**
 * The side the requests live on. The default is the public kube-apiserver: namespaces there, the
 * bench's admin client, one watch, the planes' audit logs. kcp gives one "default" namespace per
 * workspace, each under its /clusters/<path>.
 */
export interface RemoteSide {
  /** The bench's (the tenants') client there: it creates the requests. */
  raw: RawClient;
  /** Slot i of the load: a path prefix ("" or "/clusters/<path>") and a namespace. */
  slots: { prefix: string; namespace: string }[];
  /** What the requests are watched with (each all namespaces). */
  watchKubeConfigs: KubeConfig[];
  audit: AuditLog;
}

export interface LoadSetup {
  tag: string;
  /** The load's namespaces (with `remote`: its slots' names, e.g. kcp workspace paths). */
  namespaces: string[];
  remote?: RemoteSide;
  privateNs: string;
  controller: ControllerProcess;
  readyMs: number;
  rssMbAtReady: number;
  executor: Executor;
}

/** What request i is, beyond the defaults (the service "bench", slot i round-robin). */
export interface DriveOptions {
  service?: string;
  /** More labels of request i. */
  labels?: (i: number) => Record<string, string>;
  /** The slot (namespace) of request i, modulo the slots. */
  slot?: (i: number) => number;
  /** The controller keeps finished runs (Reuse keys): cleanup is done without their deletion. */
  keepsRuns?: boolean;
}

/** Drives `count` requests (or CustomRuns) through the controller, `inFlight` at a time. */
export async function drive(
  ctx: BenchContext,
  setup: LoadSetup,
  kind: "requests" | "customruns",
  count: number,
  inFlight: number,
  options: DriveOptions = {},
): Promise<LoadResult> {
  const { tag, namespaces, controller, executor } = setup;
  const remote: RemoteSide = setup.remote ?? {
    raw: ctx.bench.raw.public,
    slots: namespaces.map((namespace) => ({ prefix: "", namespace })),
    watchKubeConfigs: [ctx.bench.publicAdmin],
    audit: ctx.bench.audit,
  };
  if (setup.remote && kind !== "requests") throw new Error("CustomRuns run on the public plane only");
  const pipelineRunLabel = `bench-${tag}`;
  // Requests made for CustomRuns carry the CustomRun's tekton.dev/pipelineRun label, not ours.
  const requestSelector =
    kind === "requests" ? `${runLabel}=${tag}` : `tekton.dev/pipelineRun=${pipelineRunLabel}`;
  const requests = new Tracker<InternalRequest>(
    remote.watchKubeConfigs,
    paths.requests(),
    requestSelector,
    requestOutcome,
  );
  const runs =
    kind === "customruns"
      ? new Tracker<V1beta1CustomRun>(
          remote.watchKubeConfigs,
          paths.customRuns(),
          `${runLabel}=${tag}`,
          customRunOutcome,
        )
      : undefined;
  await requests.start();
  await runs?.start();
  const primary = (runs ?? requests) as Tracker<InternalRequest | V1beta1CustomRun>;

  const mark = await remote.audit.mark();
  const usageBefore = await controller.usage();
  const counters = async () => ({
    reconciles: await controller.metric("controller_runtime_reconcile_total"),
    retries: await controller.metric("workqueue_retries_total"),
    waitSum: await controller.metric("workqueue_queue_duration_seconds_sum"),
    waitCount: await controller.metric("workqueue_queue_duration_seconds_count"),
    workSum: await controller.metric("workqueue_work_duration_seconds_sum"),
    workCount: await controller.metric("workqueue_work_duration_seconds_count"),
  });
  const before = await counters();
  const started = performance.now();
  let lastTerminal = started;
  const pipelineRunUid = randomUUID();
  try {
    await pool(count, inFlight, async (i) => {
      const slot = remote.slots[
        (options.slot?.(i) ?? i) % remote.slots.length
      ] as RemoteSide["slots"][number];
      const ns = slot.namespace;
      // Names are unique in a run, also across kcp workspaces (whose namespaces are all "default").
      const name = kind === "requests" ? `r-${i}` : `run-${i}-sign`;
      const key = `${ns}/${name}`;
      const body =
        kind === "requests"
          ? requestBody(name, { ...options.labels?.(i), [runLabel]: tag }, options.service)
          : customRunBody(name, pipelineRunLabel, pipelineRunUid, tag);
      const res = await remote.raw.retrying(
        "POST",
        `${slot.prefix}${kind === "requests" ? paths.requests(ns) : paths.customRuns(ns)}`,
        body,
      );
      primary.created(key, res.at);
      await primary.terminal(key);
      lastTerminal = Math.max(lastTerminal, primary.items.get(key)?.terminalAt ?? 0);
    });
    // Then the controller cleans up: internal runs deleted, finalizers removed.
    const clean = await waitFor(
      () => (options.keepsRuns || executor.present.size === 0) && requests.withFinalizer.size === 0,
      60_000,
      100,
    );
    if (!clean) {
      ctx.log(
        `  warning: cleanup incomplete after 60s (${executor.present.size} runs, ${requests.withFinalizer.size} finalizers left)`,
      );
    }
    await sleep(500); // let the last write echoes settle before counting
  } finally {
    requests.stop();
    runs?.stop();
  }
  const usageAfter = await controller.usage();
  const after = await counters();
  const reconciles = after.reconciles - before.reconciles;
  const retries = after.retries - before.retries;
  const meanMs = (sum: number, count: number) => (count > 0 ? (sum * 1000) / count : Number.NaN);
  const window = await remote.audit.since(mark);

  const createToRun: number[] = [];
  const doneToTerminal: number[] = [];
  const customRunOverhead: number[] = [];
  const endToEnd: number[] = [];
  const executorMs: number[] = [];
  // A keyed run cannot start before the previous run of its key is done: that wait is the policy's,
  // not the controller's overhead, so create → run counts from then.
  const keyFreeAt = new Map<RunTimes, number>();
  const byKey = Map.groupBy(
    [...executor.runs.values()].filter((r) => r.concurrencyKey !== undefined),
    (r) => r.concurrencyKey as string,
  );
  for (const keyRuns of byKey.values()) {
    keyRuns.sort((a, b) => a.seenAt - b.seenAt);
    for (let j = 1; j < keyRuns.length; j++) {
      const before = keyRuns[j - 1]?.doneAt;
      if (before !== undefined) keyFreeAt.set(keyRuns[j] as RunTimes, before);
    }
  }
  let notSucceeded = 0;
  for (const [key, item] of primary.items) {
    if (item.createdAt === undefined || item.terminalAt === undefined) continue;
    if (item.reason !== "Succeeded") notSucceeded++;
    endToEnd.push(item.terminalAt - item.createdAt);
    const requestKey = kind === "requests" ? key : `${key}-0`;
    const run = executor.runs.get(requestKey);
    const request = requests.items.get(requestKey);
    if (!run || run.doneAt === undefined) continue;
    executorMs.push(run.doneAt - run.seenAt);
    if (kind === "customruns") {
      customRunOverhead.push(Math.max(0, item.terminalAt - item.createdAt - (run.doneAt - run.seenAt)));
    }
    if (request?.createdAt !== undefined) {
      const from = Math.max(request.createdAt, keyFreeAt.get(run) ?? request.createdAt);
      createToRun.push(Math.max(0, run.seenAt - from));
    }
    if (request?.terminalAt !== undefined) doneToTerminal.push(Math.max(0, request.terminalAt - run.doneAt));
  }
  const durationS = (lastTerminal - started) / 1000;
  const overhead: Record<string, Distribution> = {
    createToRun: distribution(createToRun),
    doneToTerminal: distribution(doneToTerminal),
  };
  if (kind === "customruns") overhead.customRun = distribution(customRunOverhead);
  return {
    scenario: kind === "requests" ? "burst" : "customruns",
    requests: count,
    namespaces: namespaces.length,
    inFlight,
    durationS: round(durationS),
    throughput: round(count / durationS),
    notSucceeded: notSucceeded + (count - endToEnd.length),
    overhead,
    endToEnd: distribution(endToEnd),
    executor: distribution(executorMs),
    controller: {
      readyMs: round(setup.readyMs),
      rssMbAtReady: round(setup.rssMbAtReady, 1),
      cpuSeconds: round(usageAfter.cpuSeconds - usageBefore.cpuSeconds),
      cpuMsPerRequest: round(((usageAfter.cpuSeconds - usageBefore.cpuSeconds) * 1000) / count),
      peakRssMb: round(usageAfter.peakRssMb, 1),
      rssAnonMbAtEnd: round(usageAfter.rssAnonMb, 1),
      reconciles,
      reconcilesPerRequest: round(reconciles / count),
      queueRetries: retries,
      queueWaitMeanMs: round(meanMs(after.waitSum - before.waitSum, after.waitCount - before.waitCount)),
      workMeanMs: round(meanMs(after.workSum - before.workSum, after.workCount - before.workCount)),
    },
    writes: writeFigures(window, count),
    watchRestarts: requests.restarts + (runs?.restarts ?? 0),
  };
}

/** A CustomRun as Tekton's PipelineRun reconciler creates it for a task referencing InternalRequest. */
function customRunBody(
  name: string,
  pipelineRun: string,
  pipelineRunUid: string,
  tag: string,
): V1beta1CustomRun {
  return {
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: {
      name,
      labels: {
        "app.kubernetes.io/managed-by": "tekton-pipelines",
        "tekton.dev/memberOf": "tasks",
        "tekton.dev/pipeline": "release",
        "tekton.dev/pipelineRun": pipelineRun,
        "tekton.dev/pipelineRunUID": pipelineRunUid,
        "tekton.dev/pipelineTask": "sign",
        [runLabel]: tag,
      },
      ownerReferences: [
        {
          apiVersion: "tekton.dev/v1",
          kind: "PipelineRun",
          name: pipelineRun,
          uid: pipelineRunUid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      customRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest", name: serviceName },
      params: [{ name: "digest", value: `sha256:${hex(32)}` }],
      serviceAccountName: "default",
      timeout: "1h0m0s",
    },
  } as V1beta1CustomRun;
}

export async function withSetup<R>(
  ctx: BenchContext,
  tag: string,
  namespaces: string[],
  privateNs: string,
  body: (setup: LoadSetup) => Promise<R>,
  kcp?: KcpServing & { remote: RemoteSide },
): Promise<R> {
  const executor = new Executor(ctx.bench.privateAdmin, ctx.bench.raw.private, privateNs);
  await executor.start();
  let controller: ControllerProcess | undefined;
  try {
    const started = await startController(ctx, tag, namespaces, privateNs, kcp);
    controller = started.controller;
    return await body({ tag, namespaces, privateNs, executor, remote: kcp?.remote, ...started });
  } finally {
    await controller?.stop();
    executor.stop();
    if (executor.errors > 0)
      ctx.log(`  executor: ${executor.errors} failed patches (last: ${executor.lastError})`);
  }
}

let tagCounter = 0;
export const newTag = (name: string) => `b${++tagCounter}-${name}-${hex(2)}`;

/** Scenario 1: `count` InternalRequests across `namespaceCount` namespaces, `inFlight` at a time. */
export async function burst(
  ctx: BenchContext,
  count: number,
  namespaceCount: number,
  inFlight: number,
): Promise<LoadResult> {
  const tag = newTag(`burst${count}`);
  const namespaces = await createNamespaces(ctx.bench.raw.public, tag, namespaceCount);
  const privateNs = await setupPrivate(ctx.bench.raw.private, tag, namespaces);
  return withSetup(ctx, tag, namespaces, privateNs, (setup) =>
    drive(ctx, setup, "requests", count, inFlight),
  );
}

/** Scenario 2: `count` CustomRuns through the custom-task path. */
export async function customRuns(
  ctx: BenchContext,
  count: number,
  namespaceCount: number,
  inFlight: number,
): Promise<LoadResult> {
  const tag = newTag(`cr${count}`);
  const namespaces = await createNamespaces(ctx.bench.raw.public, tag, namespaceCount);
  const privateNs = await setupPrivate(ctx.bench.raw.private, tag, namespaces);
  return withSetup(ctx, tag, namespaces, privateNs, (setup) =>
    drive(ctx, setup, "customruns", count, inFlight),
  );
}

/** Scenario 3: `existing` finished requests, then the controller starts, then a burst on top. */
export async function scale(
  ctx: BenchContext,
  existing: number,
  count: number,
  namespaceCount: number,
  inFlight: number,
): Promise<ScaleResult> {
  const { bench } = ctx;
  const tag = newTag(`scale${existing}`);
  const namespaces = await createNamespaces(bench.raw.public, tag, namespaceCount);
  const privateNs = await setupPrivate(bench.raw.private, tag, namespaces);
  const populateStarted = performance.now();
  let populated = 0;
  await pool(existing, 50, async (i) => {
    const ns = namespaces[i % namespaces.length] as string;
    const name = `done-${i}`;
    await bench.raw.public.retrying(
      "POST",
      paths.requests(ns),
      requestBody(name, { [runLabel]: `${tag}-old` }),
    );
    await bench.raw.public.retrying(
      "PATCH",
      `${paths.requests(ns)}/${name}/status`,
      finishedStatus(privateNs, name),
      mergePatch,
    );
    if (++populated % 2000 === 0) ctx.log(`  ${populated}/${existing} finished requests written`);
  });
  const populateS = (performance.now() - populateStarted) / 1000;

  // What a plain client needs to read them all: the controller's per-namespace lists (pages of 500).
  const listStarted = performance.now();
  await pool(namespaces.length, namespaces.length, async (i) => {
    let next: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const query = `?limit=500${next ? `&continue=${encodeURIComponent(next)}` : ""}`;
      const res = await bench.raw.public.call("GET", `${paths.requests(namespaces[i])}${query}`);
      next = (JSON.parse(res.text) as { metadata?: { continue?: string } }).metadata?.continue || undefined;
      if (!next) break;
    }
  });
  const rawListMs = performance.now() - listStarted;

  const mark = await bench.audit.mark();
  return withSetup(ctx, tag, namespaces, privateNs, async (setup) => {
    // Settle: every existing request reconciled once, queue empty, nothing more happening for 2 s.
    let last = -1;
    let stableSince = performance.now();
    await waitFor(
      async () => {
        const reconciles = await setup.controller.metric("controller_runtime_reconcile_total");
        const depth = await setup.controller.metric("workqueue_depth");
        if (reconciles !== last || depth > 0) {
          last = reconciles;
          stableSince = performance.now();
        }
        return performance.now() - stableSince >= 2_000;
      },
      120_000,
      250,
    );
    const window = await bench.audit.since(mark);
    const usage = await setup.controller.usage();
    ctx.log(
      `  controller ready in ${(setup.readyMs / 1000).toFixed(2)}s over ${existing} finished requests; ` +
        `${window.controller.total} writes at startup; RSS ${usage.rssMb.toFixed(0)} MB`,
    );
    const result = await drive(ctx, setup, "requests", count, inFlight);
    return {
      existing,
      populateS: round(populateS),
      rawListMs: round(rawListMs),
      readyMs: round(setup.readyMs),
      startupWrites: window.controller.total,
      startupWritesByKind: window.controller.byKind,
      startupCpuSeconds: round(usage.cpuSeconds),
      rssMbAfterStartup: round(usage.rssMb, 1),
      burst: { ...result, scenario: "scale" },
    };
  });
}

/**
 * Scenario 6: `backlog` requests made while no controller runs (none picked up), then the controller
 * starts and `count` new requests arrive at once, `inFlight` at a time: requests that were waiting
 * are served among the new load, not starved by it.
 */
export async function backlog(
  ctx: BenchContext,
  backlogCount: number,
  count: number,
  namespaceCount: number,
  inFlight: number,
): Promise<BacklogResult> {
  const { bench } = ctx;
  const tag = newTag(`backlog${backlogCount}`);
  const namespaces = await createNamespaces(bench.raw.public, tag, namespaceCount);
  const privateNs = await setupPrivate(bench.raw.private, tag, namespaces);
  const oldLabel = `${tag}-old`;
  await pool(backlogCount, 50, async (i) => {
    const ns = namespaces[i % namespaces.length] as string;
    await bench.raw.public.retrying(
      "POST",
      paths.requests(ns),
      requestBody(`old-${i}`, { [runLabel]: oldLabel }),
    );
  });
  const old = new Tracker<InternalRequest>(
    [bench.publicAdmin],
    paths.requests(),
    `${runLabel}=${oldLabel}`,
    requestOutcome,
  );
  await old.start();
  try {
    return await withSetup(ctx, tag, namespaces, privateNs, async (setup) => {
      const readyAt = performance.now();
      const result = await drive(ctx, setup, "requests", count, inFlight);
      await waitFor(
        () => [...old.items.values()].filter((x) => x.terminalAt !== undefined).length === backlogCount,
        60_000,
        100,
      );
      const toRun: number[] = [];
      const toTerminal: number[] = [];
      for (const [key, item] of old.items) {
        const run = setup.executor.runs.get(key);
        if (run) toRun.push(Math.max(0, run.seenAt - readyAt));
        if (item.terminalAt !== undefined) toTerminal.push(Math.max(0, item.terminalAt - readyAt));
      }
      return {
        backlog: backlogCount,
        readyToRun: distribution(toRun),
        readyToTerminal: distribution(toTerminal),
        burst: { ...result, scenario: "backlog" },
      };
    });
  } finally {
    old.stop();
  }
}

export type KeyPolicy = "Queue" | "Reuse";
export const keyPolicies: KeyPolicy[] = ["Queue", "Reuse"];
const operationLabel = "bench.isc.dev/operation";
const keyedService = "bench-keyed";

/**
 * Scenario 7: per policy, a fresh controller and `count` requests to a service with a concurrency key,
 * `attempts` consecutive requests per key in one namespace, so with `inFlight` of them at a time a
 * key's later attempts arrive while its first run is live (they wait, or follow it).
 */
export async function keys(
  ctx: BenchContext,
  count: number,
  attempts: number,
  namespaceCount: number,
  inFlight: number,
): Promise<KeysResult[]> {
  const results: KeysResult[] = [];
  for (const policy of keyPolicies) {
    const tag = newTag(`keys-${policy.toLowerCase()}${count}`);
    const namespaces = await createNamespaces(ctx.bench.raw.public, tag, namespaceCount);
    const privateNs = await setupPrivate(ctx.bench.raw.private, tag, namespaces, {
      [keyedService]: {
        pipeline: { pipelineName: serviceName },
        paramsSchema: benchParamsSchema,
        concurrency: {
          key: `$(labels['${operationLabel}'])`,
          policy,
          ...(policy === "Reuse" ? { reuseWithin: "1h" } : {}),
        },
      },
    });
    const operation = (i: number) => Math.floor(i / attempts);
    const measured = await withSetup(ctx, tag, namespaces, privateNs, async (setup) => {
      const load = await drive(ctx, setup, "requests", count, inFlight, {
        service: keyedService,
        labels: (i) => ({ [operationLabel]: `op-${operation(i)}` }),
        slot: operation,
        keepsRuns: policy === "Reuse",
      });
      return { load, runsCreated: setup.executor.created, maxLivePerKey: setup.executor.maxLivePerKey };
    });
    results.push({
      policy,
      attempts,
      keys: Math.ceil(count / attempts),
      runsCreated: measured.runsCreated,
      maxLivePerKey: measured.maxLivePerKey,
      burst: { ...measured.load, scenario: `keys ${policy}` },
    });
  }
  return results;
}
