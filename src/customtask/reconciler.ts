// Tekton's custom-task protocol for InternalRequests: a CustomRun whose customRef/customSpec is
// {apiVersion: appstudio.redhat.com/v1alpha1, kind: InternalRequest} is fulfilled by creating one
// InternalRequest per attempt and mirroring it onto the CustomRun's status. Like Tekton's own
// ReconcileKind: early exits for objects that are not ours or already done.
import type { Logger } from "pino";
import { apiStatus, ignoreNotFound, isConflict, isNotFound } from "../api/errors.ts";
import type { ResourceClient } from "../api/resources.ts";
import type { InternalRequest } from "../generated/crds.ts";
import type { KnativeCondition, V1beta1CustomRun, V1beta1CustomRunStatus } from "../generated/tekton.ts";
import { parseDuration } from "../policy/duration.ts";
import { isTerminal, requeueAfter, rfc3339, succeededCondition } from "../requests/conditions.ts";
import { parseKey } from "../requests/naming.ts";
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
  customRuns: ResourceClient<V1beta1CustomRun>;
  requests: ResourceClient<InternalRequest>;
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

export class CustomRunReconciler {
  readonly #workspaces: Map<string, CustomTaskWorkspace>;
  readonly #now: () => number;

  constructor(workspaces: Map<string, CustomTaskWorkspace>, now: () => number = Date.now) {
    this.#workspaces = workspaces;
    this.#now = now;
  }

  reconcile = async (key: string, log: Logger): Promise<ReconcileResult | undefined> => {
    const { workspace, namespace, name } = parseKey(key);
    const ws = this.#workspaces.get(workspace);
    const cached = ws?.getCustomRun(`${namespace}/${name}`);
    if (!ws || !cached || !isInternalRequestRun(cached)) return undefined;
    if (isDone(cached)) return undefined;
    // Every write below builds on the status: read the run whole if the cache left it out.
    let run = await this.#complete(ws, cached, Part.status);
    if (!run) return undefined;

    // Judged on the cached copy's record of the whole run: an oversized one is never read whole.
    const tooBig = oversize(wholeMeasure(cached) ?? measure(run, unlimited));
    if (tooBig) return this.#fail(ws, run, "InvalidCustomRun", tooBig, log);

    const attempt = attemptsSoFar(run);
    const requestKey = `${namespace}/${requestName(name, attempt)}`;
    // A request under the attempt's name that another CustomRun (or a tenant) made is never used.
    let request = ws.getRequest(requestKey);
    const ownRequest = request && ownedBy(request, run) ? request : undefined;

    if (run.spec?.status === "RunCancelled") {
      if (ownRequest && !isTerminal(ownRequest.status)) await this.#cancelRequest(ws, ownRequest);
      const message = run.spec.statusMessage || "CustomRun cancelled";
      const mirrored = ownRequest && (await this.#completeRequest(ws, ownRequest));
      await this.#write(ws, run, this.#terminal(run, mirrored, "False", "CustomRunCancelled", message));
      log.info("custom run cancelled");
      return undefined;
    }

    const whole = await this.#complete(ws, run, Part.spec);
    if (!whole) return undefined;
    run = whole;
    const planned = plannedSpec(run);
    if (!planned.ok) return this.#fail(ws, run, planned.reason, planned.message, log);
    if ((run.spec?.retries ?? 0) > maxRetries) {
      const message = `spec.retries ${run.spec?.retries} is over the limit of ${maxRetries} for InternalRequest tasks: each attempt runs internal work again; use at most ${maxRetries}`;
      return this.#fail(ws, run, "InvalidRetries", message, log);
    }
    if (request) {
      const why = notMadeFor(request, run, planned.spec);
      if (why) {
        const message = `InternalRequest ${requestKey} exists but was not created for this CustomRun (${why}); nothing was copied from it. Delete it and run the pipeline again`;
        return this.#fail(ws, run, "RequestNotOwned", message, log);
      }
      request = await this.#completeRequest(ws, request);
    }

    let timeoutMs: number;
    try {
      timeoutMs = run.spec?.timeout ? parseDuration(run.spec.timeout) : defaultTimeoutMs;
      // Tekton refuses negative timeouts too; here one would silently mean "no timeout".
      if (timeoutMs < 0) throw new Error(`${JSON.stringify(run.spec?.timeout)} must not be negative`);
    } catch (err) {
      await this.#write(
        ws,
        run,
        this.#terminal(run, undefined, "False", "InvalidTimeout", `spec.timeout: ${(err as Error).message}`),
      );
      return undefined;
    }

    const extra = (run.status?.extraFields ?? {}) as Extra;
    if (!run.status?.startTime || extra.attempt !== attempt) {
      const now = rfc3339(new Date(this.#now()));
      run = await this.#write(ws, run, {
        ...run.status,
        startTime: run.status?.startTime ?? now,
        conditions: [
          condition(
            "Unknown",
            "Running",
            attempt > 0
              ? `retrying: attempt ${attempt + 1} of ${(run.spec?.retries ?? 0) + 1}`
              : "creating InternalRequest",
          ),
        ],
        extraFields: { ...extra, attempt, attemptStartTime: now, workspace: ws.name, request: requestKey },
      });
      // The attempt is recorded: create its request in the same pass (the deterministic name makes a
      // repeat a 409, never a second request).
      if (!request) await this.#createRequest(ws, run, planned.spec, attempt);
      return undefined;
    }

    if (!request) {
      await this.#createRequest(ws, run, planned.spec, attempt);
      return undefined;
    }
    const status = run.status as V1beta1CustomRunStatus;

    const elapsed = this.#now() - Date.parse(extra.attemptStartTime ?? (status.startTime as string));
    if (timeoutMs > 0 && elapsed >= timeoutMs && !isTerminal(request.status)) {
      await this.#cancelRequest(ws, request);
      return this.#attemptOver(
        ws,
        run,
        request,
        "CustomRunTimedOut",
        `attempt ${attempt + 1} timed out after ${run.spec?.timeout ?? "60m"}`,
        log,
      );
    }

