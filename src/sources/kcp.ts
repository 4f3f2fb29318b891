// kcp workspaces through one APIExport's virtual workspace: one kubeconfig (for the provider workspace)
// and the export's name. The export's APIExportEndpointSlice lists a URL per shard, followed as shards
// and first bindings come and go; per URL, one cache of the InternalRequests of every workspace bound
// to the export (a cross-cluster list/watch of <url>/clusters/*), keyed by logical cluster. Writes go
// to <url>/clusters/<logical cluster>. A request's workspace is its logical cluster's path
// (root:org:team), read once from the cluster's LogicalCluster through the export's permission claim,
// so policy, keys, logs and the private run name it as people know it. Until its path is known a
// workspace's requests are held back: they are never reconciled under another name.
import { CustomObjectsApi, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { apiStatus, describeError } from "../api/errors.ts";
import { EventRecorder } from "../api/events.ts";
import { internalRequests, ResourceClient, type ResourceType } from "../api/resources.ts";
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
}

interface Cluster {
  id: string;
  shard: Shard;
  path?: string;
  resolving?: boolean;
  failures: number;
  access?: WorkspaceAccess;
}

const clusterOf = (obj: KubernetesObject) => obj.metadata?.annotations?.[clusterAnnotation] ?? "";

export function openKcp(config: KcpConfig, opts: { log: Logger }): KcpSource {
  const log = opts.log.child({ apiExport: config.export });
  const handlers: Handler<InternalRequest>[] = [];
  const shards = new Map<string, Shard>();
  const clusters = new Map<string, Cluster>();
  const byPath = new Map<string, Cluster>();
  let stopped = false;

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

  /** Learns a logical cluster's path (once; retried with backoff), then hands on its requests. */
  const resolve = async (cluster: Cluster) => {
    if (cluster.path || cluster.resolving || stopped) return;
    cluster.resolving = true;
    try {
      const kc = withServer(config.kubeConfig, `${cluster.shard.url}/clusters/${cluster.id}`);
      const lc = (await kc.makeApiClient(CustomObjectsApi).getClusterCustomObject({
        group: "core.kcp.io",
        version: "v1alpha1",
        plural: "logicalclusters",
        name: "cluster",
      })) as KubernetesObject;
      const path = lc.metadata?.annotations?.[pathAnnotation] ?? "";
      if (!pathPattern.test(path))
        throw new Error(`its LogicalCluster names no valid path ("${path.slice(0, 80)}")`);
      cluster.path = path;
      // A workspace deleted and made again under the same path is a new logical cluster: the newest wins.
      byPath.set(path, cluster);
      log.info({ logicalCluster: cluster.id, workspace: path }, "kcp workspace served");
      for (const r of cluster.shard.requests.list()) if (clusterOf(r) === cluster.id) emit(r, false);
    } catch (err) {
      cluster.failures++;
      const forbidden = apiStatus(err)?.code === 403;
      if (cluster.failures === 1)
        log.warn(
          { logicalCluster: cluster.id, err: describeError(err) },
          forbidden
            ? "cannot read this workspace's path: its APIBinding must accept the export's logicalclusters permission claim; its requests wait until it does"
            : "cannot read this workspace's path yet; its requests wait",
        );
      const delay = Math.min(60_000, 500 * 2 ** Math.min(cluster.failures, 7));
      setTimeout(() => void resolve(cluster), delay).unref();
    } finally {
      cluster.resolving = false;
    }
  };

  const openShard = (url: string): Shard => {
    const requests = new Reflector<InternalRequest>({
      kubeConfig: withServer(config.kubeConfig, `${url}/clusters/*`),
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
      log,
    });
    const shard = { url, requests };
    requests.subscribe((_key, request, deleted) => {
      const id = clusterOf(request);
      let cluster = clusters.get(id);
      if (!cluster) {
        cluster = { id, shard, failures: 0 };
        clusters.set(id, cluster);
      }
      if (cluster.path) emit(request, deleted);
      else void resolve(cluster);
    });
    return shard;
  };

  /** Follows the endpoint slice: a shard per URL it lists. */
  const follow = async () => {
    const slice = slices.get(`/${config.export}`);
    const urls = new Set(
      (slice?.status?.endpoints ?? [])
        .map((e) => e.url)
        .filter((u): u is string => typeof u === "string" && /^https:\/\//.test(u)),
    );
    const started: Promise<void>[] = [];
    for (const url of urls) {
      if (shards.has(url)) continue;
      const shard = openShard(url);
      shards.set(url, shard);
      log.info({ url }, "kcp virtual workspace endpoint followed");
      started.push(shard.requests.start());
    }
    for (const [url, shard] of shards) {
      if (urls.has(url)) continue;
      shard.requests.stop();
      shards.delete(url);
      for (const [id, cluster] of clusters) {
        if (cluster.shard !== shard) continue;
        clusters.delete(id);
        if (cluster.path && byPath.get(cluster.path) === cluster) byPath.delete(cluster.path);
      }
      log.info({ url }, "kcp virtual workspace endpoint gone");
    }
    await Promise.all(started);
  };

  const accessOf = (cluster: Cluster, path: string): WorkspaceAccess => {
    const kc = withServer(config.kubeConfig, `${cluster.shard.url}/clusters/${cluster.id}`);
    const { requests } = cluster.shard;
    return {
      name: path,
      namedOnly: true,
      requests: new ResourceClient<InternalRequest>(kc, internalRequests),
      getRequest: (key) => requests.get(`${cluster.id}/${key}`),
      // A write's answer may lack the annotation the cache keys on.
      observe: (request) =>
        requests.observe({
          ...request,
          metadata: {
            ...request.metadata,
            annotations: { ...request.metadata.annotations, [clusterAnnotation]: cluster.id },
          },
        }),
      events: new EventRecorder(kc, log),
    };
  };

  return {
    requests: { subscribe: (handler) => handlers.push(handler) },
    workspaceOf: (request) => clusters.get(clusterOf(request))?.path ?? "",
    workspace(name) {
      const cluster = byPath.get(name);
      if (!cluster) return undefined;
      cluster.access ??= accessOf(cluster, name);
      return cluster.access;
    },
    list: () =>
      [...shards.values()].flatMap((s) => s.requests.list()).filter((r) => clusters.get(clusterOf(r))?.path),
    async start() {
      slices.subscribe(() => void follow().catch(() => undefined)); // the reflectors retry themselves
      await slices.start();
      await follow();
    },
    async stop() {
      stopped = true;
      slices.stop();
      for (const shard of shards.values()) shard.requests.stop();
      await Promise.all(
        [...clusters.values()].flatMap((c) => (c.access ? [(c.access.events as EventRecorder).flush()] : [])),
      );
    },
  };
}
