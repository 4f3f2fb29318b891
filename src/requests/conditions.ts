// The request's Succeeded condition: always first, lastTransitionTime moves only when status moves,
// and terminal states are sticky.
import type { InternalRequestStatus, InternalRequestStatusConditionsItem } from "../generated/crds.ts";

export type Condition = InternalRequestStatusConditionsItem;

export const Reasons = {
  Running: "Running",
  Succeeded: "Succeeded",
  Failed: "Failed",
  Rejected: "Rejected",
  Cancelled: "Cancelled",
  TimedOut: "TimedOut",
} as const;
export type Reason = (typeof Reasons)[keyof typeof Reasons];

export function succeededCondition(status: { conditions?: Condition[] } | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === "Succeeded");
}

/** Finished: True, or False with a final reason. The original Go controller wrote False with reason
 *  Running while its run was going: that is still in flight (see isLegacyRunning). */
export function isTerminal(status: InternalRequestStatus | undefined): boolean {
  const c = succeededCondition(status);
  return c !== undefined && c.status !== "Unknown" && !isLegacyRunning(status);
}

/** The Go controller's "running" shape: Succeeded False, reason Running. */
export function isLegacyRunning(status: InternalRequestStatus | undefined): boolean {
  const c = succeededCondition(status);
  return c?.status === "False" && c.reason === "Running";
}

/** The conditions list with Succeeded set (first) and every other condition kept after it. */
export function withSucceeded(
  conditions: Condition[] | undefined,
  next: { status: Condition["status"]; reason: Reason; message: string },
  observedGeneration: number | undefined,
  now: Date = new Date(),
): Condition[] {
  // The CRD limits messages (a failing TaskRun's message can be longer): a longer one would make every
  // status write fail and the request never finish.
  const chars = Array.from(next.message);
  if (chars.length > maxMessageChars)
    next = { ...next, message: `${chars.slice(0, maxMessageChars - 1).join("")}…` };
  const previous = conditions?.find((c) => c.type === "Succeeded");
  const lastTransitionTime =
    previous && previous.status === next.status
      ? previous.lastTransitionTime
      : now.toISOString().replace(/\.\d+Z$/, "Z");
  const succeeded: Condition = {
    type: "Succeeded",
    ...next,
    lastTransitionTime,
    ...(observedGeneration ? { observedGeneration } : {}),
  };
  return [succeeded, ...(conditions ?? []).filter((c) => c.type !== "Succeeded")];
}

/** status.conditions[].message maxLength in the InternalRequest CRD (characters). */
export const maxMessageChars = 32768;

/** Node timers cannot wait longer than 2^31-1 ms (a longer delay fires after 1 ms, again and again):
 *  long waits (timeouts, retention) are rechecked at that interval instead. */
export const requeueAfter = (ms: number): { requeueAfterMs: number } => ({
  requeueAfterMs: Math.min(ms, 2_147_483_647),
});

export const rfc3339 = (d: Date = new Date()) => d.toISOString().replace(/\.\d+Z$/, "Z");
