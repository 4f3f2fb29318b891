// What a caller whose request nobody has picked up can be told: when a controller last renewed its
// heartbeat Lease in this cluster, and what it said it serves (see the controller's Heartbeat).

import { leases, ResourceClient } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { formatDuration } from "../policy/duration.ts";
import { defaultHeartbeat, servingAnnotation } from "../runtime/heartbeat.ts";
import { httpCode, UsageError } from "./request-errors.ts";

export const defaultHeartbeatLease = `${defaultHeartbeat.namespace}/${defaultHeartbeat.name}`;

/** Picked up: the controller has written a first status condition (it does within seconds). */
export const pickedUp = (r: InternalRequest) => (r.status?.conditions?.length ?? 0) > 0;

interface Lease {
  metadata?: { annotations?: Record<string, string> };
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}

/** "NAMESPACE/NAME" of --heartbeat-lease. */
export function heartbeatLeaseFlag(value: string): { namespace: string; name: string } {
  const [namespace, name, extra] = value.split("/");
  if (!namespace || !name || extra !== undefined)
    throw new UsageError(`--heartbeat-lease: want NAMESPACE/NAME, got "${value}"`);
  return { namespace, name };
}

/** One sentence on the controller's last heartbeat; never throws (it only explains). */
export async function lastSeen(
  kubeConfig: KubeConfig,
  at: { namespace: string; name: string },
  now = Date.now(),
): Promise<string> {
  const where = `Lease ${at.namespace}/${at.name}`;
  let lease: Lease;
  try {
    lease = await new ResourceClient<Lease & { metadata: object }>(kubeConfig, leases).get(
      at.namespace,
      at.name,
    );
  } catch (err) {
    const code = httpCode(err);
    if (code === 404)
      return `no controller has left a heartbeat in this cluster (${where} not found): is one deployed and serving this cluster?`;
    if (code === 403) return `the controller's heartbeat (${where}) is not readable with these credentials`;
    return `the controller's heartbeat (${where}) could not be read: ${(err as Error).message.split("\n")[0]}`;
  }
  const renewed = Date.parse(lease.spec?.renewTime ?? "");
  if (Number.isNaN(renewed)) return `the controller's heartbeat (${where}) has no renewal time`;
  const ago = formatDuration(Math.max(0, Math.round((now - renewed) / 1000)) * 1000);
  const serving = lease.metadata?.annotations?.[servingAnnotation];
  const by = `${lease.spec?.holderIdentity || "an unnamed replica"}${serving ? `, serving ${serving}` : ""}`;
  const expired = now - renewed > (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
  return expired
    ? `a controller was last seen ${ago} ago (${by}) and has missed its heartbeats since: it is probably down`
    : `a controller is running (seen ${ago} ago: ${by}), but has not taken this request up: it may not serve this namespace; ask the platform owners`;
}
