// Tekton's custom-task protocol for InternalRequests: a CustomRun whose customRef/customSpec is
// {apiVersion: appstudio.redhat.com/v1alpha1, kind: InternalRequest} is fulfilled by creating one
// InternalRequest per attempt and mirroring it onto the CustomRun's status. Like Tekton's own
// ReconcileKind: early exits for objects that are not ours or already done.

import type { Logger } from "pino";
import { type Clock, isDone, requeueAfter, rfc3339, setSucceeded, succeeded } from "../api/conditions.ts";
import { apiStatus, ignoreNotFound, isConflict } from "../api/errors.ts";
import type { Resources } from "../api/resources.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { KnativeCondition, V1beta1CustomRun, V1beta1CustomRunStatus } from "../generated/tekton.ts";
import { parseDuration } from "../policy/duration.ts";
import { compareText } from "../policy/text.ts";
import { isTerminal } from "../requests/conditions.ts";
import type { RequestKey } from "../requests/naming.ts";
import { cachedSpecDigest, Part as RequestPart, specDigest } from "../requests/summary.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import { type Measured, measure } from "../runtime/size.ts";
import { isTrimmed, wholeMeasure } from "../runtime/trim.ts";
import { isInternalRequestRun, plannedSpec, requestFor, requestName } from "./request.ts";
import { attemptsSoFar, Part } from "./summary.ts";

/** Tekton's default when a CustomRun has no spec.timeout. */
export const defaultTimeoutMs = 60 * 60 * 1000;

export interface CustomTaskWorkspace {
  name: string;
  customRuns: Resources<V1beta1CustomRun>;
  requests: Resources<InternalRequest>;
  getCustomRun(key: string): V1beta1CustomRun | undefined;
  getRequest(key: string): InternalRequest | undefined;
  /** Our own status write's result into the cache ahead of its watch event (see Reflector.observe). */
  observeCustomRun(run: V1beta1CustomRun): void;
}

/** Request reasons that another attempt cannot change. */
const notRetried = new Set(["Rejected", "Cancelled"]);

/** Most retries a CustomRun may ask for: every attempt runs the internal work again. */
export const maxRetries = 10;
/** Limits on a CustomRun as a whole (characters, nesting): anything larger fails unread. */
export const maxCustomRunChars = 512 * 1024;
export const maxCustomRunDepth = 32;
const unlimited = { maxChars: Number.POSITIVE_INFINITY, maxDepth: Number.POSITIVE_INFINITY };

function oversize(m: Measured): string | undefined {
  if (m.depth > maxCustomRunDepth)
    return `the CustomRun nests ${m.depth} levels deep, over the limit of ${maxCustomRunDepth}: pass flat params`;
  if (m.chars > maxCustomRunChars)
    return `the CustomRun is about ${m.chars} characters, over the limit of ${maxCustomRunChars}: pass large data by reference`;
  return undefined;
}

/** The request was made by the bridge for this CustomRun: its controller owner is this run. */
function ownedBy(request: InternalRequest, run: V1beta1CustomRun): boolean {
  const owner = request.metadata.ownerReferences?.find((o) => o.controller);
  return owner?.kind === "CustomRun" && owner.uid === run.metadata?.uid;
}

/** Why `request` is not the one the bridge made for `run` with `spec`, or undefined when it is. */
function notMadeFor(request: InternalRequest, run: V1beta1CustomRun, spec: InternalRequest["spec"]) {
  if (!ownedBy(request, run)) return "its controller owner is not this CustomRun";
  if ((cachedSpecDigest(request) ?? specDigest(request.spec)) !== specDigest(spec))
    return "its spec differs from what this CustomRun asks for";
  const made = Date.parse(String(request.metadata.creationTimestamp ?? ""));
  const asked = Date.parse(String(run.metadata?.creationTimestamp ?? ""));
  if (made < asked) return "it is older than this CustomRun";
  return undefined;
}

interface Extra {
  request?: string;
  workspace?: string;
  pipelineRun?: string;
  attempt?: number;
  attemptStartTime?: string;
}

