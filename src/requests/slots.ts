// Concurrency limits that hold under any interleaving: a slot is taken before the create (workers
// share one event loop, so the check and the reservation happen with nothing in between), and a run
// created but not yet seen by the private cache still holds its slot. At start the cache of private
// runs is synced before any worker runs, so runs created by an earlier process count too.
import type { V1PipelineRun } from "../generated/tekton.ts";
import { serviceAnnotation } from "./naming.ts";
import { runState } from "./pipelinerun.ts";

/** The slot group of raw pipeline requests (service names cannot contain parentheses). */
export const rawPipelineGroup = "(pipeline)";

/** Which limit a run counts against: its service (the annotation only this controller writes), or
 *  the raw-pipeline group. */
export function slotGroup(run: V1PipelineRun): string {
  return run.metadata?.annotations?.[serviceAnnotation] ?? rawPipelineGroup;
}

export class RunSlots {
  /** Unfinished runs as the private cache shows them, by group. */
  readonly #live = new Map<string, Set<string>>();
  /** Runs this process is creating or has created that the cache does not show yet, by name. */
  readonly #pending = new Map<string, { group: string; request: string }>();

  /** Follows the private cache: call for every change of one of our runs (deleted: gone). */
  observe(run: V1PipelineRun, deleted: boolean): void {
    const name = run.metadata?.name as string;
    const group = slotGroup(run);
    this.#pending.delete(name);
    const live = this.#live.get(group) ?? new Set<string>();
    if (deleted || runState(run).done) live.delete(name);
    else live.add(name);
    if (live.size > 0) this.#live.set(group, live);
    else this.#live.delete(group);
  }

  /** Runs holding a slot of `group`. */
  inUse(group: string): number {
    let n = this.#live.get(group)?.size ?? 0;
    for (const p of this.#pending.values()) if (p.group === group) n++;
    return n;
  }

  /**
   * Takes a slot of `group` for run `name` of `request` (its key) when fewer than `max` are in use (or
   * it holds one already). Returns how many were in use when none is free.
   */
  take(
    group: string,
    name: string,
    max: number | undefined,
    request: string,
  ): { taken: true } | { taken: false; inUse: number } {
    if (this.#pending.has(name) || this.#live.get(group)?.has(name)) return { taken: true };
    // One pending slot per request key: an earlier request of the same name (deleted and made
    // again before its create went through) gives its slot back.
    this.releaseFor(request);
    const inUse = this.inUse(group);
    if (max !== undefined && inUse >= max) return { taken: false, inUse };
    this.#pending.set(name, { group, request });
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

  /** Runs holding slots, by group (for the active-runs metric). */
  byGroup(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [group, names] of this.#live) counts.set(group, names.size);
    for (const { group } of this.#pending.values()) counts.set(group, (counts.get(group) ?? 0) + 1);
    return counts;
  }
}
