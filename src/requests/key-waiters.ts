// Requests waiting for the run of their concurrency key to end, by key: who goes first (Queue: the
// oldest request) and who wins (Supersede: the newest). Age is the request's creation, then its uid,
// so every process orders them alike, also after a restart.
import type { InternalRequest } from "../generated/crds.ts";
import type { ConcurrencyPolicy } from "../policy/concurrency.ts";

/** A request's place among the requests of its concurrency key: its creation (ms), then its uid. */
export interface Place {
  created: number;
  uid: string;
}

export const placeOf = (request: InternalRequest): Place => ({
  created: Date.parse(String(request.metadata.creationTimestamp ?? "")) || 0,
  uid: request.metadata.uid ?? "",
});

export const comesBefore = (a: Place, b: Place) =>
  a.created !== b.created ? a.created < b.created : a.uid < b.uid;

export interface KeyWait extends Place {
  hash: string;
  policy: ConcurrencyPolicy;
  /** The run it saw holding the key ("" if none). */
  run: string;
  deadline: number;
  /** The request's and its policy objects' resourceVersions when it last decided: a change (its labels,
   *  the service) makes it decide again. */
  version: string;
}

export class KeyWaiters {
  readonly #byRequest = new Map<string, KeyWait>();
  readonly #byHash = new Map<string, Set<string>>();
  /** Oldest and newest waiter of a key, computed when first asked after a change. */
  readonly #ends = new Map<string, { oldest: string; newest: string }>();

  get(request: string): KeyWait | undefined {
    return this.#byRequest.get(request);
  }

  set(request: string, wait: KeyWait): void {
    this.delete(request);
    this.#byRequest.set(request, wait);
    const keys = this.#byHash.get(wait.hash) ?? new Set<string>();
    keys.add(request);
    this.#byHash.set(wait.hash, keys);
    this.#ends.delete(wait.hash);
  }

  delete(request: string): void {
    const wait = this.#byRequest.get(request);
    if (!wait) return;
    this.#byRequest.delete(request);
    const keys = this.#byHash.get(wait.hash);
    keys?.delete(request);
    if (keys?.size === 0) this.#byHash.delete(wait.hash);
    this.#ends.delete(wait.hash);
  }

  /** The request (key) waiting longest for `hash`, and the newest one. */
  ends(hash: string): { oldest: string; newest: string } | undefined {
    const known = this.#ends.get(hash);
    if (known) return known;
    let oldest: [string, KeyWait] | undefined;
    let newest: [string, KeyWait] | undefined;
    for (const request of this.#byHash.get(hash) ?? []) {
      const wait = this.#byRequest.get(request) as KeyWait;
      if (!oldest || comesBefore(wait, oldest[1])) oldest = [request, wait];
      if (!newest || comesBefore(newest[1], wait)) newest = [request, wait];
    }
    if (!oldest || !newest) return undefined;
    const ends = { oldest: oldest[0], newest: newest[0] };
    this.#ends.set(hash, ends);
    return ends;
  }

  /** Every request waiting for `hash`. */
  waiting(hash: string): string[] {
    return [...(this.#byHash.get(hash) ?? [])];
  }
}
