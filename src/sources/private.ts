// The private cluster, from the controller's namespace there: the internal PipelineRuns this
// controller created (selected by its managed-by label, kept without their params), and the policy
// objects (InternalServices, the InternalServicesConfig). Controllers subscribe to the caches.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { internalServices, internalServicesConfigs, pipelineRuns } from "../api/resources.ts";
import type { InternalService, InternalServicesConfig } from "../generated/crds.ts";
import type { V1PipelineRun } from "../generated/tekton.ts";
import { managedSelector } from "../requests/naming.ts";
import { summarizeRun } from "../requests/pipelinerun.ts";
import { Reflector } from "../runtime/reflector.ts";

export interface PrivateCluster {
  kubeConfig: KubeConfig;
  namespace: string;
  pipelineRuns: Reflector<V1PipelineRun>;
  services: Reflector<InternalService>;
  configs: Reflector<InternalServicesConfig>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function openPrivateCluster(kubeConfig: KubeConfig, namespace: string, log: Logger): PrivateCluster {
  const runs = new Reflector<V1PipelineRun>({
    kubeConfig,
    namespace,
    log,
    type: pipelineRuns,
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
  return {
    kubeConfig,
    namespace,
    pipelineRuns: runs,
    services,
    configs,
    async start() {
      await Promise.all([runs.start(), services.start(), configs.start()]);
    },
    async stop() {
      for (const r of [runs, services, configs]) r.stop();
    },
  };
}
