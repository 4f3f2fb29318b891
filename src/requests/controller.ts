// The InternalRequest controllers and what wakes them.
//
// internalrequest (key: workspace/namespace/name) reconciles a request:
//   for      its InternalRequest, in every workspace of every request source;
//   owns     the internal PipelineRun it created (mapped back by the run's annotations); a run that
//            finishes or goes also wakes the requests waiting for a concurrency slot or for its
//            concurrency key;
//   watches  InternalServices and the InternalServicesConfig: requests not started yet may now
//            decide otherwise (running ones follow their own run).
// pipelinerun (key: run name) sweeps the internal PipelineRuns whose request is gone:
//   for      every internal PipelineRun;
//   watches  InternalRequest deletions: the deleted request's run is cancelled and deleted.
import { internalRequests, pipelineRuns, ResourceClient, taskRuns } from "../api/resources.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { V1PipelineRun, V1TaskRun } from "../generated/tekton.ts";
import { type ControllerSpec, type KeyCodec, watch } from "../runtime/controller.ts";
import type { Metrics } from "../runtime/metrics.ts";
import type { Source } from "../runtime/source.ts";
import { configName, type PrivateCluster } from "../sources/private.ts";
import type { Workspace } from "../sources/workspace.ts";
import { isTerminal } from "./conditions.ts";
import {
  concurrencyKeyLabel,
  keyOf,
  pipelineRunName,
  type RequestKey,
  requestAnnotation,
  requestKeys,
  workspaceAnnotation,
} from "./naming.ts";
import { runState } from "./pipelinerun.ts";
import { RequestReconciler, type WorkspaceAccess } from "./reconciler.ts";
import { liveReferrer } from "./retention.ts";
import { RunSlots, slotGroup } from "./slots.ts";

/**
 * Where InternalRequests come from: one workspace (a kubeconfig context, see fromWorkspace) or many
 * behind one cache (kcp's APIExport virtual workspace), whose workspaces may come and go.
 */
export interface RequestSource {
  requests: Source<InternalRequest>;
  /** The workspace a request of `requests` is in. */
  workspaceOf(request: InternalRequest): string;
  /** A workspace it serves now, by name. */
  workspace(name: string): WorkspaceAccess | undefined;
  /** Every cached request. */
  list(): InternalRequest[];
}

export interface RequestControllerOptions {
  sources: RequestSource[];
  private: PrivateCluster;
  metrics: Metrics;
  /** See RequestReconcilerDeps.goWorkspace. */
  goWorkspace?: string;
  /** Test-only fault injection, see RequestReconcilerDeps.afterCreate. */
  afterCreate?: () => void;
  /** See RequestReconcilerDeps.queuedRecheckMs. */
  queuedRecheckMs?: number;
}

const runKeys: KeyCodec<string> = {
  format: (k) => k,
  parse: (t) => t,
  fields: (pipelineRun) => ({ pipelineRun }),
};

export function requestControllers(opts: RequestControllerOptions): ControllerSpec<never>[] {
  const { sources, metrics } = opts;
  const cluster = opts.private;
  const slots = new RunSlots();
  // Slots follow the private cache before anything is woken by the same event.
  cluster.pipelineRuns.subscribe((_key, run, deleted) => slots.observe(run, deleted));
  metrics.activeRunsSource = () => slots.byGroup();
  const reconciler = new RequestReconciler({
    workspaces: { get: (name) => sources.map((s) => s.workspace(name)).find((ws) => ws !== undefined) },
    private: {
      namespace: cluster.namespace,
      pipelineRuns: new ResourceClient<V1PipelineRun>(cluster.kubeConfig, pipelineRuns),
      taskRuns: new ResourceClient<V1TaskRun>(cluster.kubeConfig, taskRuns),
      findPipelineRun: (name) => {
        if (slots.isDeleted(name)) return undefined;
        for (const { namespace } of cluster.pipelineRuns.served()) {
          const run = cluster.pipelineRuns.get(`${namespace}/${name}`);
          if (run) return run;
        }
        return undefined;
      },
      watchesRunsIn: (namespace) =>
        cluster.pipelineRuns.served().some((s) => s.namespace === namespace && s.synced),
      getService: (name) => cluster.services.get(`${cluster.namespace}/${name}`),
      getConfig: () => cluster.configs.get(`${cluster.namespace}/${configName}`),
      slots,
    },
    metrics,
    goWorkspace: opts.goWorkspace,
    afterCreate: opts.afterCreate,
    queuedRecheckMs: opts.queuedRecheckMs,
  });

  /** The request a run was made for (its annotations; names can exceed label values). */
  const owner = (run: V1PipelineRun): RequestKey[] => {
    const workspace = run.metadata?.annotations?.[workspaceAnnotation];
    const [namespace, name] = (run.metadata?.annotations?.[requestAnnotation] ?? "").split("/");
    return workspace && namespace && name ? [{ workspace, namespace, name }] : [];
  };
  /** Requests not started yet: a policy change may decide them differently. */
  const unstarted = (): RequestKey[] =>
    sources.flatMap((source) =>
      source
        .list()
        .filter((r) => !isTerminal(r.status) && !r.status?.pipelineRun)
        .map((r) => keyOf(source.workspaceOf(r), r)),
    );

  const requests: ControllerSpec<RequestKey> = {
    name: "internalrequest",
    key: requestKeys,
    watches: [
      ...sources.map((source) =>
        watch(source.requests, (_key, request) => [keyOf(source.workspaceOf(request), request)]),
      ),
      watch(cluster.pipelineRuns, (_key, run, deleted) => [
        ...owner(run),
        // A finished (or deleted) run frees a concurrency slot for requests waiting for one, and its
        // concurrency key for requests waiting for it.
        ...(deleted || runState(run).done ? reconciler.nextWaitingForSlot(slotGroup(run)) : []),
        ...((deleted || runState(run).done) && run.metadata?.labels?.[concurrencyKeyLabel]
          ? reconciler.nextWaitingForKey(run.metadata.labels[concurrencyKeyLabel])
          : []),
      ]),
      watch(cluster.services, unstarted),
      watch(cluster.configs, unstarted),
    ],
    reconcile: reconciler.reconcile,
  };
  const sweep: ControllerSpec<string> = {
    name: "pipelinerun",
    key: runKeys,
    watches: [
      // Every run is looked at once it is cached (at start: every run there is) and when it changes.
      watch(cluster.pipelineRuns, (_key, run, deleted) => (deleted ? [] : [run.metadata?.name as string])),
      ...sources.map((source) =>
        watch(source.requests, (_key, request, deleted) => {
          const { name, uid } = request.metadata as { name: string; uid: string };
          return deleted ? [pipelineRunName(source.workspaceOf(request), name, uid)] : [];
        }),
      ),
    ],
    reconcile: reconciler.reconcileRun,
  };
  return [requests, sweep] as ControllerSpec<never>[];
}

/** A kubeconfig context's workspace as a request source. */
export function fromWorkspace(ws: Workspace): RequestSource {
  const access: WorkspaceAccess = {
    name: ws.name,
    requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
    getRequest: (key) => ws.requests.get(key),
    observe: (request) => ws.requests.observe(request),
    referrer: (request) => liveReferrer(ws.kubeConfig, request),
    events: ws.events,
  };
  return {
    requests: ws.requests,
    workspaceOf: () => ws.name,
    workspace: (name) => (name === ws.name ? access : undefined),
    list: () => ws.requests.list(),
  };
}
