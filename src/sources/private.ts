// The private cluster, from the controller's namespace there: the policy objects (InternalServices,
// the InternalServicesConfig) and the internal PipelineRuns this controller created (selected by its
// managed-by label, kept without their params), in every namespace the policy runs them in: the
// controller's own, the config's rawPipelineRequests.namespace, and each service's runNamespace.
// Controllers subscribe to the caches.

import type { Logger } from "pino";
import { internalServices, internalServicesConfigs, pipelineRuns } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { InternalService, InternalServicesConfig } from "../generated/crds.ts";
import type { V1PipelineRun } from "../generated/tekton.ts";
import { managedSelector } from "../requests/naming.ts";
import { summarizeRun } from "../requests/pipelinerun.ts";
import { NamespacedCache } from "../runtime/namespaced-cache.ts";
import { Reflector } from "../runtime/reflector.ts";

export const configName = "config";

export interface PrivateCluster {
  kubeConfig: KubeConfig;
  namespace: string;
  pipelineRuns: NamespacedCache<V1PipelineRun>;
  services: Reflector<InternalService>;
  configs: Reflector<InternalServicesConfig>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function openPrivateCluster(kubeConfig: KubeConfig, namespace: string, log: Logger): PrivateCluster {
  const runs = new NamespacedCache<V1PipelineRun>(kubeConfig, pipelineRuns, log, {
    labelSelector: managedSelector,
    transform: summarizeRun,
  });
  const services = new Reflector<InternalService>({ kubeConfig, namespace, log, type: internalServices });
  const configs = new Reflector<InternalServicesConfig>({
    kubeConfig,
    namespace,
    log,
    type: internalServicesConfigs,
  });
  // Namespaces are added as the policy names them and kept until the process ends: a run may still go
  // on in a namespace the policy no longer names. Only the controller's own is waited for at start: one
  // named without a Role for the controller there must not keep it from starting (requests for it
  // wait for that namespace's cache instead; see RequestReconciler).
  const named = () => [
    configs.get(`${namespace}/${configName}`)?.spec?.rawPipelineRequests?.namespace,
    ...services.list().map((s) => s.spec.runNamespace),
  ];
  const follow = () => {
    for (const ns of named()) if (ns) void runs.serve(ns).catch(() => undefined); // reflectors retry
  };
  return {
    kubeConfig,
    namespace,
    pipelineRuns: runs,
    services,
    configs,
    async start() {
      await Promise.all([services.start(), configs.start()]);
      services.subscribe(follow);
      configs.subscribe(follow);
      follow();
      await runs.serve(namespace);
    },
    async stop() {
      services.stop();
      configs.stop();
      runs.stop();
    },
  };
}
