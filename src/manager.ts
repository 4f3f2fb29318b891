// Wires the data path: reflectors (watch -> cache) enqueue keys; workers reconcile them; reconcilers
// write through the API. One process serves several remote workspaces and one private cluster.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { EventRecorder } from "./api/events.ts";
import {
  customRuns,
  internalRequests,
  internalServices,
  internalServicesConfigs,
  pipelineRuns,
  ResourceClient,
  taskRuns,
} from "./api/resources.ts";
import { CustomRunReconciler, type CustomTaskWorkspace } from "./customtask/reconciler.ts";
import { customRunLabel } from "./customtask/request.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "./generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun, V1TaskRun } from "./generated/tekton.ts";
import { isTerminal } from "./requests/conditions.ts";
import { formatKey, labelPrefix, managedSelector, parseKey, serviceLabel } from "./requests/naming.ts";
import { runState } from "./requests/pipelinerun.ts";
import { type PrivateAccess, RequestReconciler, type WorkspaceAccess } from "./requests/reconciler.ts";
import { type Reconcile, runController } from "./runtime/controller.ts";
import { Metrics } from "./runtime/metrics.ts";
import { WorkQueue } from "./runtime/queue.ts";
import { Reflector } from "./runtime/reflector.ts";

export interface WorkspaceConfig {
  /** Names the workspace in keys, labels and allow-lists ("workspace/namespace"); no "/". */
  name: string;
  kubeConfig: KubeConfig;
  /** Namespaces to watch; empty or undefined: all namespaces (needs cluster-wide list/watch). */
  namespaces?: string[];
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
}

export interface Manager {
  metrics: Metrics;
  /** Resolves when every cache has synced and workers run. */
  ready: Promise<void>;
  isReady(): boolean;
  stop(): Promise<void>;
}

const configName = "config";