    const rc = succeededCondition(request.status);
    if (!isTerminal(request.status)) {
      // Mirror the request's progress once the controller has written some (nothing to say before).
      const message = rc?.message;
      const current = status.conditions?.[0];
      const next = { ...status, extraFields: { ...extra, pipelineRun: request.status?.pipelineRun } };
      if (message && (current?.message !== message || extra.pipelineRun !== request.status?.pipelineRun)) {
        await this.#write(ws, run, {
          ...next,
          conditions: [condition("Unknown", "Running", message, current)],
        });
      }
      return timeoutMs > 0 ? requeueAfter(Math.max(0, timeoutMs - elapsed)) : undefined;
    }
    if (rc?.status === "True") {
      await this.#write(
        ws,
        run,
        this.#terminal(run, request, "True", "Succeeded", rc.message || "InternalRequest succeeded"),
      );
      log.info("custom run succeeded");
      return undefined;
    }
    return this.#attemptOver(ws, run, request, rc?.reason || "Failed", rc?.message ?? "", log);
  };

  /** A failed or timed-out attempt: retry while retries remain, else end the CustomRun False. */
  async #attemptOver(
    ws: CustomTaskWorkspace,
    run: V1beta1CustomRun,
    request: InternalRequest,
    reason: string,
    message: string,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const attempt = attemptsSoFar(run);
    const finished = this.#terminal(run, request, "False", reason, message);
    if (attempt < (run.spec?.retries ?? 0) && !notRetried.has(reason)) {
      // A failed attempt's results stay on its own InternalRequest; the snapshot stays small.
      const { retriesStatus: _, results: _results, ...snapshot } = finished;
      await this.#write(ws, run, {
        ...run.status,
        conditions: [condition("Unknown", "Running", `attempt ${attempt + 1} failed (${reason}); retrying`)],
        results: [],
        retriesStatus: [...(run.status?.retriesStatus ?? []), snapshot],
      });
      log.info({ attempt, reason }, "custom run attempt failed; retrying");
      // Start the next attempt on a fresh pass at once: the event of our own write is no trigger
      // (the cache already holds it, and a watch that was down when it happened never delivers it).
      return requeueAfter(0);
    }
    await this.#write(ws, run, finished);
    log.info({ reason }, "custom run failed");
    return undefined;
  }

  async #fail(ws: CustomTaskWorkspace, run: V1beta1CustomRun, reason: string, message: string, log: Logger) {
    await this.#write(ws, run, this.#terminal(run, undefined, "False", reason, message));
    log.info({ reason }, "custom run rejected");
    return undefined;
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
    run: V1beta1CustomRun,
    request: InternalRequest | undefined,
    status: "True" | "False",
    reason: string,
    message: string,
  ): V1beta1CustomRunStatus {
    const results = Object.entries(request?.status?.results ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value]) => ({ name, value }));
    const extra = (run.status?.extraFields ?? {}) as Extra;
    const now = rfc3339(new Date(this.#now()));
    return {
      ...run.status,
      startTime: run.status?.startTime ?? now,
      completionTime: now,
      conditions: [condition(status, reason, message)],
      results,
      extraFields: {
        ...extra,
        ...(request?.status?.pipelineRun ? { pipelineRun: request.status.pipelineRun } : {}),
      },
    };
  }

  async #createRequest(
    ws: CustomTaskWorkspace,
    run: V1beta1CustomRun,
    spec: InternalRequest["spec"],
    attempt: number,
  ) {
    const body = requestFor(run, spec, attempt);
    try {
      await ws.requests.create(run.metadata?.namespace as string, body);
    } catch (err) {
      if (isConflict(err)) return; // created by an earlier pass; the watch brings it
      const status = apiStatus(err);
      if (status?.code === 422 || status?.code === 400) {
        // The API server's own validation of the request spec: permanent for this CustomRun.
        await this.#write(
          ws,
          run,
          this.#terminal(run, undefined, "False", "InvalidRequestSpec", status.message),
        );
        return;
      }
      throw err;
    }
  }

  async #cancelRequest(ws: CustomTaskWorkspace, request: InternalRequest) {
    if (request.spec.status === "Cancelled") return;
    try {
      await ws.requests.mergePatch(request.metadata.namespace as string, request.metadata.name as string, {
        spec: { status: "Cancelled" },
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
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
    return updated;
  }
}

function isDone(run: V1beta1CustomRun): boolean {
  const c = run.status?.conditions?.find((x) => x.type === "Succeeded");
  return c !== undefined && c.status !== "Unknown";
}

/** Condition messages on a CustomRun are cut here (a request's may be far longer). */
const maxMessageChars = 4096;

function condition(
  status: KnativeCondition["status"],
  reason: string,
  message: string,
  previous?: KnativeCondition,
): KnativeCondition {
  const lastTransitionTime = previous && previous.status === status ? previous.lastTransitionTime : rfc3339();
  return {
    type: "Succeeded",
    status,
    reason,
    message: message.length > maxMessageChars ? `${message.slice(0, maxMessageChars - 1)}…` : message,
    ...(lastTransitionTime ? { lastTransitionTime } : {}),
  };
}
