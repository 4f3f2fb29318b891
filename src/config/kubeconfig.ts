// Loading kubeconfigs without client-node's silent fallback to localhost:8080, one KubeConfig per
// context (switching a shared object's current context after creating clients mixes credentials).
import { existsSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";

export class ConfigError extends Error {}

/** A kubeconfig file's contexts; `path` undefined means in-cluster (service account) config. */
export function loadKubeConfig(path: string | undefined, what: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) {
    if (!existsSync(path)) throw new ConfigError(`${what}: kubeconfig file ${path} does not exist`);
    kc.loadFromFile(path);
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    throw new ConfigError(
      `${what}: no kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST is unset); pass a kubeconfig path`,
    );
  }
  if (!kc.getCurrentCluster())
    throw new ConfigError(`${what}: kubeconfig ${path ?? "(in-cluster)"} has no current cluster`);
  return kc;
}

/** A copy of kc bound to one context. */
export function forContext(kc: KubeConfig, context: string, what: string): KubeConfig {
  if (!kc.getContextObject(context)) {
    const known =
      kc
        .getContexts()
        .map((c) => c.name)
        .join(", ") || "(none)";
    throw new ConfigError(`${what}: context "${context}" is not in the kubeconfig (contexts: ${known})`);
  }
  const copy = new KubeConfig();
  copy.loadFromOptions({
    clusters: kc.getClusters(),
    users: kc.getUsers(),
    contexts: kc.getContexts(),
    currentContext: context,
  });
  return copy;
}
