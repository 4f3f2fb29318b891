// The custom-task bridge's controller and what wakes it.
//
// customrun (key: workspace/namespace/name) fulfils a CustomRun that references an InternalRequest:
//   for   its CustomRun, in every workspace that serves the bridge;
//   owns  the InternalRequests it creates, one per attempt (mapped back by their controller owner).
import { customRuns, internalRequests, ResourceClient } from "../api/resources.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { V1beta1CustomRun } from "../generated/tekton.ts";
import { keyOf, type RequestKey, requestKeys } from "../requests/naming.ts";
import { type ControllerSpec, watch } from "../runtime/controller.ts";
import type { Workspace } from "../sources/workspace.ts";
import { CustomRunReconciler, type CustomTaskWorkspace } from "./reconciler.ts";
import { owningCustomRun } from "./request.ts";

export function customRunController(workspaces: Workspace[]): ControllerSpec<RequestKey> {
  const served = workspaces.flatMap((ws) => (ws.customRuns ? [{ ws, runs: ws.customRuns }] : []));
  const reconciler = new CustomRunReconciler(
    new Map(
      served.map(({ ws, runs }): [string, CustomTaskWorkspace] => [
        ws.name,
        {
          name: ws.name,
          customRuns: new ResourceClient<V1beta1CustomRun>(ws.kubeConfig, customRuns),
          requests: new ResourceClient<InternalRequest>(ws.kubeConfig, internalRequests),
          getCustomRun: (key) => runs.get(key),
          getRequest: (key) => ws.requests.get(key),
          observeCustomRun: (run) => runs.observe(run),
        },
      ]),
    ),
  );
  return {
    name: "customrun",
    key: requestKeys,
    watches: served.flatMap(({ ws, runs }) => [
      watch(runs, (_key, run) => [keyOf(ws.name, run)]),
      watch(ws.requests, (_key, request) => {
        const owner = owningCustomRun(request);
        return owner
          ? [{ workspace: ws.name, namespace: request.metadata.namespace ?? "", name: owner }]
          : [];
      }),
    ]),
    reconcile: reconciler.reconcile,
  };
}
