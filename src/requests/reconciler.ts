// Reconciles one InternalRequest (key "workspace/namespace/name"): admit it, run it as an internal
// PipelineRun, mirror progress, copy the outcome and results back, and clean up after it.
// Level-triggered and idempotent: every step reads the current state and is safe to repeat.
import type { Logger } from "pino";
import { describeError, isConflict, isNotFound } from "../api/errors.ts";
import type { EventRecorder } from "../api/events.ts";
import type { ResourceClient } from "../api/resources.ts";
import type {
  InternalRequest,
  InternalRequestStatus,
  InternalService,
  InternalServicesConfig,
} from "../generated/crds.ts";
import type { V1PipelineRun, V1TaskRun } from "../generated/tekton.ts";
import { type Admission, admit, type RunPlan } from "../policy/admit.ts";
import { parseDuration } from "../policy/duration.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import type { Metrics } from "../runtime/metrics.ts";
import {
  isTerminal,
  type Reason,
  requeueAfter,
  rfc3339,
  succeededCondition,
  withSucceeded,
} from "./conditions.ts";
import { finalizer, parseKey, pipelineRunName, requestUidLabel, serviceLabel } from "./naming.ts";
import { buildPipelineRun, copyResults, runState } from "./pipelinerun.ts";

/** One remote workspace: where requests live. */
export interface WorkspaceAccess {
  name: string;
  requests: ResourceClient<InternalRequest>;
  /** Informer cache lookup by "namespace/name". */
  getRequest(key: string): InternalRequest | undefined;
  /** Our own write's result into the cache ahead of its watch event (see Reflector.observe). */
  observe(request: InternalRequest): void;
  events: EventRecorder;
}

/** The private cluster: where services, the config and internal PipelineRuns live. */
export interface PrivateAccess {
  namespace: string;
  pipelineRuns: ResourceClient<V1PipelineRun>;
  taskRuns: ResourceClient<V1TaskRun>;
  getPipelineRun(name: string): V1PipelineRun | undefined;
  listPipelineRuns(): V1PipelineRun[];
  getService(name: string): InternalService | undefined;
  getConfig(): InternalServicesConfig | undefined;
}

export interface RequestReconcilerDeps {
  workspaces: Map<string, WorkspaceAccess>;
  private: PrivateAccess;
  metrics: Metrics;
  now?: () => number;
  /** Test-only fault injection: called right after an internal PipelineRun is created. */
  afterCreate?: () => void;
  /**
   * How often a request queued behind a service's concurrency limit looks again, as a safety net:
   * a finishing run wakes the waiting requests at once. Default 2 s.
   */
  queuedRecheckMs?: number;
}

const defaultQueuedRecheckMs = 2_000;

export class RequestReconciler {
  readonly #d: RequestReconcilerDeps;
  readonly #now: () => number;
  /** Keys of requests queued behind a service's concurrency limit, woken when a run finishes. */
  readonly #waitingForSlot = new Set<string>();

