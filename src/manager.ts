// Wires the data path: reflectors (watch -> cache) enqueue keys; workers reconcile them; reconcilers
// write through the API. One process serves several remote workspaces and one private cluster.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { EventRecorder } from "./api/events.ts";
import {
  internalRequests,
  internalServices,
  internalServicesConfigs,
  pipelineRuns,
  ResourceClient,
  taskRuns,
} from "./api/resources.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "./generated/crds.ts";
import type { V1PipelineRun, V1TaskRun } from "./generated/tekton.ts";
import { isTerminal } from "./requests/conditions.ts";
import { formatKey, labelPrefix, managedSelector, parseKey } from "./requests/naming.ts";
import { type PrivateAccess, RequestReconciler, type WorkspaceAccess } from "./requests/reconciler.ts";
import { runController } from "./runtime/controller.ts";
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
  privateKubeConfig: KubeConfig;
  /** Where services, the config and internal PipelineRuns live in the private cluster. */
  controllerNamespace: string;
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
  const queue = new WorkQueue({ observer: metrics.queueObserver("internalrequests") });
  const reflectors: Reflector<never>[] = [];
  const track = <T>(r: Reflector<T & { metadata?: object }>) => {
    reflectors.push(r as unknown as Reflector<never>);
    return r;
  };

  // Remote workspaces: InternalRequests, one reflector per watched namespace.
  const workspaceAccess = new Map<string, WorkspaceAccess>();
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
          onChange: (key) => queue.add(`${ws.name}/${key}`),
        }),
      ),
    );
    requestCaches.push({ workspace: ws.name, reflectors: caches });
    workspaceAccess.set(ws.name, {
      name: ws.name,
      requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
      getRequest: (key) => {
        for (const c of caches) {
          const hit = c.get(key);
          if (hit) return hit;
        }
        return undefined;
      },
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

  // Private cluster: our PipelineRuns (mapped back to their request by annotations), services, config.
  const ns = opts.controllerNamespace;
  const runs = track(
    new Reflector<V1PipelineRun>({
      kubeConfig: opts.privateKubeConfig,
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
    }),
  );
  const services = track(
    new Reflector<InternalService>({
      kubeConfig: opts.privateKubeConfig,
      type: internalServices,
      namespace: ns,
      log,
      onChange: enqueueUnfinished,
    }),
  );
  const configs = track(
    new Reflector<InternalServicesConfig>({
      kubeConfig: opts.privateKubeConfig,
      type: internalServicesConfigs,
      namespace: ns,
      log,
      onChange: enqueueUnfinished,
    }),
  );

  const privateAccess: PrivateAccess = {
    namespace: ns,
    pipelineRuns: new ResourceClient<V1PipelineRun>(opts.privateKubeConfig, pipelineRuns),
    taskRuns: new ResourceClient<V1TaskRun>(opts.privateKubeConfig, taskRuns),
    getPipelineRun: (name) => runs.get(`${ns}/${name}`),
    listPipelineRuns: () => runs.list(),
    getService: (name) => services.get(`${ns}/${name}`),
    getConfig: () => configs.get(`${ns}/${configName}`),
  };
  const reconciler = new RequestReconciler({
    workspaces: workspaceAccess,
    private: privateAccess,
    metrics,
    afterCreate: opts.afterCreate,
  });

  const abort = new AbortController();
  let ready = false;
  let workersDone: Promise<void> = Promise.resolve();
  const readyPromise = (async () => {
    // Private caches first: reconciling a request needs its service and config.
    await Promise.all([runs.start(), services.start(), configs.start()]);
    await Promise.all(requestCaches.flatMap((c) => c.reflectors.map((r) => r.start())));
    workersDone = runController({
      name: "internalrequest",
      queue,
      reconcile: reconciler.reconcile,
      workers: opts.workers ?? 4,
      log,
      metrics,
      signal: abort.signal,
      keyFields: (key) => ({ ...parseKey(key) }),
    });
    ready = true;
    log.info({ workspaces: opts.workspaces.map((w) => w.name) }, "controller ready");
  })();

  return {
    metrics,
    ready: readyPromise,
    isReady: () => ready,
    stop: async () => {
      for (const r of reflectors) r.stop();
      abort.abort();
      queue.shutDown();
      await workersDone;
    },
  };
}
