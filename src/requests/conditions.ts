// What the InternalRequest's Succeeded condition means: its reasons, when it is final (sticky), and
// how the controller sets it (on the shared rules of the Succeeded condition).
import { isDone, setSucceeded, succeeded } from "../api/conditions.ts";
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

/** Finished: True, or False with a final reason. The original Go controller wrote False with reason
 *  Running while its run was going: that is still in flight (see isLegacyRunning). */
export function isTerminal(status: InternalRequestStatus | undefined): boolean {
  return isDone(status) && !isLegacyRunning(status);
}

/** The Go controller's "running" shape: Succeeded False, reason Running. */
export function isLegacyRunning(status: InternalRequestStatus | undefined): boolean {
  const c = succeeded(status);
  return c?.status === "False" && c.reason === "Running";
}

/** status.conditions[].message maxLength in the InternalRequest CRD (characters): a longer message
 *  (a failing TaskRun's can be) would make every status write fail and the request never finish. */
export const maxMessageChars = 32768;

/** The conditions list with Succeeded set (first) and every other condition kept after it. */
export function withSucceeded(
  conditions: Condition[] | undefined,
  next: { status: Condition["status"]; reason: Reason; message: string },
  observedGeneration: number | undefined,
  now: number,
): Condition[] {
  return setSucceeded(
    conditions,
    { ...next, ...(observedGeneration ? { observedGeneration } : {}) },
    now,
    maxMessageChars,
  );
}
