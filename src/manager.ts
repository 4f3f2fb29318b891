// Wires the data path: reflectors (watch -> cache) enqueue keys; workers reconcile them; reconcilers
// write through the API. One process serves several remote workspaces and one private cluster.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { EventRecorder } from "./api/events.ts";
import {
  customRuns,
  internalRequests,
  internalServices,
  internalServicesConfigs,
  namespaces,
  pipelineRuns,
  ResourceClient,
  taskRuns,
} from "./api/resources.ts";
import { CustomRunReconciler, type CustomTaskWorkspace } from "./customtask/reconciler.ts";
import { owningCustomRun } from "./customtask/request.ts";
import { summarizeCustomRun } from "./customtask/summary.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "./generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun, V1TaskRun } from "./generated/tekton.ts";
import { isTerminal } from "./requests/conditions.ts";
import {
  formatKey,
  managedSelector,
  parseKey,
  pipelineRunName,
  requestAnnotation,
  workspaceAnnotation,
} from "./requests/naming.ts";
import { runState, summarizeRun } from "./requests/pipelinerun.ts";
import { type PrivateAccess, RequestReconciler, type WorkspaceAccess } from "./requests/reconciler.ts";
import { RunSlots } from "./requests/slots.ts";
import { summarizeRequest } from "./requests/summary.ts";
import { type Reconcile, runController } from "./runtime/controller.ts";
import { Metrics } from "./runtime/metrics.ts";
import { NamespacedCache } from "./runtime/namespaced-cache.ts";
import { WorkQueue } from "./runtime/queue.ts";
import { Reflector } from "./runtime/reflector.ts";

export interface WorkspaceConfig {
  /** Names the workspace in keys, labels and allow-lists ("workspace/namespace"); no "/". */
  name: string;
  kubeConfig: KubeConfig;
  /** Namespaces to watch. Neither this nor namespaceSelector: all namespaces (cluster-wide list/watch). */
  namespaces?: string[];
  /** Serve the namespaces with these labels, following them as they come and go (needs list/watch namespaces). */
  namespaceSelector?: string;
}

