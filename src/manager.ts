// Wires the data path, top-down: sources (watch -> cache) for every remote workspace (kubeconfig
// contexts, and kcp APIExports' virtual workspaces) and the private cluster; the controllers declared
// over them (what wakes each, mapped to its keys); one work queue per controller; workers that
// reconcile its keys and write through the API.

import type { Logger } from "pino";
import type { KubeConfig } from "./config/kubeconfig.ts";
import { customRunController } from "./customtask/controller.ts";
import { fromWorkspace, requestControllers } from "./requests/controller.ts";
import { type ControllerSpec, runController } from "./runtime/controller.ts";
import { Heartbeat } from "./runtime/heartbeat.ts";
import { Metrics } from "./runtime/metrics.ts";
import { WorkQueue } from "./runtime/queue.ts";
import { type KcpConfig, openKcp } from "./sources/kcp.ts";
import { openPrivateCluster, type PrivateCluster } from "./sources/private.ts";
import { openWorkspace, type WorkspaceConfig } from "./sources/workspace.ts";

export type { WorkspaceConfig } from "./sources/workspace.ts";

export interface ManagerOptions {
  workspaces: WorkspaceConfig[];
  /** kcp APIExports whose bound workspaces are served too (InternalRequests only: no Tekton on kcp). */
  kcp?: KcpConfig[];
  /** Fulfil InternalRequests (needs the private cluster). Default true. */
  serveRequests?: boolean;
  /** Bridge Tekton CustomRuns to InternalRequests (needs Tekton's CRDs in the workspaces). Default true. */
  serveCustomTasks?: boolean;
  /** Required when serving requests. */
  privateKubeConfig?: KubeConfig;
  /** Where services, the config and internal PipelineRuns live in the private cluster (with serveRequests). */
  controllerNamespace?: string;
  /** See RequestReconcilerDeps.goWorkspace. Default: the only workspace, when there is one. */
  goWorkspace?: string;
  workers?: number;
  log: Logger;
  metrics?: Metrics;
  /** Once serving, renew a Lease in each workspace saying so (see Heartbeat); absent: none. */
  heartbeat?: { namespace: string; name: string; identity: string; intervalMs: number };
  /** Test-only fault injection, see RequestReconcilerDeps.afterCreate. */
  afterCreate?: () => void;
  /** See RequestReconcilerDeps.queuedRecheckMs. */
  queuedRecheckMs?: number;
}

export interface Manager {
  metrics: Metrics;
  /** Resolves when every cache has synced and workers run. */
  ready: Promise<void>;
  isReady(): boolean;
  stop(): Promise<void>;
}

// Per-key backoff capped at 60 s rather than client-go's 1000 s: errors that reach the queue are
// nearly always an API server or network outage (bad input ends as a status, not an error), and
// after one every request should resume within a minute, not a quarter of an hour.
const maxDelayMs = 60_000;

export function startManager(opts: ManagerOptions): Manager {
  const metrics = opts.metrics ?? new Metrics();
  const log = opts.log;
  const serveRequests = opts.serveRequests ?? true;
  const serveCustomTasks = opts.serveCustomTasks ?? true;

  const workspaces = opts.workspaces.map((config) =>
    openWorkspace(config, { customRuns: serveCustomTasks, log }),
  );
  const kcp = (opts.kcp ?? []).map((config) => openKcp(config, { log }));
  let privateCluster: PrivateCluster | undefined;
  const specs: ControllerSpec<never>[] = [];
  if (serveRequests) {
    if (!opts.privateKubeConfig || !opts.controllerNamespace) {
      throw new Error(
        "serving InternalRequests needs the private cluster's kubeconfig and the controller namespace",
      );
    }
    privateCluster = openPrivateCluster(opts.privateKubeConfig, opts.controllerNamespace, log);
    specs.push(
      ...requestControllers({
        sources: [...workspaces.map(fromWorkspace), ...kcp],
        private: privateCluster,
        metrics,
        goWorkspace: opts.goWorkspace ?? (workspaces.length === 1 ? workspaces[0]?.name : undefined),
        afterCreate: opts.afterCreate,
        queuedRecheckMs: opts.queuedRecheckMs,
      }),
    );
  }
  if (serveCustomTasks) specs.push(customRunController(workspaces) as ControllerSpec<never>);

  const controllers = specs.map((spec) => {
    const queue = new WorkQueue({ maxDelayMs, observer: metrics.queueObserver(spec.name) });
    for (const w of spec.watches) {
      w.source.subscribe((key, obj, deleted) => {
        for (const k of w.keys(key, obj, deleted)) queue.add(spec.key.format(k));
      });
    }
    return { spec, queue };
  });

  const heartbeats = opts.heartbeat
    ? workspaces.map(
        (ws, i) =>
          new Heartbeat({
            ...(opts.heartbeat as NonNullable<ManagerOptions["heartbeat"]>),
            kubeConfig: ws.kubeConfig,
            serving: serving(opts.workspaces[i] as WorkspaceConfig, { serveRequests, serveCustomTasks }),
            log,
          }),
      )
    : [];

  const abort = new AbortController();
  let ready = false;
  let workersDone: Promise<unknown> = Promise.resolve();
  const readyPromise = (async () => {
    // The private caches first: reconciling a request needs its service and config.
    await privateCluster?.start();
    await Promise.all([...workspaces, ...kcp].map((source) => source.start()));
    const workers = opts.workers ?? 16;
    workersDone = Promise.all(
      controllers.map(({ spec, queue }) =>
        runController({
          spec: spec as ControllerSpec<unknown>,
          queue,
          workers,
          log,
          metrics,
          signal: abort.signal,
        }),
      ),
    );
    ready = true;
    for (const h of heartbeats) h.start();
    log.info(
      { workspaces: workspaces.map((w) => w.name), controllers: specs.map((s) => s.name) },
      "controller ready",
    );
  })();

  return {
    metrics,
    ready: readyPromise,
    isReady: () => ready,
    stop: async () => {
      for (const h of heartbeats) h.stop();
      await privateCluster?.stop();
      abort.abort();
      for (const c of controllers) c.queue.shutDown();
      await workersDone;
      // Last: the workspaces send the Events still queued.
      await Promise.all([...workspaces, ...kcp].map((source) => source.stop()));
    },
  };
}

/** What a workspace is served for, as its heartbeat says it: counts and selectors, never tenants' names. */
function serving(ws: WorkspaceConfig, serves: { serveRequests: boolean; serveCustomTasks: boolean }): string {
  const what = [
    ...(serves.serveRequests ? ["InternalRequests"] : []),
    ...(serves.serveCustomTasks ? ["InternalRequest CustomRuns"] : []),
  ].join(" and ");
  const where = ws.namespaces?.length
    ? `${ws.namespaces.length} listed namespace${ws.namespaces.length === 1 ? "" : "s"}`
    : ws.namespaceSelector
      ? `the namespaces labelled ${ws.namespaceSelector}`
      : "all namespaces";
  return `${what} in ${where} of workspace ${ws.name}`;
}