  constructor(deps: RequestReconcilerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** The requests waiting for a concurrency slot; each reconcile that still finds none adds it back. */
  takeWaitingForSlot(): string[] {
    const keys = [...this.#waitingForSlot];
    this.#waitingForSlot.clear();
    return keys;
  }

  reconcile = async (key: string, log: Logger): Promise<ReconcileResult | undefined> => {
    const { workspace: wsName, namespace, name } = parseKey(key);
    const ws = this.#d.workspaces.get(wsName);
    if (!ws) return undefined;
    const request = ws.getRequest(`${namespace}/${name}`);
    if (!request) return undefined; // deleted; the finalizer already did the cleanup

    if (request.metadata.deletionTimestamp) return this.#finalize(ws, request, log);
    if (isTerminal(request.status)) return this.#cleanUpFinished(ws, request, log);
    const runName = pipelineRunName(ws.name, name, request.metadata.uid as string);
    if (request.spec.status === "Cancelled") return this.#cancel(ws, request, runName, log);
    const existing = request.status?.pipelineRun
      ? await this.#getRun(runName)
      : this.#d.private.getPipelineRun(runName);
    if (request.status?.pipelineRun || existing) return this.#followRun(ws, request, runName, existing, log);
    return this.#start(key, ws, request, runName, log);
  };

  // --- new requests ---------------------------------------------------------------------------

  async #start(key: string, ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    // Rejected requests get no finalizer: nothing of theirs ever exists in the private cluster.
    const config = this.#d.private.getConfig();
    const serviceName = request.spec.service;
    const service = serviceName ? this.#d.private.getService(serviceName) : undefined;
    const admission: Admission = admit({
      workspace: ws.name,
      namespace: request.metadata.namespace as string,
      request: request.spec,
      config: config?.spec,
      service,
    });
    if (!admission.allowed) {
      log.info({ rule: admission.rule }, "request rejected");
      await this.#finish(ws, request, "Rejected", admission.message, {});
      ws.events.record(request, "Warning", "Rejected", admission.message);
      return undefined;
    }
    const plan = admission.run;
    // The finalizer goes on before anything exists in the private cluster, so a deletion can cancel it.
    if (!request.metadata.finalizers?.includes(finalizer)) request = await this.#addFinalizer(ws, request);
    const queuedBehind = this.#activeRuns(plan);
    if (plan.maxConcurrentRuns !== undefined && queuedBehind >= plan.maxConcurrentRuns) {
      const message = `queued: service "${plan.service}" is running ${queuedBehind} of at most ${plan.maxConcurrentRuns} concurrent runs`;
      this.#waitingForSlot.add(key);
      if (succeededCondition(request.status)?.message !== message || request.status?.service !== plan.service)
        await this.#writeStatus(ws, request, { ...this.#running(request, message), service: plan.service });
      return { requeueAfterMs: this.#d.queuedRecheckMs ?? defaultQueuedRecheckMs };
    }

    const run = buildPipelineRun({
      name: runName,
      namespace: this.#d.private.namespace,
      workspace: ws.name,
      request,
      plan,
      volumeClaim: config?.spec?.volumeClaim,
    });
    let created: V1PipelineRun;
    try {
      created = await this.#d.private.pipelineRuns.create(this.#d.private.namespace, run);
      log.info({ pipelineRun: runName }, "internal PipelineRun created");
    } catch (err) {
      if (!isConflict(err)) throw err;
      // Created by an earlier attempt that crashed before recording it: adopt it, never create twice.
      created = await this.#d.private.pipelineRuns.get(this.#d.private.namespace, runName);
      if (created.metadata?.labels?.[requestUidLabel] !== request.metadata.uid) {
        throw new Error(`PipelineRun ${runName} exists but belongs to another request`);
      }
      log.info({ pipelineRun: runName }, "adopted existing internal PipelineRun");
    }
    this.#d.afterCreate?.();
    const notes = plan.notes.length > 0 ? ` (${plan.notes.join("; ")})` : "";
    await this.#writeStatus(ws, request, {
      ...this.#running(request, `accepted; internal PipelineRun started${notes}`),
      startTime: rfc3339(new Date(this.#now())),
      pipelineRun: `${this.#d.private.namespace}/${runName}`,
      ...(plan.service ? { service: plan.service } : {}),
    });
    ws.events.record(
      request,
      "Normal",
      "Started",
      `internal PipelineRun ${this.#d.private.namespace}/${runName} started${notes}`,
    );
    return plan.timeouts.pipelineMs ? requeueAfter(plan.timeouts.pipelineMs) : undefined;
  }

  #activeRuns(plan: RunPlan): number {
    if (!plan.service) return 0;
    return this.#d.private
      .listPipelineRuns()
      .filter((r) => r.metadata?.labels?.[serviceLabel] === plan.service && !runState(r).done).length;
  }

  // --- running requests -----------------------------------------------------------------------

  async #followRun(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    run: V1PipelineRun | undefined,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    if (!run) {
      await this.#finish(
        ws,
        request,
        "Failed",
        `internal PipelineRun ${runName} was deleted before it finished`,
        {},
      );
      return undefined;
    }
    if (!request.status?.pipelineRun) {
      // Adopted after a crash (or a failed write) between create and the status write. Then follow
      // the run in the same pass: it may have finished meanwhile, and then no event of its own
      // would ever come again to wake this request.
      request = await this.#writeStatus(ws, request, {
        ...this.#running(request, "accepted; internal PipelineRun started"),
        startTime: run.metadata?.creationTimestamp
          ? rfc3339(new Date(run.metadata.creationTimestamp))
          : rfc3339(),
        pipelineRun: `${this.#d.private.namespace}/${runName}`,
      });
    }
    const state = runState(run);
    if (state.done) {
      const reason = state.reason as Exclude<Reason, "Running">;
      const message = reason === "Failed" ? await this.#failureMessage(run, state.message) : state.message;
      const finished = await this.#finish(ws, request, reason, message, copyResults(run.status?.results));
      log.info({ reason }, "request finished");
      // Clean up in the same pass: no second trip through the queue for the same request.
      return this.#cleanUpFinished(ws, finished, log);
    }
    const timeoutMs = parseDuration(String(run.spec?.timeouts?.pipeline ?? "0"));
    const started = Date.parse(request.status?.startTime ?? "") || this.#now();
    const remaining = started + timeoutMs - this.#now();
    if (timeoutMs > 0 && remaining <= 0) {
      await this.#cancelRun(runName);
      const finished = await this.#finish(
        ws,
        request,
        "TimedOut",
        `request timed out after ${run.spec?.timeouts?.pipeline}; internal PipelineRun cancelled`,
        copyResults(run.status?.results),
      );
      return this.#cleanUpFinished(ws, finished, log);
    }
    // Until Tekton picks the run up it has no condition: keep "accepted; started" (and its notes).
    const pickedUp = run.status?.conditions?.some((c) => c.type === "Succeeded");
    if (pickedUp && succeededCondition(request.status)?.message !== state.message) {
      await this.#writeStatus(ws, request, this.#running(request, state.message));
    }
    return timeoutMs > 0 ? requeueAfter(remaining) : undefined;
  }

  /** spec.status "Cancelled": stop the run if there is one, and end the request as Cancelled. */
  async #cancel(ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    const run = request.status?.pipelineRun
      ? await this.#getRun(runName)
      : this.#d.private.getPipelineRun(runName);
    if (run && !runState(run).done) {
      await this.#cancelRun(runName);
      log.info({ pipelineRun: runName }, "request cancelled; internal PipelineRun cancelled");
    }
    const message = run
      ? "request cancelled (spec.status); internal PipelineRun cancelled"
      : "request cancelled (spec.status) before it started";
    const finished = await this.#finish(
      ws,
      request,
      "Cancelled",
      message,
      run ? copyResults(run.status?.results) : {},
    );
    return this.#cleanUpFinished(ws, finished, log);
  }

  /** The failing TaskRun's own reason and message, not only Tekton's pipeline summary. */
  async #failureMessage(run: V1PipelineRun, summary: string): Promise<string> {
    for (const child of run.status?.childReferences ?? []) {
      if (child.kind !== "TaskRun" || !child.name) continue;
      const taskRun = await this.#d.private.taskRuns
        .get(this.#d.private.namespace, child.name)
        .catch(() => undefined);
      const c = taskRun?.status?.conditions?.find((x) => x.type === "Succeeded");
      if (c?.status === "False") {
        return `task ${child.pipelineTaskName ?? child.name} failed: ${c.reason ?? "Failed"}: ${c.message ?? ""}`.trim();
      }
    }
    return summary;
  }

  // --- terminal requests ----------------------------------------------------------------------

  async #finish(
    ws: WorkspaceAccess,
    request: InternalRequest,
    reason: Exclude<Reason, "Running">,
    message: string,
    copied: { results?: Record<string, string>; dropped?: string[] },
  ): Promise<InternalRequest> {
    const dropped = copied.dropped ?? [];
    const note = dropped.length > 0 ? ` (results dropped, over the size limit: ${dropped.join(", ")})` : "";
    const status: InternalRequestStatus = {
      conditions: withSucceeded(
        request.status?.conditions,
        { status: reason === "Succeeded" ? "True" : "False", reason, message: `${message}${note}` },
        request.metadata.generation,
        new Date(this.#now()),
      ),
      completionTime: rfc3339(new Date(this.#now())),
      observedGeneration: request.metadata.generation,
      ...(copied.results ? { results: copied.results } : {}),
      ...(dropped.length > 0 ? { droppedResults: dropped } : {}),
    };
    const updated = await this.#writeStatus(ws, request, status);
    const service = request.status?.service ?? request.spec.service ?? "(pipeline)";
    this.#d.metrics.requestOutcomes.inc({ workspace: ws.name, service, reason });
    const started = Date.parse(request.status?.startTime ?? "");
    if (started) this.#d.metrics.requestDuration.observe({ service, reason }, (this.#now() - started) / 1000);
    if (reason !== "Rejected") {
      ws.events.record(request, reason === "Succeeded" ? "Normal" : "Warning", reason, `${message}${note}`);
    }
    return updated;
  }

  /** After the outcome is recorded: delete the run per retention (kept with debug), then drop the finalizer. */
  async #cleanUpFinished(ws: WorkspaceAccess, request: InternalRequest, log: Logger) {
    if (!request.metadata.finalizers?.includes(finalizer)) return undefined; // nothing left to do: no writes
    const runName = request.status?.pipelineRun?.split("/")[1];
    if (runName && !this.#d.private.getConfig()?.spec?.debug) {
      // Cache first, then a live read: a cache that lags must never let a finished run leak.
      const run = await this.#getRun(runName);
      if (run) {
        const keepMs = this.#keepFinishedMs(request);
        const finishedAt = Date.parse(request.status?.completionTime ?? "") || this.#now();
        const wait = finishedAt + keepMs - this.#now();
        if (wait > 0) return requeueAfter(wait);
        await this.#deleteRun(runName, run.metadata?.uid);
        log.info({ pipelineRun: runName }, "finished internal PipelineRun deleted");
      }
    }
    await this.#removeFinalizer(ws, request);
    return undefined;
  }

  #keepFinishedMs(request: InternalRequest): number {
    const service = request.status?.service ? this.#d.private.getService(request.status.service) : undefined;
    const keep = service?.spec.retention?.keepFinishedPipelineRuns;
    try {
      return keep ? parseDuration(keep) : 0;
    } catch {
      return 0;
    }
  }

  /** Deleting a request cancels its running PipelineRun (and deletes it unless debug), then lets it go. */
  async #finalize(ws: WorkspaceAccess, request: InternalRequest, log: Logger) {
    if (!request.metadata.finalizers?.includes(finalizer)) return undefined;
    const runName =
      request.status?.pipelineRun?.split("/")[1] ??
      pipelineRunName(ws.name, request.metadata.name as string, request.metadata.uid as string);
    const run = await this.#getRun(runName);
    if (run) {
      if (!runState(run).done) {
        await this.#cancelRun(runName);
        log.info({ pipelineRun: runName }, "request deleted; internal PipelineRun cancelled");
      }
      if (!this.#d.private.getConfig()?.spec?.debug) await this.#deleteRun(runName, run.metadata?.uid);
    }
    await this.#removeFinalizer(ws, request);
    return undefined;
  }

  // --- writes -----------------------------------------------------------------------------------

  #running(request: InternalRequest, message: string): InternalRequestStatus {
    return {
      conditions: withSucceeded(
        request.status?.conditions,
        { status: "Unknown", reason: "Running", message },
        request.metadata.generation,
        new Date(this.#now()),
      ),
      observedGeneration: request.metadata.generation,
    };
  }

  async #writeStatus(ws: WorkspaceAccess, request: InternalRequest, status: InternalRequestStatus) {
    const { namespace, name, resourceVersion } = request.metadata as Record<string, string>;
    const updated = await ws.requests.patchStatus(
      namespace as string,
      name as string,
      status,
      resourceVersion,
    );
    ws.observe(updated);
    return updated;
  }

  async #addFinalizer(ws: WorkspaceAccess, request: InternalRequest): Promise<InternalRequest> {
    const { namespace, name, resourceVersion } = request.metadata as Record<string, string>;
    const finalizers = [...(request.metadata.finalizers ?? []), finalizer];
    // resourceVersion makes the merge patch conditional: a concurrent change gets a 409 and a retry.
    const updated = await ws.requests.mergePatch(namespace as string, name as string, {
      metadata: { finalizers, resourceVersion },
    });
    ws.observe(updated);
    return updated;
  }

  async #removeFinalizer(ws: WorkspaceAccess, request: InternalRequest) {
    const { namespace, name, resourceVersion } = request.metadata as Record<string, string>;
    const finalizers = (request.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    try {
      ws.observe(
        await ws.requests.mergePatch(namespace as string, name as string, {
          metadata: { finalizers, resourceVersion },
        }),
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async #getRun(name: string): Promise<V1PipelineRun | undefined> {
    const cached = this.#d.private.getPipelineRun(name);
    if (cached) return cached;
    try {
      return await this.#d.private.pipelineRuns.get(this.#d.private.namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async #cancelRun(name: string) {
    try {
      await this.#d.private.pipelineRuns.mergePatch(this.#d.private.namespace, name, {
        spec: { status: "Cancelled" },
      });
    } catch (err) {
      if (!isNotFound(err)) throw new Error(`cancelling PipelineRun ${name}: ${describeError(err)}`);
    }
  }

  async #deleteRun(name: string, uid: string | undefined) {
    try {
      await this.#d.private.pipelineRuns.delete(this.#d.private.namespace, name, uid ? { uid } : undefined);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
