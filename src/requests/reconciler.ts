// Reconciles one InternalRequest (key "workspace/namespace/name"): admit it, run it as an internal
// PipelineRun, mirror progress, copy the outcome and results back, and clean up after it.
// Level-triggered and idempotent: every step reads the current state and is safe to repeat.

import type { Logger } from "pino";
import { type Clock, requeueAfter, rfc3339, succeeded } from "../api/conditions.ts";
import { apiStatus, describeError, ignoreNotFound, isConflict } from "../api/errors.ts";
import type { EventRecorder } from "../api/events.ts";
import type { Resources } from "../api/resources.ts";
import type {
  InternalRequest,
  InternalRequestStatus,
  InternalService,
  InternalServicesConfig,
} from "../generated/crds.ts";
import type { V1PipelineRun, V1TaskRun } from "../generated/tekton.ts";
import {
  admit,
  callerRejection,
  DEFAULT_QUEUE_TIMEOUT_MS,
  type RunPlan,
  rawDefaults,
} from "../policy/admit.ts";
import { isAllowed } from "../policy/allowlist.ts";
import { type ConcurrencyPlan, defaultReuseWithinMs } from "../policy/concurrency.ts";
import { formatDuration, parseDuration } from "../policy/duration.ts";
import { redact } from "../policy/redact.ts";
import { compareText } from "../policy/text.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import type { Metrics } from "../runtime/metrics.ts";
import { isTrimmed, wholeMeasure } from "../runtime/trim.ts";
import { isLegacyRunning, isTerminal, type Reason, withSucceeded } from "./conditions.ts";
import { comesBefore, type KeyWait, KeyWaiters, type Place, placeOf } from "./key-waiters.ts";
import {
  concurrencyKeyLabel,
  finalizer,
  formatKey,
  isValidLabelValue,
  legacyFinalizer,
  managedByLabel,
  managedByValue,
  parseKey,
  pipelineRunName,
  queueDeadlineAnnotation,
  type RequestKey,
  requestAnnotation,
  requestNameLabel,
  requestNamespaceLabel,
  requestUidLabel,
  supersededByAnnotation,
  workspaceAnnotation,
} from "./naming.ts";
import { buildPipelineRun, copyResults, pendingStatus, runStartedAt, runState } from "./pipelinerun.ts";
import { DeletionPace, keepFinishedMs } from "./retention.ts";
import { type KeyHolder, type RunSlots, rawPipelineGroup, slotGroup, tenantOf } from "./slots.ts";
import { Part } from "./summary.ts";

/** One remote workspace: where requests live. */
export interface WorkspaceAccess {
  name: string;
  /** Tenants create such workspaces themselves (kcp): allow-list entries must name it (see admit). */
  namedOnly?: boolean;
  requests: Resources<InternalRequest>;
  /** Informer cache lookup by "namespace/name". */
  getRequest(key: string): InternalRequest | undefined;
  /** Our own write's result into the cache ahead of its watch event (see Reflector.observe). */
  observe(request: InternalRequest): void;
  /** A Tekton run, still going, that the request belongs to (see liveReferrer); undefined: none. */
  referrer(request: InternalRequest): Promise<string | undefined>;
  events: Pick<EventRecorder, "record">;
}

/** The private cluster: where services, the config and internal PipelineRuns live. */
export interface PrivateAccess {
  namespace: string;
  pipelineRuns: Resources<V1PipelineRun>;
  taskRuns: Resources<V1TaskRun>;
  /** A run of ours by name, in whichever namespace it runs (names are unique: see pipelineRunName);
   *  not one this process deleted that the cache still shows (slots.isDeleted). */
  findPipelineRun(name: string): V1PipelineRun | undefined;
  /** The cache of runs in `namespace` has its first list: runs there can be counted and found. */
  watchesRunsIn(namespace: string): boolean;
  getService(name: string): InternalService | undefined;
  getConfig(): InternalServicesConfig | undefined;
  /** Concurrency slots, following the cache of internal PipelineRuns. */
  slots: RunSlots;
}

export interface RequestReconcilerDeps {
  workspaces: { get(name: string): WorkspaceAccess | undefined };
  private: PrivateAccess;
  metrics: Metrics;
  now?: Clock;
  /** The workspace the original Go controller served: only its requests' Go runs are followed (they
   *  name no workspace). Unset or "": none are. */
  goWorkspace?: string;
  /** Test-only fault injection: called right after an internal PipelineRun is created. */
  afterCreate?: () => void;
  /**
   * How often a request queued behind a service's concurrency limit looks again, as a safety net:
   * a finishing run wakes the waiting requests at once. Default 2 s.
   */
  queuedRecheckMs?: number;
}

const defaultQueuedRecheckMs = 2_000;
/** How often a request waiting for a run namespace's cache looks again. */
const namespaceRecheckMs = 5_000;
/** How often a finished request that cannot go yet (a Tekton run still refers to it) is looked at. */
const referrerRecheckMs = 5 * 60_000;
/** How often a run the Go controller started is looked at (no watch of ours sees it). */
const legacyPollMs = 10_000;

/** No finalizer is set any more (deletion is the run sweep's); earlier versions' and the Go
 *  controller's are removed where found, so their requests can go. */
const hasOldFinalizer = (r: InternalRequest) =>
  r.metadata.finalizers?.some((f) => f === finalizer || f === legacyFinalizer) ?? false;

/** A run the Go controller made for `request`: its labels name the request, and it is not older. */
function isLegacyRunOf(run: V1PipelineRun, request: InternalRequest): boolean {
  const labels = run.metadata?.labels ?? {};
  const created = (x: { creationTimestamp?: unknown } | undefined) =>
    Date.parse(String(x?.creationTimestamp ?? "")) || 0;
  return (
    labels[managedByLabel] !== managedByValue &&
    labels[requestNameLabel] === request.metadata.name &&
    labels[requestNamespaceLabel] === request.metadata.namespace &&
    created(run.metadata) >= created(request.metadata)
  );
}

/** What deleting a run needs of it (name, namespace, uid), and nothing a large run carries. */
function identityRun(run: V1PipelineRun): V1PipelineRun {
  const { name, namespace, uid } = run.metadata ?? {};
  return { apiVersion: run.apiVersion, kind: run.kind, metadata: { name, namespace, uid } };
}

/** The work-queue key of a request in workspace `ws`. */
function keyOf(ws: WorkspaceAccess, request: InternalRequest): string {
  return formatKey({
    workspace: ws.name,
    namespace: request.metadata.namespace ?? "",
    name: request.metadata.name ?? "",
  });
}

/** A request's concurrency key, and the other request's run it waits for or took results from (none:
 *  null, which a merge patch removes). */
function keyStatus(
  keyed: ConcurrencyPlan,
  pipelineRun: string | null = null,
  request: string | null = null,
): Pick<InternalRequestStatus, "concurrency"> {
  const other = { pipelineRun, request } as { pipelineRun?: string; request?: string };
  return { concurrency: { key: keyed.key, policy: keyed.policy, ...other } };
}

/** The "namespace/name" of a run's request (its annotation, written only by this controller). */
const requestOfRun = (run: V1PipelineRun) => run.metadata?.annotations?.[requestAnnotation] ?? "";

/** A request larger than this (labels, annotations and spec; characters) is Rejected unread. Every
 *  spec the CRD allows fits; only metadata stuffed by a tenant can pass it. */
export const maxRequestChars = 512 * 1024;
/** An internal PipelineRun larger than this (JSON characters) is never written. */
export const maxPipelineRunChars = 256 * 1024;