/** What one pass decides: the status to write (once, at the end), when to look again, what to log. */
interface Next {
  status?: V1beta1CustomRunStatus;
  result?: ReconcileResult;
  outcome?: { msg: string; fields?: Record<string, unknown> };
}

export class CustomRunReconciler {
  readonly #workspaces: Map<string, CustomTaskWorkspace>;
  readonly #now: Clock;

  constructor(workspaces: Map<string, CustomTaskWorkspace>, now: Clock = Date.now) {
    this.#workspaces = workspaces;
    this.#now = now;
  }

  reconcile = async (
    { workspace, namespace, name }: RequestKey,
    log: Logger,
  ): Promise<ReconcileResult | undefined> => {
    const ws = this.#workspaces.get(workspace);
    const cached = ws?.getCustomRun(`${namespace}/${name}`);
    if (!ws || !cached || !isInternalRequestRun(cached) || isDone(cached.status)) return undefined;
    // Judged on the cached copy's record of the whole run: an oversized one's spec is never read.
    const tooBig = oversize(wholeMeasure(cached) ?? measure(cached, unlimited));
    // Every write builds on the status, and planning reads the spec: read the run whole if the cache
    // left either out.
    const run = await this.#complete(ws, cached, ...(tooBig ? [Part.status] : [Part.status, Part.spec]));
    if (!run) return undefined;
    const next = tooBig ? this.#failed(run.status, "InvalidCustomRun", tooBig) : await this.#next(ws, run);
    if (next.status) await this.#write(ws, run, next.status);
    if (next.outcome) log.info(next.outcome.fields ?? {}, next.outcome.msg);
    return next.result;
  };

  /** The pass over a CustomRun that is ours, not done, and read whole. Side effects go to its
   *  InternalRequest only; the CustomRun's new status is returned. */
  async #next(ws: CustomTaskWorkspace, run: V1beta1CustomRun): Promise<Next> {
    const { namespace, name } = run.metadata as Record<string, string>;
    const attempt = attemptsSoFar(run);
    const requestKey = `${namespace}/${requestName(name as string, attempt)}`;
    // A request under the attempt's name that another CustomRun (or a tenant) made is never used.
    let request = ws.getRequest(requestKey);