export interface ManagerOptions {
  workspaces: WorkspaceConfig[];
  /** Fulfil InternalRequests (needs the private cluster). Default true. */
  serveRequests?: boolean;
  /** Bridge Tekton CustomRuns to InternalRequests (needs Tekton's CRDs in the workspaces). Default true. */
  serveCustomTasks?: boolean;
  /** Required when serving requests. */
  privateKubeConfig?: KubeConfig;
  /** Where services, the config and internal PipelineRuns live in the private cluster (with serveRequests). */
  controllerNamespace?: string;
  workers?: number;
  log: Logger;
  metrics?: Metrics;
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

const configName = "config";

/** A cache over the namespaces of one workspace (see NamespacedCache), whatever it holds. */
type ServedNamespaces = Pick<NamespacedCache<KubernetesObject>, "serve" | "drop" | "stop">;

export function startManager(opts: ManagerOptions): Manager {
  const metrics = opts.metrics ?? new Metrics();
  const log = opts.log;
  const serveRequests = opts.serveRequests ?? true;
  const serveCustomTasks = opts.serveCustomTasks ?? true;
  // Per-key backoff capped at 60 s rather than client-go's 1000 s: errors that reach the queue are
  // nearly always an API server or network outage (bad input ends as a status, not an error), and
  // after one every request should resume within a minute, not a quarter of an hour.
  const maxDelayMs = 60_000;
  const queue = new WorkQueue({ maxDelayMs, observer: metrics.queueObserver("internalrequests") });
  const customRunQueue = new WorkQueue({ maxDelayMs, observer: metrics.queueObserver("customruns") });
  // Private runs whose request may be gone (keys: run names).
  const runQueue = new WorkQueue({ maxDelayMs, observer: metrics.queueObserver("pipelineruns") });
  // Remote workspaces: InternalRequests (and CustomRuns), one reflector per served namespace.
  const workspaceAccess = new Map<string, WorkspaceAccess>();
  const customTaskAccess = new Map<string, CustomTaskWorkspace>();
  const requestCaches = new Map<string, NamespacedCache<InternalRequest>>();
  /** Per workspace: starts its caches, resolving when the namespaces served at start are synced. */
  const starters: (() => Promise<void>)[] = [];
  const stoppers: (() => void)[] = [];
  const recorders: EventRecorder[] = [];

  for (const ws of opts.workspaces) {
    const requests: NamespacedCache<InternalRequest> = new NamespacedCache(
      ws.kubeConfig,
      internalRequests,
      log,
      (key, request, deleted) => {
        if (serveRequests) queue.add(`${ws.name}/${key}`);
        // A deleted request's run (if any) is looked at: the request may have gone without our finalizer.
        if (serveRequests && deleted)
          runQueue.add(
            pipelineRunName(ws.name, request.metadata.name as string, request.metadata.uid as string),
          );
        // A request created for a CustomRun wakes that CustomRun.
        const owner = owningCustomRun(request);
        if (serveCustomTasks && owner) customRunQueue.add(`${ws.name}/${key.split("/")[0]}/${owner}`);
      },
      summarizeRequest,
    );
    const caches: ServedNamespaces[] = [requests];
    requestCaches.set(ws.name, requests);
    const events = new EventRecorder(ws.kubeConfig, log);
    recorders.push(events);
    workspaceAccess.set(ws.name, {
      name: ws.name,
      requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
      getRequest: (key) => requests.get(key),
      observe: (request) => requests.observe(request),
      events,
    });
    if (serveCustomTasks) {
      const runs = new NamespacedCache<V1beta1CustomRun>(
        ws.kubeConfig,
        customRuns,
        log,
        (key) => customRunQueue.add(`${ws.name}/${key}`),
        summarizeCustomRun,
      );
      caches.push(runs);
      customTaskAccess.set(ws.name, {
        name: ws.name,
        customRuns: new ResourceClient<V1beta1CustomRun>(ws.kubeConfig, customRuns),
        requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
        getCustomRun: (key) => runs.get(key),
        getRequest: (key) => requests.get(key),
        observeCustomRun: (run) => runs.observe(run),
      });
    }
    const serve = (namespace: string | undefined) => Promise.all(caches.map((c) => c.serve(namespace)));
    stoppers.push(() => {
      for (const c of caches) c.stop();
    });
    if (ws.namespaceSelector) {
      // Follow the selected namespaces: start serving new ones, drop those that no longer match.
      const selected: Reflector<KubernetesObject> = new Reflector<KubernetesObject>({
        kubeConfig: ws.kubeConfig,
        type: namespaces,
        labelSelector: ws.namespaceSelector,
        log,
        onChange: (key) => {
          const name = key.slice(1); // cluster-scoped: "/name"
          if (selected.get(key))
            void serve(name).catch(() => undefined); // the reflector retries itself
          else for (const c of caches) c.drop(name);
        },
      });
      stoppers.push(() => selected.stop());
      starters.push(async () => {
        await selected.start();
        await Promise.all(selected.list().map((n) => serve(n.metadata?.name)));
      });
    } else {
      const list = ws.namespaces?.length ? ws.namespaces : [undefined];
      starters.push(async () => {
        await Promise.all(list.map(serve));
      });
    }
  }

  // When a service or the config changes, requests not started yet may decide differently. Running
  // ones are followed through their own PipelineRun. (A finished run wakes only the requests waiting
  // for a concurrency slot: see privateSide.)
  const enqueueUnfinished = () => {
    for (const [workspace, requests] of requestCaches) {
      for (const r of requests.list()) {
        if (isTerminal(r.status) || r.status?.pipelineRun) continue;
        queue.add(
          formatKey({
            workspace,
            namespace: r.metadata.namespace as string,
            name: r.metadata.name as string,
          }),
        );
      }
    }
  };

  const abort = new AbortController();
  const byRequestKey = (key: string) => ({ ...parseKey(key) });
  const controllers: {
    name: string;
    queue: WorkQueue;
    reconcile: Reconcile;
    keyFields: (key: string) => Record<string, string>;
  }[] = [];
  let privateReflectors: Reflector<never>[] = [];
  if (serveRequests) {
    if (!opts.privateKubeConfig || !opts.controllerNamespace) {
      throw new Error(
        "serving InternalRequests needs the private cluster's kubeconfig and the controller namespace",
      );
    }
    const side = privateSide(opts.privateKubeConfig, opts.controllerNamespace, log, queue, runQueue, {
      onPolicyChange: enqueueUnfinished,
      onRunFinished: () => {
        for (const key of reconciler.takeWaitingForSlot()) queue.add(key);
      },
    });
    privateReflectors = side.reflectors;
    metrics.activeRunsSource = () => side.access.slots.byGroup();
    const reconciler: RequestReconciler = new RequestReconciler({
      workspaces: workspaceAccess,
      private: side.access,
      metrics,
      afterCreate: opts.afterCreate,
      queuedRecheckMs: opts.queuedRecheckMs,
    });
    controllers.push({
      name: "internalrequest",
      queue,
      reconcile: reconciler.reconcile,
      keyFields: byRequestKey,
    });
    controllers.push({
      name: "pipelinerun",
      queue: runQueue,
      reconcile: reconciler.reconcileRun,
      keyFields: (pipelineRun) => ({ pipelineRun }),
    });
  }
  if (serveCustomTasks) {
    controllers.push({
      name: "customrun",
      queue: customRunQueue,
      reconcile: new CustomRunReconciler(customTaskAccess).reconcile,
      keyFields: byRequestKey,
    });
  }

  let ready = false;
  let workersDone: Promise<unknown> = Promise.resolve();
  const readyPromise = (async () => {
    // Private caches first: reconciling a request needs its service and config.
    await Promise.all(privateReflectors.map((r) => r.start()));
    await Promise.all(starters.map((start) => start()));
    workersDone = Promise.all(
      controllers.map((c) =>
        runController({
          ...c,
          workers: opts.workers ?? 16,
          log,
          metrics,
          signal: abort.signal,
        }),
      ),
    );
    ready = true;
    log.info(
      { workspaces: opts.workspaces.map((w) => w.name), controllers: controllers.map((c) => c.name) },
      "controller ready",
    );
  })();

  return {
    metrics,
    ready: readyPromise,
    isReady: () => ready,
    stop: async () => {
      for (const stop of stoppers) stop();
      for (const r of privateReflectors) r.stop();
      abort.abort();
      queue.shutDown();
      customRunQueue.shutDown();
      runQueue.shutDown();
      await workersDone;
      await Promise.all(recorders.map((r) => r.flush()));
    },
  };
}

/** Private cluster: our PipelineRuns (mapped back to their request by annotations), services, config. */
function privateSide(
  kubeConfig: KubeConfig,
  ns: string,
  log: Logger,
  queue: WorkQueue,
  runQueue: WorkQueue,
  on: { onPolicyChange: () => void; onRunFinished: () => void },
): { access: PrivateAccess; reflectors: Reflector<never>[] } {
  const slots = new RunSlots();
  const runs: Reflector<V1PipelineRun> = new Reflector<V1PipelineRun>({
    kubeConfig,
    type: pipelineRuns,
    namespace: ns,
    labelSelector: managedSelector,
    log,
    // A deletion hands on the last version seen, so a run deleted out of band still wakes its request.
    onChange: (_key, run, deleted) => {
      slots.observe(run, deleted);
      const workspace = run.metadata?.annotations?.[workspaceAnnotation];
      const request = run.metadata?.annotations?.[requestAnnotation];
      if (workspace && request) queue.add(`${workspace}/${request}`);
      if (!deleted) runQueue.add(run.metadata?.name as string);
      // A finished (or deleted) run frees a concurrency slot for requests waiting for one.
      if (deleted || runState(run).done) on.onRunFinished();
    },
    transform: summarizeRun,
  });
  const services = new Reflector<InternalService>({
    kubeConfig,
    type: internalServices,
    namespace: ns,
    log,
    onChange: on.onPolicyChange,
  });
  const configs = new Reflector<InternalServicesConfig>({
    kubeConfig,
    type: internalServicesConfigs,
    namespace: ns,
    log,
    onChange: on.onPolicyChange,
  });
  const access: PrivateAccess = {
    namespace: ns,
    pipelineRuns: new ResourceClient<V1PipelineRun>(kubeConfig, pipelineRuns),
    taskRuns: new ResourceClient<V1TaskRun>(kubeConfig, taskRuns),
    getPipelineRun: (name) => runs.get(`${ns}/${name}`),
    slots,
    getService: (name) => services.get(`${ns}/${name}`),
    getConfig: () => configs.get(`${ns}/${configName}`),
  };
  return { access, reflectors: [runs, services, configs] as unknown as Reflector<never>[] };
}
