// kcp workspaces through one APIExport's virtual workspace: one kubeconfig (for the provider workspace)
// and the export's name. The export's APIExportEndpointSlice lists a URL per shard, followed as shards
// and first bindings come and go; per URL, two caches across every workspace bound to the export
// (cross-cluster list/watches of <url>/clusters/*): the InternalRequests, keyed by logical cluster, and
// the workspaces' LogicalClusters, which the export's permission claim makes readable and which map
// each logical cluster to its path (root:org:team). Writes go to <url>/clusters/<logical cluster>.
// A request's workspace is its path, so policy, keys, logs and the private run name it as people know
// it; the requests of a workspace whose path is not known (its binding rejects the claim) wait, and
// are never reconciled under another name.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { EventRecorder } from "../api/events.ts";
import { internalRequests, ResourceClient, type ResourceType } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { withServer } from "../config/kubeconfig.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { RequestSource } from "../requests/controller.ts";
import type { WorkspaceAccess } from "../requests/reconciler.ts";
import { summarizeRequest } from "../requests/summary.ts";
import { Reflector } from "../runtime/reflector.ts";
import type { Handler } from "../runtime/source.ts";

/** Set by kcp on every object read through a virtual workspace: its logical cluster's id. */
export const clusterAnnotation = "kcp.io/cluster";
/** On a LogicalCluster: the workspace's path. */
const pathAnnotation = "kcp.io/path";

const endpointSlices: ResourceType = {
  group: "apis.kcp.io",
  version: "v1alpha1",
  plural: "apiexportendpointslices",
  kind: "APIExportEndpointSlice",
};

const logicalClusters: ResourceType = {
  group: "core.kcp.io",
  version: "v1alpha1",
  plural: "logicalclusters",
  kind: "LogicalCluster",
};

interface EndpointSlice extends KubernetesObject {
  status?: { endpoints?: { url?: string }[] };
}

/** A kcp path: workspace names (lowercase DNS labels) joined by ":". */
const pathPattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Logical cluster ids are short base36 strings; anything else is not kcp's. */
const clusterPattern = /^[a-z0-9]{1,63}$/;

export interface KcpConfig {
  /** The provider workspace (where the APIExport and its endpoint slice live). */
  kubeConfig: KubeConfig;
  /** The APIExport's name (its endpoint slice has the same name). */
  export: string;
}

export interface KcpSource extends RequestSource {
  /** Resolves once the endpoint slice and every shard it lists now are read. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Shard {
  url: string;
  requests: Reflector<InternalRequest>;
  /** One per bound workspace that accepts the claim, kept as its id and path only. */
  workspaces: Reflector<KubernetesObject>;
  /** Both caches have their first list. */
  synced?: Promise<void>;
}

interface BoundWorkspace {
  id: string;
  path: string;
  shard: Shard;
  access?: WorkspaceAccess;
}

/** How long start waits for the shards' first lists before serving those that have them. */
const shardStartMs = 30_000;

const clusterOf = (obj: KubernetesObject) => obj.metadata?.annotations?.[clusterAnnotation] ?? "";