    if (run.spec?.status === "RunCancelled") {
      const own = request && ownedBy(request, run) ? request : undefined;
      if (own && !isTerminal(own.status)) await this.#cancelRequest(ws, own);
      const mirrored = own && (await this.#completeRequest(ws, own));
      const message = run.spec.statusMessage || "CustomRun cancelled";
      return {
        status: this.#terminal(run.status, mirrored, "False", "CustomRunCancelled", message),
        outcome: { msg: "custom run cancelled" },
      };
    }
    const planned = plannedSpec(run);
    if (!planned.ok) return this.#failed(run.status, planned.reason, planned.message);
    if ((run.spec?.retries ?? 0) > maxRetries) {
      const message = `spec.retries ${run.spec?.retries} is over the limit of ${maxRetries} for InternalRequest tasks: each attempt runs internal work again; use at most ${maxRetries}`;
      return this.#failed(run.status, "InvalidRetries", message);
    }
    if (request) {
      const why = notMadeFor(request, run, planned.spec);
      if (why) {
        const message = `InternalRequest ${requestKey} exists but was not created for this CustomRun (${why}); nothing was copied from it. Delete it and run the pipeline again`;
        return this.#failed(run.status, "RequestNotOwned", message);
      }
      request = await this.#completeRequest(ws, request);
    }
    const timeout = timeoutOf(run);
    if (typeof timeout === "string")
      return this.#failed(run.status, "InvalidTimeout", `spec.timeout: ${timeout}`);

    let status: V1beta1CustomRunStatus = run.status ?? {};
    let extra = (status.extraFields ?? {}) as Extra;
    const started = status.startTime !== undefined && extra.attempt === attempt;
    if (!started) {
      // A new attempt: recorded with its request, written once this pass is over.
      const now = rfc3339(this.#now());
      extra = { ...extra, attempt, attemptStartTime: now, workspace: ws.name, request: requestKey };
      const message =
        attempt > 0
          ? `retrying: attempt ${attempt + 1} of ${(run.spec?.retries ?? 0) + 1}`
          : "creating InternalRequest";
      status = {
        ...status,
        startTime: status.startTime ?? now,
        conditions: this.#succeeded(status, "Unknown", "Running", message),
        extraFields: { ...extra },
      };
    }
    if (!request) {
      const refused = await this.#createRequest(ws, run, planned.spec, attempt);
      if (refused) return this.#failed(status, "InvalidRequestSpec", refused);
      // Its watch event wakes this run again.
      return started ? {} : { status };
    }

    const elapsed = this.#now() - Date.parse(extra.attemptStartTime ?? (status.startTime as string));
    if (timeout > 0 && elapsed >= timeout && !isTerminal(request.status)) {
      await this.#cancelRequest(ws, request);
      const message = `attempt ${attempt + 1} timed out after ${run.spec?.timeout ?? "60m"}`;
      return this.#attemptOver(run, status, request, "CustomRunTimedOut", message);
    }
    const rc = succeeded(request.status);
    if (!isTerminal(request.status)) {
      const result = timeout > 0 ? requeueAfter(Math.max(0, timeout - elapsed)) : undefined;
      // Mirror the request's progress once the controller has written some (nothing to say before).
      const pipelineRun = request.status?.pipelineRun;
      const message = rc?.message;
      if (!message || (succeeded(status)?.message === message && extra.pipelineRun === pipelineRun))
        return started ? { result } : { status, result };
      return {
        status: {
          ...status,
          conditions: this.#succeeded(status, "Unknown", "Running", message),
          extraFields: { ...extra, pipelineRun },
        },
        result,
      };
    }
    if (rc?.status === "True") {
      return {
        status: this.#terminal(
          status,
          request,
          "True",
          "Succeeded",
          rc.message || "InternalRequest succeeded",
        ),
        outcome: { msg: "custom run succeeded" },
      };
    }
    return this.#attemptOver(run, status, request, rc?.reason || "Failed", rc?.message ?? "");
  }

