// Concurrency limits and keys that hold under any interleaving: a slot (and the run's concurrency key)
// is taken before the create (workers share one event loop, so the check and the reservation happen
// with nothing in between), and a run created but not yet seen by the private cache still holds
// them. At start the cache of private runs is synced before any worker runs, so runs created by an
// earlier process count too.
import type { V1PipelineRun } from "../generated/tekton.ts";
import {
  concurrencyKeyLabel,
  requestAnnotation,
  requestUidLabel,
  serviceAnnotation,
  workspaceAnnotation,
} from "./naming.ts";
import { runState } from "./pipelinerun.ts";

/** The slot group of raw pipeline requests (service names cannot contain parentheses). */
export const rawPipelineGroup = "(pipeline)";

/** Which limit a run counts against: its service (the annotation only this controller writes), or
 *  the raw-pipeline group. */
export function slotGroup(run: V1PipelineRun): string {
  return run.metadata?.annotations?.[serviceAnnotation] ?? rawPipelineGroup;
}

/** A run holding a concurrency key: its name, and its request's key ("workspace/namespace/name") and
 *  uid (unknown while this process is creating it). */
export interface KeyHolder {
  run: string;
  request: string;
  uid?: string;
}

export class RunSlots {
  /** Unfinished runs as the private cache shows them, by group: their tenants (see tenantOf). */
  readonly #live = new Map<string, Map<string, string>>();
  /** Runs this process is creating or has created that the cache does not show yet, by name. */
  readonly #pending = new Map<string, { group: string; request: string; key?: string }>();
  /** Unfinished runs as the private cache shows them, by concurrency key (one each; more only if the
   *  exclusion ever failed). */
  readonly #liveByKey = new Map<string, KeyHolder[]>();
  /** Succeeded runs still cached, by concurrency key: their results may be reused. */
  readonly #succeededByKey = new Map<string, Set<string>>();
  /** Runs this process deleted that the cache still shows (until their deletion event). */
  readonly #deleted = new Set<string>();

  /** Follows the private cache: call for every change of one of our runs (deleted: gone). */
  observe(run: V1PipelineRun, deleted: boolean): void {
    const name = run.metadata?.name as string;
    const group = slotGroup(run);
    this.#pending.delete(name);
    if (deleted) this.#deleted.delete(name);
    const state = deleted ? undefined : runState(run);
    const live = this.#live.get(group) ?? new Map<string, string>();
    if (!state || state.done) live.delete(name);
    else live.set(name, tenantOf(requestOf(run)));
    if (live.size > 0) this.#live.set(group, live);
    else this.#live.delete(group);

    const key = run.metadata?.labels?.[concurrencyKeyLabel];
    if (!key) return;
    const holders = (this.#liveByKey.get(key) ?? []).filter((h) => h.run !== name);
    const uid = run.metadata?.labels?.[requestUidLabel];
    if (state && !state.done) holders.push({ run: name, request: requestOf(run), ...(uid ? { uid } : {}) });
    if (holders.length > 0) this.#liveByKey.set(key, holders);
    else this.#liveByKey.delete(key);
    const succeeded = this.#succeededByKey.get(key) ?? new Set<string>();
    if (state?.reason === "Succeeded") succeeded.add(name);
    else succeeded.delete(name);
    if (succeeded.size > 0) this.#succeededByKey.set(key, succeeded);
    else this.#succeededByKey.delete(key);
  }

  /** The run that holds concurrency key `key` (live, or being created by this process), if any. */
  keyHolder(key: string): KeyHolder | undefined {
    const live = this.#liveByKey.get(key)?.[0];
    if (live) return live;
    for (const [run, p] of this.#pending) if (p.key === key) return { run, request: p.request };
    return undefined;
  }

  /** Names of the cached succeeded runs of concurrency key `key`. */
  succeededWith(key: string): string[] {
    return [...(this.#succeededByKey.get(key) ?? [])];
  }

  /** Runs holding a slot of `group`. */
  inUse(group: string): number {
    let n = this.#live.get(group)?.size ?? 0;
    for (const p of this.#pending.values()) if (p.group === group) n++;
    return n;
  }

  /** Runs holding a slot of `group`, by tenant (see tenantOf). */
  inUseByTenant(group: string): Map<string, number> {
    const counts = new Map<string, number>();
    const count = (tenant: string) => counts.set(tenant, (counts.get(tenant) ?? 0) + 1);
    for (const tenant of this.#live.get(group)?.values() ?? []) count(tenant);
    for (const p of this.#pending.values()) if (p.group === group) count(tenantOf(p.request));
    return counts;
  }

  /**
   * Takes a slot of `group`, and concurrency key `key` if it has one, for run `name` of `request`
   * (its key) when fewer than `max` are in use and no other run holds the key (or it holds them
   * already). Says how many were in use when no slot is free, or which run holds the key.
   */
  take(
    group: string,
    name: string,
    max: number | undefined,
    request: string,
    key?: string,
  ): { taken: true } | { taken: false; inUse: number } | { taken: false; heldBy: KeyHolder } {
    if (this.#pending.has(name) || this.#live.get(group)?.has(name)) return { taken: true };
    // One pending slot per request key: an earlier request of the same name (deleted and made
    // again before its create went through) gives its slot back.
    this.releaseFor(request);
    const holder = key ? this.keyHolder(key) : undefined;
    if (holder) return { taken: false, heldBy: holder };
    const inUse = this.inUse(group);
    if (max !== undefined && inUse >= max) return { taken: false, inUse };
    this.#pending.set(name, { group, request, ...(key ? { key } : {}) });
    return { taken: true };
  }

  /** Gives back the slot of a run that will not be created (its create failed, or its request ended). */
  release(name: string): void {
    this.#pending.delete(name);
  }

  /** Gives back the slots a request (by key) holds for runs not created yet: the request is gone. */
  releaseFor(request: string): void {
    for (const [name, p] of this.#pending) if (p.request === request) this.#pending.delete(name);
  }

  /** Run `name` was deleted by this process while the cache shows it: for every reconcile it is gone
   *  (deleting it again would be a wasted write). */
  markDeleted(name: string): void {
    this.#deleted.add(name);
  }

  isDeleted(name: string): boolean {
    return this.#deleted.has(name);
  }

  /** Runs holding slots, by group (for the active-runs metric). */
  byGroup(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [group, runs] of this.#live) counts.set(group, runs.size);
    for (const { group } of this.#pending.values()) counts.set(group, (counts.get(group) ?? 0) + 1);
    return counts;
  }
}

/** Whom a request (its key, "workspace/namespace/name") is made by: its workspace and namespace. */
export function tenantOf(request: string): string {
  return request.slice(0, request.lastIndexOf("/"));
}

/** The key of a run's request, from its annotations (written only by this controller). */
function requestOf(run: V1PipelineRun): string {
  const a = run.metadata?.annotations ?? {};
  return `${a[workspaceAnnotation] ?? ""}/${a[requestAnnotation] ?? ""}`;
}