export class RequestReconciler {
  readonly #d: RequestReconcilerDeps;
  readonly #now: Clock;
  /** Requests queued behind a concurrency limit (by key, oldest first): their group, queue deadline
   *  and what they decided on (see #version). */
  readonly #waitingForSlot = new Map<string, { group: string; deadline: number; version: string }>();
  /** When each tenant last took a slot of a limited group (a sequence number; only tenants that took
   *  one while others waited, and the last one), so that free slots go round the tenants. */
  readonly #servedAt = new Map<string, Map<string, number>>();
  #served = 0;
  /** Requests waiting for the run of their concurrency key to end. */
  readonly #waitingForKey = new KeyWaiters();
  /** Finished requests due for deletion (requestRetention), by key: the moment each may go. */
  readonly #retiring = new Map<string, number>();
  readonly #deletions = new DeletionPace();
  /** Runs the Go controller started whose deletion failed once their request finished, by request
   *  key: no watch of ours shows them, so the retried reconcile finds them here (one entry per such
   *  run, dropped once it is deleted or the request is gone). */
  readonly #goRunsLeft = new Map<string, V1PipelineRun>();

  constructor(deps: RequestReconcilerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** The requests the free slots of `group` go to (a run of it finished), in fair order (see
   *  #nextForSlots), to try again; not all: a woken request is read again (whole). Each keeps its
   *  place until it takes a slot or ends. */
  nextWaitingForSlot(group: string): RequestKey[] {
    const free = this.#freeSlots(group, this.#d.private.getConfig()?.spec);
    return free > 0 ? this.#nextForSlots(group, free).map(parseKey) : [];
  }

  /** Request `key` took a slot of `group`: its tenant goes to the back of the round. With nobody else
   *  waiting, the round so far no longer matters: only this tenant is kept. */
  #tookSlot(group: string, key: string): void {
    const served = this.#othersWaitFor(group, key) ? (this.#servedAt.get(group) ?? new Map()) : new Map();
    served.set(tenantOf(key), ++this.#served);
    this.#servedAt.set(group, served);
  }

  /** Whether requests other than `key` wait for a slot of `group`. */
  #othersWaitFor(group: string, key: string): boolean {
    for (const [other, w] of this.#waitingForSlot) if (w.group === group && other !== key) return true;
    return false;
  }

  /**
   * The requests waiting for a slot of `group` that its next `free` slots go to, in order: first the
   * tenant (workspace and namespace) with the fewest runs of the group, then the one that took a slot
   * least lately, then the one whose request has waited longest; within a tenant, its
   * longest-waiting request. The slots go round the tenants: one with many requests waiting cannot
   * hold the others back.
   */
  #nextForSlots(group: string, free: number): string[] {
    const queues = new Map<string, { at: number; key: string }[]>();
    let at = 0;
    for (const [key, w] of this.#waitingForSlot) {
      at++;
      if (w.group !== group) continue;
      const tenant = tenantOf(key);
      const queue = queues.get(tenant);
      if (queue) queue.push({ at, key });
      else queues.set(tenant, [{ at, key }]);
    }
    const running = this.#d.private.slots.inUseByTenant(group);
    const served = new Map(this.#servedAt.get(group));
    let next = this.#served;
    const chosen: string[] = [];
    while (chosen.length < free && queues.size > 0) {
      let best: { tenant: string; runs: number; served: number; at: number } | undefined;
      for (const [tenant, queue] of queues) {
        const c = {
          tenant,
          runs: running.get(tenant) ?? 0,
          served: served.get(tenant) ?? -1,
          at: (queue[0] as { at: number }).at,
        };
        if (
          !best ||
          c.runs < best.runs ||
          (c.runs === best.runs && (c.served < best.served || (c.served === best.served && c.at < best.at)))
        )
          best = c;
      }
      const { tenant } = best as { tenant: string };
      const queue = queues.get(tenant) as { at: number; key: string }[];
      chosen.push((queue.shift() as { key: string }).key);
      if (queue.length === 0) queues.delete(tenant);
      running.set(tenant, (running.get(tenant) ?? 0) + 1);
      served.set(tenant, ++next);
    }
    return chosen;
  }

  /** The requests waiting for a run of concurrency key `hash` to end (it did). Queue: the oldest (the
   *  others keep waiting behind it); Supersede: every one (the newest runs, the others give way);
   *  Reuse: every one (each takes its results). */
  nextWaitingForKey(hash: string): RequestKey[] {
    const waiting = this.#waitingForKey.waiting(hash);
    const first = waiting[0] === undefined ? undefined : this.#waitingForKey.get(waiting[0]);
    if (first?.policy !== "Queue") return waiting.map(parseKey);
    const oldest = this.#waitingForKey.ends(hash)?.oldest;
    return oldest ? [parseKey(oldest)] : [];
  }

  reconcile = async (requestKey: RequestKey, log: Logger): Promise<ReconcileResult | undefined> => {
    const { workspace: wsName, namespace, name } = requestKey;
    const key = formatKey(requestKey);
    const ws = this.#d.workspaces.get(wsName);
    if (!ws) return undefined;
    let request = ws.getRequest(`${namespace}/${name}`);
    if (!request) {
      // Deleted: the run sweep cancels and deletes its run (see reconcileRun).
      this.#d.private.slots.releaseFor(key);
      this.#waitingForSlot.delete(key);
      this.#waitingForKey.delete(key);
      this.#retiring.delete(key);
      this.#goRunsLeft.delete(key);
      return undefined;
    }
    const finished = isTerminal(request.status);
    const deleting = request.metadata.deletionTimestamp !== undefined;
    // The private run is always the one derived from the request's uid, whatever its public status says
    // (or, for a request the Go controller started, the one it names, checked: see #legacyRun).
    const runName = pipelineRunName(ws.name, name, request.metadata.uid as string);
    // Finished or going, with nothing of ours left (an earlier version's finalizer, the Go controller's
    // when going, or a run in the private cache): nothing to do, and nothing to read.
    const finalizers = request.metadata.finalizers ?? [];
    const leftovers =
      finalizers.includes(finalizer) ||
      (deleting && finalizers.includes(legacyFinalizer)) ||
      this.#d.private.findPipelineRun(runName) !== undefined ||
      this.#goRunsLeft.has(key);
    if ((finished || deleting) && !leftovers)
      return finished && !deleting ? this.#retire(key, ws, request, log) : undefined;
    // Status writes build on the conditions (finalizer removals read the list whole themselves).
    request = await this.#complete(ws, request, Part.conditions);
    if (!request) return undefined;

    if (deleting) return this.#finalize(ws, request, runName, log);
    if (finished) return this.#cleanUpFinished(ws, request, runName, log);
    if (request.spec.status === "Cancelled") return this.#cancel(ws, request, runName, log);
    // Once recorded, a run missing from the cache is looked up live. One created but not recorded (a
    // crash in between) is in the cache, synced before any worker starts, or its create gets a 409.
    const live = request.status?.pipelineRun !== undefined;
    const run = await this.#requestRun(ws, request, runName, live);
    if (run === "unfollowed") return this.#unfollowed(ws, request, runName, log);
    if (run === "foreign") {
      const named = request.status?.pipelineRun?.split("/")[1] ?? runName;
      return this.#foreignRun(ws, request, runName, named, log);
    }
    if (run || request.status?.pipelineRun) return this.#followRun(ws, request, runName, run, log);
    return this.#start(key, ws, request, runName, log);
  };

  // --- new requests ---------------------------------------------------------------------------

  async #start(key: string, ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    const caller = this.#caller(ws, request);
    const config = this.#d.private.getConfig();
    // Decided from the cached copy alone, so a request nobody may make is never read whole.
    const early = callerRejection({ ...caller, request: request.spec }) ?? this.#oversize(request);
    if (early) return this.#reject(ws, request, early, log);
    // Known to wait for a slot that is still taken, or that goes to others first (#nextForSlots):
    // nothing to read or write until one frees (a finishing run wakes the next in line) or the queue
    // deadline comes. Unless the request or its policy changed meanwhile (see #version): it decides again.
    const version = this.#version(request);
    const waiting = this.#waitingForSlot.get(key);
    if (waiting?.version === version && this.#now() < waiting.deadline) {
      const free = this.#freeSlots(waiting.group, config?.spec);
      if (free <= 0 || !this.#nextForSlots(waiting.group, free).includes(key))
        return requeueAfter(Math.min(this.#recheckMs, waiting.deadline - this.#now()));
    }
    // Likewise for a request waiting for the run of its concurrency key (see #keyWaitStands).
    const keyWait = this.#waitingForKey.get(key);
    if (
      keyWait?.version === version &&
      this.#now() < keyWait.deadline &&
      this.#keyWaitStands(key, keyWait, runName)
    )
      return requeueAfter(Math.min(this.#recheckMs, keyWait.deadline - this.#now()));
    const whole = await this.#complete(ws, request, Part.spec, Part.labels);
    if (!whole) return undefined;
    request = whole;
    const admission = admit({ ...caller, request: request.spec, labels: request.metadata.labels });
    if (!admission.allowed) return this.#reject(ws, request, admission, log);
    const plan = admission.run;

    const runNamespace = plan.namespace ?? this.#d.private.namespace;
    const run = buildPipelineRun({
      name: runName,
      namespace: runNamespace,
      workspace: ws.name,
      request,
      plan,
      volumeClaim: config?.spec?.volumeClaim,
    });
    const size = JSON.stringify(run).length;
    if (size > maxPipelineRunChars) {
      const message = `the internal PipelineRun would be ${size} characters, over the limit of ${maxPipelineRunChars}: send less data in spec.params (pass large data by reference)`;
      return this.#reject(ws, request, { rule: "PipelineRunTooLarge", message }, log);
    }
    // Until its runs there are cached, runs cannot be counted against limits, nor found after a crash.
    if (!this.#d.private.watchesRunsIn(runNamespace))
      return this.#waitForNamespace(ws, request, runName, runNamespace, plan, log);
    if (plan.concurrency) {
      const decided = await this.#sameKey(key, ws, request, runName, plan, log);
      if (decided !== "start") return decided;
    }
    const group = plan.service ?? rawPipelineGroup;
    // Where others wait for the group's slots, they go in fair order (#nextForSlots): a request not
    // waiting yet joins them (and takes part from its next look, at once), one not next waits on.
    if (this.#othersWaitFor(group, key)) {
      const inUse = this.#d.private.slots.inUse(group);
      if (!this.#waitingForSlot.has(key)) {
        const queued = await this.#waitForSlot(key, ws, request, runName, plan, inUse, log);
        return this.#waitingForSlot.has(key) ? requeueAfter(0) : queued;
      }
      const free = this.#freeSlots(group, config?.spec);
      if (!this.#nextForSlots(group, free).includes(key))
        return this.#waitForSlot(key, ws, request, runName, plan, inUse, log);
    }
    // Taken with no await before the create starts: no other worker can take the same slot, nor the
    // same concurrency key (one taken meanwhile sends the request back through the decision above).
    const slot = this.#d.private.slots.take(
      group,
      runName,
      plan.maxConcurrentRuns,
      key,
      plan.concurrency?.hash,
    );
    if ("heldBy" in slot) return requeueAfter(0);
    if (!slot.taken) return this.#waitForSlot(key, ws, request, runName, plan, slot.inUse, log);
    this.#waitingForSlot.delete(key);
    this.#waitingForKey.delete(key);
    if (plan.maxConcurrentRuns !== undefined) this.#tookSlot(group, key);

    let created: V1PipelineRun;
    try {
      created = await this.#d.private.pipelineRuns.create(runNamespace, run);
      log.info({ pipelineRun: runName }, "internal PipelineRun created");
    } catch (err) {
      const status = apiStatus(err);
      if (status && status.code >= 400 && status.code < 500 && status.code !== 409) {
        this.#d.private.slots.release(runName);
        // An admission policy's 403 is a refusal like any other, not a missing Role.
        const byPolicy = status.code === 403 && /ValidatingAdmissionPolicy/.test(status.message ?? "");
        if (status.code === 403 && !byPolicy) {
          const message = `the controller may not create PipelineRuns in namespace ${runNamespace} of the private cluster (403 Forbidden); ask the platform owners to install the run Role there`;
          log.warn({ pipelineRun: runName, namespace: runNamespace }, "internal PipelineRun forbidden");
          const finished = await this.#finish(ws, request, "Failed", message, {});
          return this.#cleanUpFinished(ws, finished, runName, log);
        }
        if (status.code === 400 || status.code === 422 || byPolicy) {
          // Refused as invalid (e.g. by Tekton's webhook or an admission policy): trying again cannot help.
          // The refusal may quote the run's params: never a sensitive one's value, even in our log.
          const secrets = plan.sensitiveParams.map((name) => plan.params[name] ?? "");
          const why = redact(describeError(err), { secrets, patterns: [] });
          log.warn({ pipelineRun: runName, err: why }, "internal PipelineRun refused");
          const message = `the private cluster refused the internal PipelineRun (${status.code} ${status.reason || "Invalid"}); ask the service owners (the controller's log has the details)`;
          const finished = await this.#finish(ws, request, "Failed", message, {});
          return this.#cleanUpFinished(ws, finished, runName, log);
        }
      }
      if (!isConflict(err)) throw err;
      // Created by an earlier attempt that crashed before recording it: adopt it, never create twice.
      created = await this.#d.private.pipelineRuns.get(runNamespace, runName);
      if (created.metadata?.labels?.[requestUidLabel] !== request.metadata.uid)
        return this.#foreignRun(ws, request, runName, runName, log);
      log.info({ pipelineRun: runName }, "adopted existing internal PipelineRun");
    }
    this.#d.afterCreate?.();
    const notes = plan.notes.length > 0 ? ` (${plan.notes.join("; ")})` : "";
    await this.#writeStatus(ws, request, {
      ...this.#running(request, `accepted; internal PipelineRun started${notes}`),
      startTime: rfc3339(this.#now()),
      pipelineRun: `${runNamespace}/${runName}`,
      ...(plan.service ? { service: plan.service } : {}),
      ...(plan.concurrency ? keyStatus(plan.concurrency) : {}),
    });
    return plan.timeouts.pipelineMs ? requeueAfter(plan.timeouts.pipelineMs) : undefined;
  }

  /**
   * Another run holds the request's concurrency key, other requests wait for it, or (Reuse) a run of it
   * succeeded lately: what the key's policy makes of it. "start": nothing stands in the way. Otherwise
   * the request ends, or waits (woken when that run ends) until its queue timeout. Every fact acted on
   * is private (the runs in the private cache, their labels and annotations) or this process's own
   * (who waits).
   */
  async #sameKey(
    key: string,
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    plan: RunPlan,
    log: Logger,
  ): Promise<ReconcileResult | undefined | "start"> {
    const keyed = plan.concurrency as ConcurrencyPlan;
    const holder = this.#holder(keyed.hash, runName);
    const me = placeOf(request);
    const ends = this.#waitingForKey.ends(keyed.hash);
    const name = (k: string) => {
      const { namespace, name } = parseKey(k);
      return `${namespace}/${name}`;
    };
    // Supersede: a newer request waits for the key: this one gives way, whether or not it runs.
    const newest = ends?.newest;
    const newer = newest !== undefined && newest !== key ? this.#waitingForKey.get(newest) : undefined;
    if (keyed.policy === "Supersede" && newer && comesBefore(me, newer)) {
      const message = `superseded by request ${name(newest as string)}, which is newer and has the same concurrency key; nothing was run`;
      return this.#superseded(
        ws,
        request,
        runName,
        message,
        keyStatus(keyed, null, name(newest as string)),
        log,
      );
    }
    if (!holder) {
      // Queue: requests waiting longer go first.
      const oldest = ends?.oldest;
      const first = oldest !== undefined && oldest !== key ? this.#waitingForKey.get(oldest) : undefined;
      if (keyed.policy === "Queue" && first && comesBefore(first, me)) {
        const message = `queued: waiting behind request ${name(oldest as string)}, which has the same concurrency key and has waited longer`;
        const status = keyStatus(keyed, null, name(oldest as string));
        return this.#waitForKey(key, ws, request, runName, plan, "", message, status, log);
      }
      this.#waitingForKey.delete(key);
      const reused = keyed.policy === "Reuse" ? this.#reusable(keyed, request) : undefined;
      if (!reused) return "start";
      const by = requestOfRun(reused);
      const at = String(reused.status?.completionTime ?? "");
      const message = `reused the results of internal PipelineRun ${reused.metadata?.namespace}/${reused.metadata?.name} (request ${by}), which succeeded at ${at} and has the same concurrency key`;
      log.info({ pipelineRun: reused.metadata?.name, request: by }, "results reused");
      const status = keyStatus(keyed, `${reused.metadata?.namespace}/${reused.metadata?.name}`, by);
      const results = copyResults(reused.status?.results);
      const finished = await this.#finish(ws, request, "Succeeded", message, results, status);
      return this.#cleanUpFinished(ws, finished, runName, log);
    }
    const run = this.#d.private.findPipelineRun(holder.run);
    const where = `${run?.metadata?.namespace ?? this.#runNamespace(request)}/${holder.run}`;
    const by = name(holder.request);
    const status = keyStatus(keyed, where, by);
    if (keyed.policy === "Supersede" && run) {
      if (!this.#holderIsOlder(ws, holder, me)) {
        const message = `superseded by request ${by}, which is newer and has the same concurrency key (its internal PipelineRun ${where} is running); nothing was run`;
        return this.#superseded(ws, request, runName, message, status, log);
      }
      if (run.spec?.status !== "Cancelled") {
        const self = `${request.metadata.namespace}/${request.metadata.name}`;
        await this.#cancelRun(run, { [supersededByAnnotation]: self });
        log.info({ pipelineRun: holder.run, request: by }, "older run of the same concurrency key cancelled");
      }
    }
    const doing = {
      Queue: `queued: waiting for request ${by} (internal PipelineRun ${where}), which has the same concurrency key, to finish`,
      Supersede: `superseding request ${by}, which has the same concurrency key: waiting for its internal PipelineRun ${where} to stop`,
      Reuse: `following internal PipelineRun ${where} of request ${by}, which has the same concurrency key: its results are this request's if it succeeds`,
    }[keyed.policy];
    // Until the run is cached a superseding request has not cancelled it: it must look again.
    const seen = keyed.policy !== "Supersede" || run !== undefined ? holder.run : "";
    return this.#waitForKey(key, ws, request, runName, plan, seen, doing, status, log);
  }

  /** The run holding concurrency key `hash`, if it is not the request's own (`runName`: reserved by
   *  an attempt whose create failed, to be tried again). */
  #holder(hash: string, runName: string): KeyHolder | undefined {
    const holder = this.#d.private.slots.keyHolder(hash);
    return holder?.run === runName ? undefined : holder;
  }

  /**
   * Whether a request waiting for its key has nothing new to decide (no reads, no writes): Queue, while
   * it is not first in line, or is and the run it names still holds the key (the first one alone names
   * the run it waits for, so a queue drains in one status write per request; one that queued behind
   * another names none, and decides as soon as it is first); Supersede, while the same run holds the
   * key and no newer request waits; Reuse, while the same run holds the key.
   */
  #keyWaitStands(key: string, wait: KeyWait, runName: string): boolean {
    const holding = this.#holder(wait.hash, runName)?.run ?? "";
    const ends = this.#waitingForKey.ends(wait.hash);
    if (wait.policy === "Queue") return ends?.oldest !== key || (wait.run !== "" && holding === wait.run);
    if (wait.policy === "Supersede") return holding === wait.run && ends?.newest === key;
    return holding === wait.run;
  }

  /** Superseded: the request ends Cancelled, unrun. */
  async #superseded(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    message: string,
    status: Pick<InternalRequestStatus, "concurrency">,
    log: Logger,
  ) {
    const finished = await this.#finish(ws, request, "Cancelled", message, {}, status);
    return this.#cleanUpFinished(ws, finished, runName, log);
  }

  /** Waits for the run `seen` ("" for none) holding the request's concurrency key, or for the requests
   *  ahead of it, until the queue timeout. */
  async #waitForKey(
    key: string,
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    plan: RunPlan,
    seen: string,
    message: string,
    status: Pick<InternalRequestStatus, "concurrency">,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const keyed = plan.concurrency as ConcurrencyPlan;
    const me = placeOf(request);
    const deadline = me.created + plan.timeouts.queueMs;
    if (this.#now() >= deadline) {
      this.#waitingForKey.delete(key);
      const what = status.concurrency?.pipelineRun
        ? `internal PipelineRun ${status.concurrency.pipelineRun} of request ${status.concurrency.request}`
        : `request ${status.concurrency?.request}`;
      const waited = `waited longer than its queue timeout (${formatDuration(plan.timeouts.queueMs)}) for ${what}, which has the same concurrency key`;
      const finished = await this.#finish(ws, request, "TimedOut", waited, {}, status);
      return this.#cleanUpFinished(ws, finished, runName, log);
    }
    const shown = request.status?.concurrency;
    let current = request;
    if (
      succeeded(request.status)?.message !== message ||
      (shown?.pipelineRun ?? null) !== (status.concurrency?.pipelineRun ?? null) ||
      shown?.key !== keyed.key
    )
      current = await this.#writeStatus(ws, request, {
        ...this.#running(request, message),
        ...(plan.service ? { service: plan.service } : {}),
        ...status,
      });
    // Recorded after the write: its resourceVersion is what the next look compares.
    this.#waitingForKey.set(key, {
      hash: keyed.hash,
      policy: keyed.policy,
      run: seen,
      deadline,
      ...me,
      version: this.#version(current),
    });
    return requeueAfter(Math.min(this.#recheckMs, deadline - this.#now()));
  }

  /** The latest cached run of the key that succeeded within its reuse window, or after the request
   *  was created (it was live then: the request followed it). */
  #reusable(keyed: ConcurrencyPlan, request: InternalRequest): V1PipelineRun | undefined {
    const created = placeOf(request).created;
    let best: V1PipelineRun | undefined;
    let bestAt = Math.min(created, this.#now() - keyed.reuseWithinMs);
    for (const name of this.#d.private.slots.succeededWith(keyed.hash)) {
      const run = this.#d.private.findPipelineRun(name);
      const at = Date.parse(String(run?.status?.completionTime ?? ""));
      if (run && at >= bestAt) [best, bestAt] = [run, at];
    }
    return best;
  }

  /** The holder's request was created before the one at `me`. One no longer cached, or replaced by a
   *  new request of the same name (the run carries its request's uid), counts as older: its run is
   *  being cancelled. */
  #holderIsOlder(ws: WorkspaceAccess, holder: KeyHolder, me: Place): boolean {
    const { namespace, name } = parseKey(holder.request);
    const them = ws.getRequest(`${namespace}/${name}`);
    if (!them || (holder.uid !== undefined && them.metadata.uid !== holder.uid)) return true;
    return comesBefore(placeOf(them), me);
  }

  /** What a waiting request decided on: its own resourceVersion (labels and params make its key) and
   *  its policy objects' (the service's, the config's). */
  #version(request: InternalRequest): string {
    const service = request.spec.service ? this.#d.private.getService(request.spec.service) : undefined;
    const config = this.#d.private.getConfig();
    return `${request.metadata.resourceVersion}/${service?.metadata?.resourceVersion}/${config?.metadata?.resourceVersion}`;
  }

  /** No concurrency slot free: say so, and wait (woken when a run finishes) until the queue timeout. */
  async #waitForSlot(
    key: string,
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    plan: RunPlan,
    inUse: number,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const who = plan.service ? `service "${plan.service}" is` : "raw pipeline requests are";
    const free = plan.maxConcurrentRuns !== undefined && inUse < plan.maxConcurrentRuns;
    const busy = `${who} running ${inUse} of at most ${plan.maxConcurrentRuns} concurrent runs${
      free
        ? "; the free slots go first to requests that have waited longer or whose namespace has fewer runs"
        : ""
    }`;
    // The queue timeout counts from the request's creation (set by the API server).
    const created = Date.parse(String(request.metadata.creationTimestamp ?? "")) || this.#now();
    const queueLeft = created + plan.timeouts.queueMs - this.#now();
    if (queueLeft <= 0) {
      const waited = `waited longer than its queue timeout (${formatDuration(plan.timeouts.queueMs)}) for a concurrency slot: ${busy}`;
      const finished = await this.#finish(ws, request, "TimedOut", waited, {});
      return this.#cleanUpFinished(ws, finished, runName, log);
    }
    const message = `queued: ${busy}`;
    let current = request;
    if (succeeded(request.status)?.message !== message || request.status?.service !== plan.service)
      current = await this.#writeStatus(ws, request, {
        ...this.#running(request, message),
        ...(plan.service ? { service: plan.service } : {}),
      });
    this.#waitingForSlot.set(key, {
      group: plan.service ?? rawPipelineGroup,
      deadline: created + plan.timeouts.queueMs,
      version: this.#version(current),
    });
    return requeueAfter(Math.min(this.#recheckMs, queueLeft));
  }

  get #recheckMs(): number {
    return this.#d.queuedRecheckMs ?? defaultQueuedRecheckMs;
  }

  /** Slots of `group` free under the current service (or config) limit. */
  #freeSlots(group: string, config: InternalServicesConfig["spec"] | undefined): number {
    const max =
      group === rawPipelineGroup
        ? (config?.rawPipelineRequests?.maxConcurrentRuns ?? rawDefaults.maxConcurrentRuns)
        : this.#d.private.getService(group)?.spec.maxConcurrentRuns;
    return max === undefined ? Number.POSITIVE_INFINITY : max - this.#d.private.slots.inUse(group);
  }

  /** A run namespace whose runs are not cached yet (the controller may lack its Role there): say so and
   *  look again, until the queue timeout. No slot is taken and nothing private is written. */
  async #waitForNamespace(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    namespace: string,
    plan: RunPlan,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const created = Date.parse(String(request.metadata.creationTimestamp ?? "")) || this.#now();
    const queueLeft = created + plan.timeouts.queueMs - this.#now();
    const what = `the controller to see PipelineRuns in namespace ${namespace} of the private cluster (it needs the run Role there: ask the platform owners)`;
    if (queueLeft <= 0) {
      const waited = `waited longer than its queue timeout (${formatDuration(plan.timeouts.queueMs)}) for ${what}`;
      const finished = await this.#finish(ws, request, "TimedOut", waited, {});
      return this.#cleanUpFinished(ws, finished, runName, log);
    }
    const message = `queued: waiting for ${what}`;
    if (succeeded(request.status)?.message !== message)
      await this.#writeStatus(ws, request, this.#running(request, message));
    return requeueAfter(Math.min(namespaceRecheckMs, queueLeft));
  }

  /** A workspace tenants create themselves (kcp) is a metric label only once the config allows it:
   *  series stay bounded by the configuration, whatever tenants make. */
  #metricWorkspace(ws: WorkspaceAccess, request: InternalRequest): string {
    if (!ws.namedOnly) return ws.name;
    const { config, namespace } = this.#caller(ws, request);
    return isAllowed(config?.allowList ?? [], ws.name, namespace, true) ? ws.name : "(not allowed)";
  }

  /**
   * A finished request with nothing of ours left, under the config's requestRetention: deleted once it
   * has been finished for its workspace's keepFinished, each deletion at its own moment of an even
   * pace, unless a Tekton run still going refers to it (then looked at again later).
   */
  async #retire(key: string, ws: WorkspaceAccess, request: InternalRequest, log: Logger) {
    const config = this.#d.private.getConfig()?.spec;
    const keep = keepFinishedMs(config, ws.name);
    if (keep === undefined) {
      this.#retiring.delete(key);
      return undefined;
    }
    const now = this.#now();
    const finishedAt = Date.parse(request.status?.completionTime ?? "") || now;
    if (now < finishedAt + keep) return requeueAfter(finishedAt + keep - now);
    let at = this.#retiring.get(key);
    if (at === undefined) {
      at = this.#deletions.reserve(now, config);
      this.#retiring.set(key, at);
    }
    if (now < at) return requeueAfter(at - now);
    this.#retiring.delete(key);
    const { namespace, name, uid } = request.metadata as Record<string, string>;
    // Read whole: the cache keeps no labels or owners of a finished request.
    const whole = await ignoreNotFound(ws.requests.get(namespace as string, name as string));
    if (!whole || whole.metadata.uid !== uid) return undefined;
    let referrer: string | undefined;
    try {
      referrer = await ws.referrer(whole);
    } catch (err) {
      referrer = `(unknown: ${describeError(err)})`;
    }
    if (referrer) {
      log.debug({ referrer }, "finished request kept: a Tekton run still going refers to it");
      return requeueAfter(referrerRecheckMs);
    }
    try {
      await ws.requests.delete(namespace as string, name as string, { uid });
    } catch (err) {
      if (apiStatus(err)?.code === 403) {
        log.warn(
          { err: describeError(err) },
          "cannot delete a finished request under requestRetention: bind the public retention Role (deploy/public/request-retention.yaml) in its namespace",
        );
        return requeueAfter(referrerRecheckMs);
      }
      if (apiStatus(err)?.code !== 404 && !isConflict(err)) throw err;
      return undefined;
    }
    log.info(
      { finishedFor: formatDuration(now - finishedAt) },
      "finished request deleted (requestRetention)",
    );
    return undefined;
  }

  /** Who asks, for admission: the request's workspace and namespace, and the policy objects now. */
  #caller(ws: WorkspaceAccess, request: InternalRequest) {
    const service = request.spec.service;
    return {
      workspace: ws.name,
      namedOnly: ws.namedOnly,
      namespace: request.metadata.namespace as string,
      config: this.#d.private.getConfig()?.spec,
      service: service ? this.#d.private.getService(service) : undefined,
    };
  }

  /** Where the request's run goes under the current policy (a run is found by name wherever it is). */
  #runNamespace(request: InternalRequest): string {
    const own = request.spec.service
      ? this.#d.private.getService(request.spec.service)?.spec.runNamespace
      : this.#d.private.getConfig()?.spec?.rawPipelineRequests?.namespace;
    return own ?? this.#d.private.namespace;
  }

  /** The controller's own size limit, judged from the cached copy (which records the whole size). */
  #oversize(request: InternalRequest): { rule: string; message: string } | undefined {
    const chars = wholeMeasure(request)?.chars ?? 0;
    if (chars <= maxRequestChars) return undefined;
    return {
      rule: "RequestTooLarge",
      message: `the InternalRequest is about ${chars} characters (labels, annotations and spec together), over the limit of ${maxRequestChars}: remove large labels and annotations, and pass large data by reference`,
    };
  }

  async #reject(
    ws: WorkspaceAccess,
    request: InternalRequest,
    why: { rule: string; message: string },
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    log.info({ rule: why.rule }, "request rejected");
    const finished = await this.#finish(ws, request, "Rejected", why.message, {});
    ws.events.record(request, "Warning", "Rejected", why.message);
    // A request of an earlier version may hold its finalizer (and a config change now rejects it).
    const runName = pipelineRunName(ws.name, request.metadata.name as string, request.metadata.uid as string);
    return this.#cleanUpFinished(ws, finished, runName, log);
  }

  /** The status names a run that is not this controller's, where Go runs are not followed (see
   *  #followsGoRuns): nothing is run for it (it may have run already), and nothing private is touched. */
  async #unfollowed(ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    const rejected = callerRejection({ ...this.#caller(ws, request), request: request.spec });
    if (rejected) return this.#reject(ws, request, rejected, log);
    const served = this.#d.goWorkspace
      ? `workspace "${this.#d.goWorkspace}"`
      : "no workspace (--go-workspace)";
    const message = `status.pipelineRun names ${request.status?.pipelineRun}, which this controller did not create; it takes over the original Go controller's runs only in the workspace that controller served (${served}), so nothing was run: create the request again`;
    const finished = await this.#finish(ws, request, "Failed", message, {});
    return this.#cleanUpFinished(ws, finished, runName, log);
  }

  /** A PipelineRun named for this request (by its uid, or in its status) that was not created for it:
   *  never acted on. */
  async #foreignRun(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    named: string,
    log: Logger,
  ) {
    log.warn({ pipelineRun: named }, "a PipelineRun named for this request belongs to another request");
    const finished = await this.#finish(
      ws,
      request,
      "Failed",
      `a PipelineRun named ${named} exists in the private cluster but was not created for this request, so nothing was run; ask the service owners to remove it`,
      {},
    );
    return this.#cleanUpFinished(ws, finished, runName, log);
  }

  // --- running requests -----------------------------------------------------------------------

  async #followRun(
    ws: WorkspaceAccess,
    request: InternalRequest,
    derivedName: string,
    run: V1PipelineRun | undefined,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    // Ours, or one the Go controller started (it has another name, and no watch of ours sees it).
    const runName = run?.metadata?.name ?? request.status?.pipelineRun?.split("/")[1] ?? derivedName;
    const legacy = run !== undefined && run.metadata?.labels?.[managedByLabel] !== managedByValue;
    if (!run) {
      const finished = await this.#finish(
        ws,
        request,
        "Failed",
        `internal PipelineRun ${runName} was deleted before it finished`,
        {},
      );
      return this.#cleanUpFinished(ws, finished, runName, log);
    }
    if (!request.status?.pipelineRun) {
      // Adopted after a crash (or a failed write) between create and the status write. Then follow
      // the run in the same pass: it may have finished meanwhile, and then no event of its own
      // would ever come again to wake this request.
      request = await this.#writeStatus(ws, request, {
        ...this.#running(request, "accepted; internal PipelineRun started"),
        startTime: run.metadata?.creationTimestamp
          ? rfc3339(new Date(run.metadata.creationTimestamp))
          : rfc3339(this.#now()),
        pipelineRun: `${run.metadata?.namespace}/${runName}`,
      });
    }
    const state = runState(run);
    if (state.done) {
      const reason = state.reason as Exclude<Reason, "Running">;
      const said = (reason === "Failed" && (await this.#failingTask(run))) || state;
      const supersededBy = run.metadata?.annotations?.[supersededByAnnotation];
      const message =
        reason === "Cancelled" && supersededBy
          ? `superseded by request ${supersededBy}, which is newer and has the same concurrency key: internal PipelineRun cancelled`
          : await this.#published(ws, request, run, said);
      const finished = await this.#finish(ws, request, reason, message, copyResults(run.status?.results));
      log.info({ reason }, "request finished");
      // Clean up in the same pass: no second trip through the queue for the same request.
      return this.#cleanUpFinished(ws, finished, runName, log, run);
    }
    // Not running yet (held pending, or not picked up): waiting, which counts against the queue timeout only.
    const started = runStartedAt(run);
    if (started === undefined) return this.#waiting(ws, request, runName, run, state.message, log);
    // Timed from when the run started (private), not from the request's status (public).
    const timeoutMs = parseDuration(String(run.spec?.timeouts?.pipeline ?? "0"));
    const remaining = started + timeoutMs - this.#now();

    if (timeoutMs > 0 && remaining <= 0) {
      const live = await this.#liveRun(run);
      if (live && runState(live).done) return this.#followRun(ws, request, derivedName, live, log);
      await this.#cancelRun(run);
      const finished = await this.#finish(
        ws,
        request,
        "TimedOut",
        `request timed out after ${run.spec?.timeouts?.pipeline}; internal PipelineRun cancelled`,
        copyResults(run.status?.results),
      );
      return this.#cleanUpFinished(ws, finished, runName, log, run);
    }
    // Until Tekton picks the run up it has no condition: keep "accepted; started" (and its notes).
    const pickedUp = succeeded(run.status) !== undefined;
    if (pickedUp && succeeded(request.status)?.message !== state.message) {
      await this.#writeStatus(ws, request, this.#running(request, state.message));
    }
    // Look again at the timeout; a run the Go controller started also on a timer (no watch sees it).
    const wait = Math.min(timeoutMs > 0 ? remaining : Infinity, legacy ? legacyPollMs : Infinity);
    return Number.isFinite(wait) ? requeueAfter(wait) : undefined;
  }

  /**
   * A run that has not started: held pending by an admission queue in the private cluster (say so),
   * or not picked up by Tekton yet. Ended at its queue deadline.
   */
  async #waiting(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    run: V1PipelineRun,
    message: string,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const held = run.spec?.status === pendingStatus;
    // A run the Go controller started has no deadline of ours: it gets the default queue timeout, from
    // the request's creation, and is looked at on a timer (no watch of ours sees it).
    const legacy = run.metadata?.labels?.[managedByLabel] !== managedByValue;
    const created = Date.parse(String(request.metadata.creationTimestamp ?? "")) || this.#now();
    const deadline = legacy
      ? created + DEFAULT_QUEUE_TIMEOUT_MS
      : Date.parse(run.metadata?.annotations?.[queueDeadlineAnnotation] ?? "");
    if (deadline && this.#now() >= deadline) {
      const live = await this.#liveRun(run);
      if (live && (runState(live).done || runStartedAt(live) !== undefined))
        return this.#followRun(ws, request, runName, live, log);
      await this.#cancelRun(run);
      const what = held ? "held pending admission in the private cluster" : "not started by Tekton";
      const why = `${what} past its queue timeout (until ${rfc3339(deadline)}); internal PipelineRun cancelled`;
      const finished = await this.#finish(ws, request, "TimedOut", why, {});
      return this.#cleanUpFinished(ws, finished, runName, log, run);
    }
    // Never touches the run's spec.status: the queue releases it, not us. Until Tekton picks a run up
    // there is nothing to say beyond "accepted; started" (and its notes).
    if (held && succeeded(request.status)?.message !== message)
      await this.#writeStatus(ws, request, this.#running(request, message));
    if (!deadline) return undefined;
    return requeueAfter(Math.min(deadline - this.#now(), legacy ? legacyPollMs : Number.POSITIVE_INFINITY));
  }

  /** spec.status "Cancelled": stop the run if there is one, and end the request as Cancelled. */
  async #cancel(ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    const found = await this.#requestRun(ws, request, runName, true);
    const run = found === "foreign" || found === "unfollowed" ? undefined : found;
    this.#d.private.slots.release(runName);
    if (run && !runState(run).done) {
      await this.#cancelRun(run);
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
    return this.#cleanUpFinished(ws, finished, runName, log, run);
  }

  /** The failing TaskRun's own reason and message, rather than Tekton's pipeline summary. */
  async #failingTask(run: V1PipelineRun): Promise<{ message: string; detail?: string } | undefined> {
    for (const child of run.status?.childReferences ?? []) {
      if (child.kind !== "TaskRun" || !child.name) continue;
      const taskRun = await this.#d.private.taskRuns
        .get(run.metadata?.namespace as string, child.name)
        .catch(() => undefined);
      const c = succeeded(taskRun?.status);
      if (c?.status === "False") {
        const message = `task ${child.pipelineTaskName ?? child.name} failed: ${c.reason || "Failed"}`;
        return c.message ? { message, detail: c.message } : { message };
      }
    }
    return undefined;
  }

  /**
   * What the public side is told of a finished run: our words, then Tekton's (private) message with
   * the request's sensitive values, credential-looking content and the config's redactPatterns taken
   * out (see policy/redact.ts); only our words when the service publishes reasons only, or when the
   * sensitive values cannot be read.
   */
  async #published(
    ws: WorkspaceAccess,
    request: InternalRequest,
    run: V1PipelineRun,
    said: { message: string; detail?: string },
  ): Promise<string> {
    if (!said.detail) return said.message;
    const service = this.#d.private.getService(slotGroup(run))?.spec;
    if (service?.failureMessages === "ReasonOnly") return said.message;
    const sensitive = service?.sensitiveParams ?? [];
    const whole = sensitive.length > 0 ? await this.#complete(ws, request, Part.spec) : request;
    if (!whole) return said.message;
    const defaults = (service?.paramsSchema?.properties ?? {}) as Record<string, { default?: unknown }>;
    const secrets = sensitive.flatMap((name) =>
      [whole.spec.params?.[name], defaults[name]?.default].filter(
        (v): v is string => typeof v === "string" && v !== "",
      ),
    );
    const patterns = this.#d.private.getConfig()?.spec?.redactPatterns ?? [];
    return `${said.message}: ${redact(said.detail, { secrets, patterns })}`;
  }

  // --- terminal requests ----------------------------------------------------------------------

  async #finish(
    ws: WorkspaceAccess,
    request: InternalRequest,
    reason: Exclude<Reason, "Running">,
    message: string,
    copied: { results?: Record<string, string>; dropped?: string[] },
    concurrency?: Pick<InternalRequestStatus, "concurrency">,
  ): Promise<InternalRequest> {
    const key = keyOf(ws, request);
    this.#waitingForSlot.delete(key);
    this.#waitingForKey.delete(key);
    const dropped = copied.dropped ?? [];
    const note = dropped.length > 0 ? ` (results dropped, over the size limit: ${dropped.join(", ")})` : "";
    const status: InternalRequestStatus = {
      conditions: withSucceeded(
        request.status?.conditions,
        { status: reason === "Succeeded" ? "True" : "False", reason, message: `${message}${note}` },
        request.metadata.generation,
        this.#now(),
      ),
      completionTime: rfc3339(this.#now()),
      observedGeneration: request.metadata.generation,
      ...(copied.results ? { results: copied.results } : {}),
      ...(dropped.length > 0 ? { droppedResults: dropped } : {}),
      ...(concurrency ?? (request.status?.concurrency ? { concurrency: request.status.concurrency } : {})),
    };
    const updated = await this.#writeStatus(ws, request, status);
    const service = this.#metricService(request);
    this.#d.metrics.requestOutcomes.inc({ workspace: this.#metricWorkspace(ws, request), service, reason });
    const started = Date.parse(request.status?.startTime ?? "");
    if (started) this.#d.metrics.requestDuration.observe({ service, reason }, (this.#now() - started) / 1000);
    // Events are for what a person must look at (Rejected is recorded where it is decided); the
    // request's status already says it started and succeeded.
    if (reason !== "Rejected" && reason !== "Succeeded")
      ws.events.record(request, "Warning", reason, `${message}${note}`);
    return updated;
  }

  /** A metric label that names something that exists privately, never free text from a tenant. */
  #metricService(request: InternalRequest): string {
    if (request.spec.pipeline !== undefined) return rawPipelineGroup;
    const name = request.spec.service;
    return name !== undefined && this.#d.private.getService(name) ? name : "(none)";
  }

  /**
   * After the outcome is recorded: delete the run per retention (kept with debug), then drop an old
   * finalizer. The run is the one just followed, else the cached one: a finished request's run was
   * created long before, and any later event of it wakes the request again (no live reads here, which
   * a tenant rewriting its request could otherwise drive).
   */
  async #cleanUpFinished(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    log: Logger,
    followed?: V1PipelineRun,
  ) {
    this.#d.private.slots.release(runName);
    const old = hasOldFinalizer(request);
    const key = keyOf(ws, request);
    const run = followed ?? this.#goRunsLeft.get(key) ?? (await this.#ownRun(request, runName, false));
    if (!old && !run) return undefined; // nothing left: no writes
    if (!this.#d.private.getConfig()?.spec?.debug) {
      if (run && run !== "foreign") {
        // A run the Go controller started goes when its request finishes (nothing of ours watches it).
        const legacy = run.metadata?.labels?.[managedByLabel] !== managedByValue;
        const keepMs = legacy ? 0 : this.#keepFinishedMs(run);
        // When the run finished (private), not what the request's status says (public).
        const finishedAt =
          Date.parse(String(run.status?.completionTime ?? "")) ||
          Date.parse(request.status?.completionTime ?? "") ||
          this.#now();
        const wait = finishedAt + keepMs - this.#now();
        if (wait > 0) return requeueAfter(wait);
        try {
          await this.#deleteRun(run);
        } catch (err) {
          if (legacy) this.#goRunsLeft.set(key, identityRun(run));
          throw err;
        }
        this.#goRunsLeft.delete(key);
        log.info({ pipelineRun: runName }, "finished internal PipelineRun deleted");
      }
    }
    if (old) await this.#removeFinalizer(ws, request);
    return undefined;
  }

  /** Retention of the service that ran it (read from the run, not from the request's public status);
   *  a succeeded run of a Reuse key at least for its reuse window: its results are handed out. */
  #keepFinishedMs(run: V1PipelineRun): number {
    const group = slotGroup(run);
    const raw = group === rawPipelineGroup;
    const service = raw ? undefined : this.#d.private.getService(group)?.spec;
    const concurrency = raw
      ? this.#d.private.getConfig()?.spec?.rawPipelineRequests?.concurrency
      : service?.concurrency;
    const reused =
      concurrency?.policy === "Reuse" &&
      run.metadata?.labels?.[concurrencyKeyLabel] !== undefined &&
      runState(run).reason === "Succeeded";
    const ms = (text: string | undefined, otherwise: number) => {
      try {
        return text ? parseDuration(text) : otherwise;
      } catch {
        return otherwise;
      }
    };
    const keep = ms(service?.retention?.keepFinishedPipelineRuns, 0);
    // At least a minute: the requests that followed it take its results when it ends.
    const window = reused ? Math.max(ms(concurrency.reuseWithin, defaultReuseWithinMs), 60_000) : 0;
    return Math.max(keep, window);
  }

  /** A request being deleted that an old finalizer holds: cancel its running PipelineRun (and delete it
   *  unless debug), then let it go. */
  async #finalize(ws: WorkspaceAccess, request: InternalRequest, runName: string, log: Logger) {
    this.#d.private.slots.release(runName);
    const run = await this.#requestRun(ws, request, runName, true);
    if (run && run !== "foreign" && run !== "unfollowed") {
      if (!runState(run).done) {
        await this.#cancelRun(run);
        log.info({ pipelineRun: runName }, "request deleted; internal PipelineRun cancelled");
      }
      if (!this.#d.private.getConfig()?.spec?.debug) await this.#deleteRun(run);
    }
    if (hasOldFinalizer(request)) await this.#removeFinalizer(ws, request);
    return undefined;
  }

  // --- private runs whose request is gone -------------------------------------------------------

  /**
   * Reconciles one internal PipelineRun (key: its name): a run whose request no longer exists — deleted
   * while the controller runs (woken by the deletion) or while it was down (every run is looked at
   * once cached) — is cancelled and deleted (kept with debug). Every other run is its request's.
   */
  reconcileRun = async (runName: string, log: Logger): Promise<ReconcileResult | undefined> => {
    const run = this.#d.private.findPipelineRun(runName);
    const ws = this.#d.workspaces.get(run?.metadata?.annotations?.[workspaceAnnotation] ?? "");
    const [namespace, name] = (run?.metadata?.annotations?.[requestAnnotation] ?? "").split("/");
    const uid = run?.metadata?.labels?.[requestUidLabel];
    // Another workspace's (not served here), or not one of ours: not ours to judge.
    if (!run || !ws || !namespace || !name || !uid) return undefined;
    if (ws.getRequest(`${namespace}/${name}`)?.metadata.uid === uid) return undefined;
    // Not in the cache (or replaced there): make sure with a live read before acting.
    const live = await ignoreNotFound(ws.requests.get(namespace, name));
    if (live?.metadata.uid === uid) return undefined;
    if (!runState(run).done) {
      await this.#cancelRun(run);
      log.info(
        { pipelineRun: runName, request: `${namespace}/${name}` },
        "request gone; internal PipelineRun cancelled",
      );
    }
    if (!this.#d.private.getConfig()?.spec?.debug) {
      await this.#deleteRun(run);
      log.info({ pipelineRun: runName }, "internal PipelineRun of a request that is gone deleted");
    }
    return undefined;
  };

  // --- reads and writes -----------------------------------------------------------------------

  /** The request whole when the cached copy lacks any of `parts`; undefined if it is gone (or was
   *  replaced by a new object of the same name, which gets a reconcile of its own). */
  async #complete(
    ws: WorkspaceAccess,
    request: InternalRequest,
    ...parts: string[]
  ): Promise<InternalRequest | undefined> {
    if (!isTrimmed(request, ...parts)) return request;
    const { namespace, name, uid } = request.metadata as Record<string, string>;
    const whole = await ignoreNotFound(ws.requests.get(namespace as string, name as string));
    return whole?.metadata.uid === uid ? whole : undefined;
  }

  /**
   * The run of a request: its own (see #ownRun), or, for one the Go controller started before this
   * controller took over, the run its status names or that carries its name and namespace labels.
   */
  async #requestRun(
    ws: WorkspaceAccess,
    request: InternalRequest,
    runName: string,
    live: boolean,
  ): Promise<V1PipelineRun | "foreign" | "unfollowed" | undefined> {
    const recorded = request.status?.pipelineRun;
    // Only the name is compared: the run is looked up by it in the namespaces the policy runs in, never
    // in the namespace the (public) status names.
    const another = recorded !== undefined && recorded.split("/")[1] !== runName;
    if (!this.#followsGoRuns(ws, request))
      return another ? "unfollowed" : this.#ownRun(request, runName, live);
    if (another) return this.#legacyRun(request, recorded);
    if (!recorded && isLegacyRunning(request.status)) {
      const found = await this.#findLegacyRun(request);
      if (found) return found;
    }
    return this.#ownRun(request, runName, live);
  }

  /** Runs the Go controller started name no workspace, and were admitted by no policy of ours: they
   *  are followed only for requests of the workspace it served, from callers the config allows. */
  #followsGoRuns(ws: WorkspaceAccess, request: InternalRequest): boolean {
    if (ws.name !== this.#d.goWorkspace) return false;
    return callerRejection({ ...this.#caller(ws, request), request: request.spec }) === undefined;
  }

  /**
   * A run the Go controller started, named in the request's status ("namespace/name"). Public status
   * names it, so it is checked against private facts: in the controller's namespace, not one of ours,
   * labelled with this request's name and namespace (as the Go controller labels its runs), and
   * created after the request. Anything else is "foreign".
   */
  async #legacyRun(
    request: InternalRequest,
    recorded: string,
  ): Promise<V1PipelineRun | "foreign" | undefined> {
    const [namespace, name] = recorded.split("/");
    if (namespace !== this.#d.private.namespace || !name) return "foreign";
    const run = await ignoreNotFound(this.#d.private.pipelineRuns.get(namespace, name));
    if (!run) return undefined;
    return isLegacyRunOf(run, request) ? run : "foreign";
  }

  /** The Go controller's run of a request in its "running" shape that names none (created, not yet recorded). */
  async #findLegacyRun(request: InternalRequest): Promise<V1PipelineRun | undefined> {
    const { name, namespace } = request.metadata as Record<string, string>;
    if (!isValidLabelValue(name as string) || !isValidLabelValue(namespace as string)) return undefined;
    const labelSelector = `${requestNameLabel}=${name},${requestNamespaceLabel}=${namespace}`;
    const found = await this.#d.private.pipelineRuns.listAll(this.#d.private.namespace, labelSelector);
    return found
      .filter((r) => isLegacyRunOf(r, request))
      .sort((a, b) =>
        compareText(String(b.metadata?.creationTimestamp), String(a.metadata?.creationTimestamp)),
      )[0];
  }

  /**
   * The request's own run: the cached copy, else (when `live`) the API server's. A run with the
   * derived name that does not carry the request's uid is "foreign" and never acted on.
   */
  async #ownRun(
    request: InternalRequest,
    runName: string,
    live: boolean,
  ): Promise<V1PipelineRun | "foreign" | undefined> {
    const run =
      this.#d.private.findPipelineRun(runName) ??
      (live
        ? await ignoreNotFound(this.#d.private.pipelineRuns.get(this.#runNamespace(request), runName))
        : undefined);
    if (!run) return undefined;
    return run.metadata?.labels?.[requestUidLabel] === request.metadata.uid ? run : "foreign";
  }

  #running(request: InternalRequest, message: string): InternalRequestStatus {
    return {
      conditions: withSucceeded(
        request.status?.conditions,
        { status: "Unknown", reason: "Running", message },
        request.metadata.generation,
        this.#now(),
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

  /** Removes an earlier version's finalizer, and the Go controller's (this controller has taken its
   *  requests over). */
  async #removeFinalizer(ws: WorkspaceAccess, cached: InternalRequest) {
    const request = await this.#complete(ws, cached, Part.finalizers);
    if (!request) return;
    const { namespace, name, resourceVersion } = request.metadata as Record<string, string>;
    const finalizers = (request.metadata.finalizers ?? []).filter(
      (f) => f !== finalizer && f !== legacyFinalizer,
    );
    const updated = await ignoreNotFound(
      ws.requests.mergePatch(namespace as string, name as string, {
        metadata: { finalizers, resourceVersion },
      }),
    );
    if (updated) ws.observe(updated);
  }

  /**
   * The run as the API server has it now (undefined if it is gone or was replaced): read before a
   * deadline ends a request, since the cached copy may be behind (a watch event lost on the way).
   */
  async #liveRun(run: V1PipelineRun): Promise<V1PipelineRun | undefined> {
    const { namespace, name, uid } = run.metadata as { namespace: string; name: string; uid?: string };
    const live = await ignoreNotFound(this.#d.private.pipelineRuns.get(namespace, name));
    return live?.metadata?.uid === uid ? live : undefined;
  }

  /** The uid in the patch is a precondition: a different object under the same name refuses it. */
  async #cancelRun(run: V1PipelineRun, annotations?: Record<string, string>) {
    const name = run.metadata?.name as string;
    await ignoreNotFound(
      this.#d.private.pipelineRuns.mergePatch(run.metadata?.namespace as string, name, {
        metadata: { uid: run.metadata?.uid, ...(annotations ? { annotations } : {}) },
        spec: { status: "Cancelled" },
      }),
    ).catch((err: unknown) => {
      throw new Error(`cancelling PipelineRun ${name}: ${describeError(err)}`);
    });
  }

  async #deleteRun(run: V1PipelineRun) {
    const uid = run.metadata?.uid;
    const name = run.metadata?.name as string;
    await ignoreNotFound(
      this.#d.private.pipelineRuns.delete(run.metadata?.namespace as string, name, uid ? { uid } : undefined),
    );
    // Until the cache sees it go, reconciles woken meanwhile must not delete it again. Only while the
    // cache shows it: then its deletion event, which clears the mark, is still to come.
    if (this.#d.private.findPipelineRun(name)) this.#d.private.slots.markDeleted(name);
  }
}