export function startManager(opts: ManagerOptions): Manager {
  const metrics = opts.metrics ?? new Metrics();
  const log = opts.log;
  const serveRequests = opts.serveRequests ?? true;
  const serveCustomTasks = opts.serveCustomTasks ?? true;
  const queue = new WorkQueue({ observer: metrics.queueObserver("internalrequests") });
  const customRunQueue = new WorkQueue({ observer: metrics.queueObserver("customruns") });
  const reflectors: Reflector<never>[] = [];
  const track = <T>(r: Reflector<T & { metadata?: object }>) => {
    reflectors.push(r as unknown as Reflector<never>);
    return r;
  };

  // Remote workspaces: InternalRequests, one reflector per watched namespace.
  const workspaceAccess = new Map<string, WorkspaceAccess>();
  const customTaskAccess = new Map<string, CustomTaskWorkspace>();
  const requestCaches: { workspace: string; reflectors: Reflector<InternalRequest>[] }[] = [];
  for (const ws of opts.workspaces) {
    const namespaces = ws.namespaces?.length ? ws.namespaces : [undefined];
    const caches = namespaces.map((namespace) =>
      track(
        new Reflector<InternalRequest>({
          kubeConfig: ws.kubeConfig,
          type: internalRequests,
          namespace,
          log,
          onChange: (key) => {
            if (serveRequests) queue.add(`${ws.name}/${key}`);
            if (serveCustomTasks) {
              // A request created for a CustomRun wakes that CustomRun.
              const owner = findIn(caches, key)?.metadata.labels?.[customRunLabel];
              if (owner) customRunQueue.add(`${ws.name}/${key.split("/")[0]}/${owner}`);
            }
          },
        }),
      ),
    );
    requestCaches.push({ workspace: ws.name, reflectors: caches });
    if (serveCustomTasks) {
      const runCaches = namespaces.map((namespace) =>
        track(
          new Reflector<V1beta1CustomRun>({
            kubeConfig: ws.kubeConfig,
            type: customRuns,
            namespace,
            log,
            onChange: (key) => customRunQueue.add(`${ws.name}/${key}`),
          }),
        ),
      );
      customTaskAccess.set(ws.name, {
        name: ws.name,
        customRuns: new ResourceClient<V1beta1CustomRun>(ws.kubeConfig, customRuns),
        requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
        getCustomRun: (key) => findIn(runCaches, key),
        getRequest: (key) => findIn(caches, key),
      });
    }
    workspaceAccess.set(ws.name, {
      name: ws.name,
      requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
      getRequest: (key) => findIn(caches, key),
      events: new EventRecorder(ws.kubeConfig, log),
    });
  }

  // When a service or the config changes, every request still waiting may decide differently.
  const enqueueUnfinished = () => {
    for (const { workspace, reflectors: caches } of requestCaches) {
      for (const c of caches) {
        for (const r of c.list()) {
          if (!isTerminal(r.status))
            queue.add(
              formatKey({
                workspace,
                namespace: r.metadata.namespace as string,
                name: r.metadata.name as string,
              }),
            );
        }
      }
    }
  };

  const abort = new AbortController();
  const controllers: { name: string; queue: WorkQueue; reconcile: Reconcile }[] = [];
  let privateReflectors: Reflector<never>[] = [];
  if (serveRequests) {
    if (!opts.privateKubeConfig || !opts.controllerNamespace) {
      throw new Error(
        "serving InternalRequests needs the private cluster's kubeconfig and the controller namespace",
      );
    }
    const side = privateSide(opts.privateKubeConfig, opts.controllerNamespace, log, queue, enqueueUnfinished);
    privateReflectors = side.reflectors;
    metrics.activeRunsSource = () => activeRunsByService(side.access.listPipelineRuns());
    const reconciler = new RequestReconciler({
      workspaces: workspaceAccess,
      private: side.access,
      metrics,
      afterCreate: opts.afterCreate,
    });
    controllers.push({ name: "internalrequest", queue, reconcile: reconciler.reconcile });
  }
  if (serveCustomTasks) {
    controllers.push({
      name: "customrun",
      queue: customRunQueue,
      reconcile: new CustomRunReconciler(customTaskAccess).reconcile,
    });
  }

  let ready = false;
  let workersDone: Promise<unknown> = Promise.resolve();
  const readyPromise = (async () => {
    // Private caches first: reconciling a request needs its service and config.
    await Promise.all(privateReflectors.map((r) => r.start()));
    await Promise.all(reflectors.map((r) => r.start()));
    workersDone = Promise.all(
      controllers.map((c) =>
        runController({
          ...c,
          workers: opts.workers ?? 4,
          log,
          metrics,
          signal: abort.signal,
          keyFields: (key) => ({ ...parseKey(key) }),
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
      for (const r of [...reflectors, ...privateReflectors]) r.stop();
      abort.abort();
      queue.shutDown();
      customRunQueue.shutDown();
      await workersDone;
    },
  };
}

function activeRunsByService(runs: V1PipelineRun[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const run of runs) {
    if (runState(run).done) continue;
    const service = run.metadata?.labels?.[serviceLabel] ?? "(pipeline)";
    counts.set(service, (counts.get(service) ?? 0) + 1);
  }
  return counts;
}

function findIn<T>(caches: Reflector<T & { metadata?: object }>[], key: string): T | undefined {
  for (const c of caches) {
    const hit = c.get(key);
    if (hit) return hit;
  }
  return undefined;
}

/** Private cluster: our PipelineRuns (mapped back to their request by annotations), services, config. */
function privateSide(
  kubeConfig: KubeConfig,
  ns: string,
  log: Logger,
  queue: WorkQueue,
  enqueueUnfinished: () => void,
): { access: PrivateAccess; reflectors: Reflector<never>[] } {
  const runs: Reflector<V1PipelineRun> = new Reflector<V1PipelineRun>({
    kubeConfig,
    type: pipelineRuns,
    namespace: ns,
    labelSelector: managedSelector,
    log,
    onChange: (key) => {
      const run = runs.get(key);
      const workspace = run?.metadata?.annotations?.[`${labelPrefix}/workspace`];
      const request = run?.metadata?.annotations?.[`${labelPrefix}/request`];
      if (workspace && request) queue.add(`${workspace}/${request}`);
      // A finished run frees a concurrency slot for queued requests of its service.
      if (!run || run.status?.completionTime) enqueueUnfinished();
    },
  });
  const services = new Reflector<InternalService>({
    kubeConfig,
    type: internalServices,
    namespace: ns,
    log,
    onChange: enqueueUnfinished,
  });
  const configs = new Reflector<InternalServicesConfig>({
    kubeConfig,
    type: internalServicesConfigs,
    namespace: ns,
    log,
    onChange: enqueueUnfinished,
  });
  const access: PrivateAccess = {
    namespace: ns,
    pipelineRuns: new ResourceClient<V1PipelineRun>(kubeConfig, pipelineRuns),
    taskRuns: new ResourceClient<V1TaskRun>(kubeConfig, taskRuns),
    getPipelineRun: (name) => runs.get(`${ns}/${name}`),
    listPipelineRuns: () => runs.list(),
    getService: (name) => services.get(`${ns}/${name}`),
    getConfig: () => configs.get(`${ns}/${configName}`),
  };
  return { access, reflectors: [runs, services, configs] as unknown as Reflector<never>[] };
}
