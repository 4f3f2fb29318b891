// Knative's Succeeded condition, which InternalRequests, CustomRuns, PipelineRuns and TaskRuns all
// carry. Read and written only through here: Succeeded first in the list, its lastTransitionTime
// moving only when its status does. Times come from the caller's clock, never the real one, so a
// reconcile is checkable with a fixed clock.

/** Milliseconds since the epoch, as Date.now (which is the clock outside tests). */
export type Clock = () => number;

interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export function succeeded<C extends { type: string }>(
  status: { conditions?: C[] } | undefined,
): C | undefined {
  return status?.conditions?.find((c) => c.type === "Succeeded");
}

/** Tekton's IsDone: Succeeded is True or False. */
export function isDone(status: { conditions?: Condition[] } | undefined): boolean {
  const c = succeeded(status);
  return c !== undefined && c.status !== "Unknown";
}

/** The conditions with Succeeded set to `next` (first, its message cut to `maxMessageChars` code
 *  points) and every other condition kept after it. */
export function setSucceeded<C extends Condition>(
  conditions: C[] | undefined,
  next: Omit<C, "type" | "lastTransitionTime">,
  now: number,
  maxMessageChars: number,
): C[] {
  const chars = Array.from(next.message ?? "");
  const message =
    chars.length > maxMessageChars ? `${chars.slice(0, maxMessageChars - 1).join("")}…` : next.message;
  const previous = succeeded(conditions ? { conditions } : undefined);
  const lastTransitionTime =
    previous?.lastTransitionTime && previous.status === next.status
      ? previous.lastTransitionTime
      : rfc3339(now);
  const set = {
    ...next,
    type: "Succeeded",
    ...(message !== undefined ? { message } : {}),
    lastTransitionTime,
  } as C;
  return [set, ...(conditions ?? []).filter((c) => c.type !== "Succeeded")];
}

/** Kubernetes' time format: seconds, no fraction. */
export const rfc3339 = (time: number | Date) => new Date(time).toISOString().replace(/\.\d+Z$/, "Z");

/** Node timers cannot wait longer than 2^31-1 ms (a longer delay fires after 1 ms, again and again):
 *  long waits (timeouts, retention) are rechecked at that interval instead. */
export const requeueAfter = (ms: number): { requeueAfterMs: number } => ({
  requeueAfterMs: Math.min(ms, 2_147_483_647),
});
