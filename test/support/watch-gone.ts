// Whether a watch from an old resourceVersion already answers 410 Gone: how fault tests know etcd has
// compacted past what a cut-off reflector saw.
import { type KubeConfig, Watch } from "@kubernetes/client-node";
import { collectionPath, internalRequests } from "../../src/api/resources.ts";

/** A watch of InternalRequests (in `namespace`, or all) from `resourceVersion` answers 410. */
export function watchIsGone(
  kubeConfig: KubeConfig,
  namespace: string | undefined,
  resourceVersion: string,
): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (gone: boolean) => {
      if (!settled) {
        settled = true;
        resolve(gone);
      }
    };
    new Watch(kubeConfig)
      .watch(
        collectionPath(internalRequests, namespace),
        { resourceVersion, timeoutSeconds: 1 },
        (type, obj: { code?: number }) => finish(type === "ERROR" && obj.code === 410),
        () => finish(false),
      )
      // A watch that is not refused has nothing to say within its second: not gone (yet).
      .then((req) => setTimeout(() => req.abort(), 1500))
      .catch((err: { statusCode?: number }) => finish(err.statusCode === 410));
  });
}