  /** A failed or timed-out attempt: retry while retries remain, else end the CustomRun False. */
  #attemptOver(
    run: V1beta1CustomRun,
    status: V1beta1CustomRunStatus,
    request: InternalRequest,
    reason: string,
    message: string,
  ): Next {
    const attempt = attemptsSoFar(run);
    const finished = this.#terminal(status, request, "False", reason, message);
    if (attempt >= (run.spec?.retries ?? 0) || notRetried.has(reason))
      return { status: finished, outcome: { msg: "custom run failed", fields: { reason } } };
    // A failed attempt's results stay on its own InternalRequest; the snapshot stays small.
    const { retriesStatus: _, results: _results, ...snapshot } = finished;
    return {
      status: {
        ...status,
        conditions: this.#succeeded(
          status,
          "Unknown",
          "Running",
          `attempt ${attempt + 1} failed (${reason}); retrying`,
        ),
        results: [],
        retriesStatus: [...(status.retriesStatus ?? []), snapshot],
      },
      // Start the next attempt on a fresh pass at once: the event of our own write is no trigger
      // (the cache already holds it, and a watch that was down when it happened never delivers it).
      result: requeueAfter(0),
      outcome: { msg: "custom run attempt failed; retrying", fields: { attempt, reason } },
    };
  }

  #failed(status: V1beta1CustomRunStatus | undefined, reason: string, message: string): Next {
    return {
      status: this.#terminal(status, undefined, "False", reason, message),
      outcome: { msg: "custom run rejected", fields: { reason } },
    };
  }

  /** The run whole when the cached copy lacks any of `parts`; undefined if it is gone (or replaced). */
  async #complete(ws: CustomTaskWorkspace, run: V1beta1CustomRun, ...parts: string[]) {
    if (!isTrimmed(run, ...parts)) return run;
    const { namespace, name, uid } = run.metadata as Record<string, string>;
    const whole = await ignoreNotFound(ws.customRuns.get(namespace as string, name as string));
    return whole?.metadata?.uid === uid ? whole : undefined;
  }

  /** The request with its conditions and results, which the CustomRun mirrors. */
  async #completeRequest(ws: CustomTaskWorkspace, request: InternalRequest) {
    if (!isTrimmed(request, RequestPart.conditions, RequestPart.results)) return request;
    const { namespace, name, uid } = request.metadata as Record<string, string>;
    const whole = await ignoreNotFound(ws.requests.get(namespace as string, name as string));
    return whole?.metadata.uid === uid ? whole : undefined;
  }

  #terminal(
    base: V1beta1CustomRunStatus | undefined,
    request: InternalRequest | undefined,
    status: "True" | "False",
    reason: string,
    message: string,
  ): V1beta1CustomRunStatus {
    const results = Object.entries(request?.status?.results ?? {})
      .sort(([a], [b]) => compareText(a, b))
      .map(([name, value]) => ({ name, value }));
    const extra = (base?.extraFields ?? {}) as Extra;
    const now = rfc3339(this.#now());
    return {
      ...base,
      startTime: base?.startTime ?? now,
      completionTime: now,
      conditions: this.#succeeded(base, status, reason, message),
      results,
      extraFields: {
        ...extra,
        ...(request?.status?.pipelineRun ? { pipelineRun: request.status.pipelineRun } : {}),
      },
    };
  }

  #succeeded(
    base: V1beta1CustomRunStatus | undefined,
    status: KnativeCondition["status"],
    reason: string,
    message: string,
  ): KnativeCondition[] {
    return setSucceeded(base?.conditions, { status, reason, message }, this.#now(), maxMessageChars);
  }

  /** Creates the attempt's request; the API server's refusal of its spec (permanent for this
   *  CustomRun) is returned, anything else thrown. */
  async #createRequest(
    ws: CustomTaskWorkspace,
    run: V1beta1CustomRun,
    spec: InternalRequest["spec"],
    attempt: number,
  ): Promise<string | undefined> {
    try {
      await ws.requests.create(run.metadata?.namespace as string, requestFor(run, spec, attempt));
      return undefined;
    } catch (err) {
      if (isConflict(err)) return undefined; // created by an earlier pass; the watch brings it
      const status = apiStatus(err);
      if (status?.code === 422 || status?.code === 400) return status.message;
      throw err;
    }
  }

  async #cancelRequest(ws: CustomTaskWorkspace, request: InternalRequest) {
    if (request.spec.status === "Cancelled") return;
    const { namespace, name } = request.metadata as Record<string, string>;
    await ignoreNotFound(
      ws.requests.mergePatch(namespace as string, name as string, { spec: { status: "Cancelled" } }),
    );
  }

  async #write(ws: CustomTaskWorkspace, run: V1beta1CustomRun, status: V1beta1CustomRunStatus) {
    const { namespace, name, resourceVersion, generation } = run.metadata as Record<string, string>;
    const withGeneration = { ...status, ...(generation ? { observedGeneration: Number(generation) } : {}) };
    const updated = await ws.customRuns.patchStatus(
      namespace as string,
      name as string,
      withGeneration,
      resourceVersion,
    );
    ws.observeCustomRun(updated);
  }
}

/** The run's timeout in ms (0: none), or why its spec.timeout is refused. */
function timeoutOf(run: V1beta1CustomRun): number | string {
  try {
    const ms = run.spec?.timeout ? parseDuration(run.spec.timeout) : defaultTimeoutMs;
    // Tekton refuses negative timeouts too; here one would silently mean "no timeout".
    return ms < 0 ? `${JSON.stringify(run.spec?.timeout)} must not be negative` : ms;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Condition messages on a CustomRun are cut here (a request's may be far longer). */
const maxMessageChars = 4096;
