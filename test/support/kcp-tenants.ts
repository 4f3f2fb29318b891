// A tenant's side of a kcp workspace bound to the export, for the tests that run the controller against
// kcp: its requests (in namespace "default"), waiting for them, the private run made for one, and the
// Events that reach it.
import { CoreV1Api, type CoreV1Event } from "@kubernetes/client-node";
import type { KcpWorkspace } from "../../envtest/kcp.ts";
import { bindingPhase } from "../../envtest/kcp.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { internalRequests, ResourceClient } from "../../src/api/resources.ts";
import type { InternalRequest } from "../../src/generated/crds.ts";
import { requestAnnotation, workspaceAnnotation } from "../../src/requests/naming.ts";
import type { FakeTekton } from "./tekton.ts";

export const tenantRequests = (w: KcpWorkspace) =>
  new ResourceClient<InternalRequest>(w.kubeConfig, internalRequests, "test");

/** Waits until the workspace's APIBinding `exportName` is Bound. */
export const waitBound = (w: KcpWorkspace, exportName: string) =>
  eventually(
    async () => ((await bindingPhase(w.kubeConfig, exportName)) === "Bound" ? true : undefined),
    `APIBinding in ${w.path} Bound`,
    60_000,
  );

/** Creates a request for `service` as the tenant, once the bound API is served there. */
export const createTenantRequest = (
  w: KcpWorkspace,
  name: string,
  service: string,
  params: Record<string, string> = {},
) =>
  eventually(
    async () => {
      try {
        return await tenantRequests(w).create("default", {
          apiVersion: "appstudio.redhat.com/v1alpha1",
          kind: "InternalRequest",
          metadata: { name },
          spec: { service, params },
        });
      } catch (err) {
        if (apiStatus(err)?.code === 404) return undefined; // the binding's API not served yet
        throw err;
      }
    },
    `InternalRequest ${name} created in ${w.path}`,
    30_000,
  );

export const waitForTenantReason = (w: KcpWorkspace, name: string, reason: string) =>
  eventually(
    async () => {
      const r = await tenantRequests(w).get("default", name);
      return r.status?.conditions?.[0]?.reason === reason ? r : undefined;
    },
    `${w.path}/default/${name}: reason ${reason}`,
    30_000,
  );

/** The private run made for a request of workspace `w`. */
export const runFor = (tekton: FakeTekton, w: KcpWorkspace, name: string) =>
  eventually(
    async () =>
      (await tekton.list()).find(
        (r) =>
          r.metadata?.annotations?.[workspaceAnnotation] === w.path &&
          r.metadata?.annotations?.[requestAnnotation] === `default/${name}`,
      ),
    `the private run for ${w.path}/default/${name}`,
    30_000,
  );

/** A request for a service that does not exist, made as the tenant: its Rejected Events, once the
 *  controller's Event reaches the workspace (a success has its status and no Event). */
export async function rejectionEvents(w: KcpWorkspace): Promise<CoreV1Event[]> {
  await createTenantRequest(w, "no-such", "no-such-service");
  await waitForTenantReason(w, "no-such", "Rejected");
  return eventually(async () => {
    const list = await w.kubeConfig.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: "default" });
    const rejected = list.items.filter((e) => e.reason === "Rejected" && e.involvedObject.name === "no-such");
    return rejected.length > 0 ? rejected : undefined;
  }, `a Rejected Event in ${w.path}`);
}
