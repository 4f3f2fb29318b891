// A remote workspace: one kubeconfig context and the namespaces it serves (a fixed list, all of them,
// or those matching a label selector, followed as they come and go). It holds the caches of what
// tenants write there (InternalRequests, and CustomRuns for the custom-task bridge), kept as bounded
// summaries, and the Event recorder for them. Controllers subscribe to the caches.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { EventRecorder } from "../api/events.ts";
import { customRuns, internalRequests, namespaces } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { summarizeCustomRun } from "../customtask/summary.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { V1beta1CustomRun } from "../generated/tekton.ts";
import { summarizeRequest } from "../requests/summary.ts";
import { NamespacedCache } from "../runtime/namespaced-cache.ts";
import { Reflector } from "../runtime/reflector.ts";

export interface WorkspaceConfig {
  /** Names the workspace in keys, labels and allow-lists ("workspace/namespace"); no "/". */
  name: string;
  kubeConfig: KubeConfig;
  /** Namespaces to watch. Neither this nor namespaceSelector: all namespaces (cluster-wide list/watch). */
  namespaces?: string[];
  /** Serve the namespaces with these labels, following them as they come and go (needs list/watch namespaces). */
  namespaceSelector?: string;
}

export interface Workspace {
  name: string;
  kubeConfig: KubeConfig;
  requests: NamespacedCache<InternalRequest>;
  /** Only when the workspace serves the custom-task bridge. */
  customRuns?: NamespacedCache<V1beta1CustomRun>;
  events: EventRecorder;
  /** Starts the caches; resolves when the namespaces served at start are synced. */
  start(): Promise<void>;
  /** Stops the caches and sends the Events still queued. */
  stop(): Promise<void>;
}

export function openWorkspace(
  config: WorkspaceConfig,
  opts: { customRuns: boolean; log: Logger },
): Workspace {
  const { kubeConfig } = config;
  const log = opts.log;
  const requests = new NamespacedCache<InternalRequest>(kubeConfig, internalRequests, log, {
    transform: summarizeRequest,
  });
  const runs = opts.customRuns
    ? new NamespacedCache<V1beta1CustomRun>(kubeConfig, customRuns, log, { transform: summarizeCustomRun })
    : undefined;
  const caches = [requests, ...(runs ? [runs] : [])];
  const serve = (namespace: string | undefined) => Promise.all(caches.map((c) => c.serve(namespace)));
  const events = new EventRecorder(kubeConfig, log);
  let selected: Reflector<KubernetesObject> | undefined;
  if (config.namespaceSelector) {
    // Follow the selected namespaces: start serving new ones, drop those that no longer match.
    const reflector = new Reflector<KubernetesObject>({
      kubeConfig,
      type: namespaces,
      labelSelector: config.namespaceSelector,
      log,
    });
    reflector.subscribe((key, _ns, deleted) => {
      const name = key.slice(1); // cluster-scoped: "/name"
      if (!deleted)
        void serve(name).catch(() => undefined); // the reflector retries itself
      else for (const c of caches) c.drop(name);
    });
    selected = reflector;
  }
  return {
    name: config.name,
    kubeConfig,
    requests,
    ...(runs ? { customRuns: runs } : {}),
    events,
    async start() {
      if (!selected) {
        const list = config.namespaces?.length ? config.namespaces : [undefined];
        await Promise.all(list.map(serve));
        return;
      }
      await selected.start();
      await Promise.all(selected.list().map((n) => serve(n.metadata?.name)));
    },
    async stop() {
      selected?.stop();
      for (const c of caches) c.stop();
      await events.flush();
    },
  };
}