export function openKcp(config: KcpConfig, opts: { log: Logger }): KcpSource {
  const log = opts.log.child({ apiExport: config.export });
  const handlers: Handler<InternalRequest>[] = [];
  const shards = new Map<string, Shard>();
  /** By logical cluster id, and by path. */
  const byId = new Map<string, BoundWorkspace>();
  const byPath = new Map<string, BoundWorkspace>();
  /** Logical clusters with requests but no known path, each told once. */
  const unnamed = new Set<string>();

  const slices = new Reflector<EndpointSlice>({
    kubeConfig: config.kubeConfig,
    type: endpointSlices,
    fieldSelector: `metadata.name=${config.export}`,
    log,
  });

  const emit = (request: InternalRequest, deleted: boolean) => {
    for (const handler of handlers)
      handler(
        `${clusterOf(request)}/${request.metadata.namespace}/${request.metadata.name}`,
        request,
        deleted,
      );
  };

  const openShard = (url: string): Shard => {
    const kubeConfig = withServer(config.kubeConfig, `${url}/clusters/*`);
    // With several shards, each one's list/watch failures (a shard down, or refusing the credentials
    // its peers accept) name it.
    const shardLog = log.child({ url });
    const requests = new Reflector<InternalRequest>({
      kubeConfig,
      type: internalRequests,
      key: (r) => `${clusterOf(r)}/${r.metadata?.namespace}/${r.metadata?.name}`,
      // The summary keeps no annotations but the logical cluster's (every later step keys on it).
      transform: (r) => {
        const id = clusterOf(r);
        if (!clusterPattern.test(id)) return undefined;
        const kept = summarizeRequest(r);
        kept.metadata.annotations = { [clusterAnnotation]: id };
        return kept;
      },
      log: shardLog,
    });
    const workspaces = new Reflector<KubernetesObject>({
      kubeConfig,
      type: logicalClusters,
      key: clusterOf,
      transform: (lc) => {
        const id = clusterOf(lc);
        const path = lc.metadata?.annotations?.[pathAnnotation] ?? "";
        if (!clusterPattern.test(id) || !pathPattern.test(path)) return undefined;
        return {
          metadata: {
            name: lc.metadata?.name,
            annotations: { [clusterAnnotation]: id, [pathAnnotation]: path },
          },
        };
      },
      log: shardLog,
    });
    const shard = { url, requests, workspaces };
    requests.subscribe((_key, request, deleted) => {
      const id = clusterOf(request);
      if (byId.has(id)) emit(request, deleted);
      else if (!unnamed.has(id)) {
        unnamed.add(id);
        shardLog.warn(
          { logicalCluster: id },
          "a workspace's requests wait: its path is unknown (its APIBinding must accept the export's logicalclusters permission claim)",
        );
      }
    });
    workspaces.subscribe((_key, lc, deleted) => {
      const id = clusterOf(lc);
      const path = lc.metadata?.annotations?.[pathAnnotation] as string;
      if (deleted) {
        // Unbound (or the claim withdrawn): its requests are out of reach, and leave the cache with it.
        if (byPath.get(path)?.id === id) byPath.delete(path);
        byId.delete(id);
        return;
      }
      if (byId.has(id)) return; // a path never changes
      // A workspace deleted and made again under the same path is a new logical cluster: the newest wins.
      const ws = { id, path, shard };
      byId.set(id, ws);
      byPath.set(path, ws);
      unnamed.delete(id);
      log.info({ logicalCluster: id, workspace: path }, "kcp workspace served");
      for (const r of requests.list()) if (clusterOf(r) === id) emit(r, false);
    });
    return shard;
  };

  /** Follows the endpoint slice: a shard per URL it lists. */
  const follow = () => {
    const slice = slices.get(`/${config.export}`);
    const urls = new Set(
      (slice?.status?.endpoints ?? [])
        .map((e) => e.url)
        .filter((u): u is string => typeof u === "string" && /^https:\/\//.test(u)),
    );
    for (const url of urls) {
      if (shards.has(url)) continue;
      const shard = openShard(url);
      shards.set(url, shard);
      log.info({ url }, "kcp virtual workspace endpoint followed");
      // The paths first, so that the listed requests are handed on at once.
      shard.synced = shard.workspaces.start().then(() => shard.requests.start());
    }
    for (const [url, shard] of shards) {
      if (urls.has(url)) continue;
      shard.requests.stop();
      shard.workspaces.stop();
      shards.delete(url);
      for (const [id, ws] of byId) {
        if (ws.shard !== shard) continue;
        byId.delete(id);
        if (byPath.get(ws.path) === ws) byPath.delete(ws.path);
      }
      log.info({ url }, "kcp virtual workspace endpoint gone");
    }
  };

  const recorders = new Set<EventRecorder>();
  const accessOf = (ws: BoundWorkspace): WorkspaceAccess => {
    const kc = withServer(config.kubeConfig, `${ws.shard.url}/clusters/${ws.id}`);
    const { requests } = ws.shard;
    const events = new EventRecorder(kc, log);
    recorders.add(events);
    return {
      name: ws.path,
      namedOnly: true,
      requests: new ResourceClient<InternalRequest>(kc, internalRequests),
      getRequest: (key) => requests.get(`${ws.id}/${key}`),
      // A write's answer may lack the annotation the cache keys on.
      observe: (request) =>
        requests.observe({
          ...request,
          metadata: {
            ...request.metadata,
            annotations: { ...request.metadata.annotations, [clusterAnnotation]: ws.id },
          },
        }),
      // No Tekton runs on kcp: nothing there can still be using a finished request.
      referrer: async () => undefined,
      events,
    };
  };

  return {
    requests: { subscribe: (handler) => handlers.push(handler) },
    workspaceOf: (request) => byId.get(clusterOf(request))?.path ?? "",
    workspace(name) {
      const ws = byPath.get(name);
      if (!ws) return undefined;
      ws.access ??= accessOf(ws);
      return ws.access;
    },
    list: () => [...shards.values()].flatMap((s) => s.requests.list()).filter((r) => byId.has(clusterOf(r))),
    async start() {
      slices.subscribe(() => follow()); // the reflectors retry themselves
      await slices.start();
      follow();
      // Each shard's workspaces are served once its caches are listed; a shard that cannot be listed
      // (down, or refusing the credentials) must not hold the others back: its workspaces are
      // unknown until then, and nothing of theirs is acted on (the run sweep leaves runs of unknown
      // workspaces alone).
      const synced = Promise.all([...shards.values()].map((s) => s.synced));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), shardStartMs);
      });
      if ((await Promise.race([synced, late])) === "late")
        log.warn(
          {
            shards: [...shards.values()]
              .filter((s) => !s.workspaces.hasSynced || !s.requests.hasSynced)
              .map((s) => s.url),
          },
          `kcp shards not listed within ${shardStartMs / 1000} s; serving the others, these once they are`,
        );
      clearTimeout(timer);
    },
    async stop() {
      slices.stop();
      for (const shard of shards.values()) {
        shard.requests.stop();
        shard.workspaces.stop();
      }
      await Promise.all([...recorders].map((r) => r.flush()));
    },
  };
}
