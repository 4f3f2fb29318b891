// Bounded cache entries for objects tenants write. A reflector's transform keeps the fixed-size parts
// of an object and the variable-size parts that fit a small budget; the parts it leaves out are
// recorded, so a reconcile that needs one reads the whole object from the API server first. The
// cache then costs a bounded amount per object however large tenants make them.
import type { KubernetesObject, V1ObjectMeta } from "@kubernetes/client-node";
import { type Measured, measure } from "./size.ts";

const info = Symbol("cache-trim");
const unlimited = { maxChars: Number.POSITIVE_INFINITY, maxDepth: Number.POSITIVE_INFINITY };

interface TrimInfo {
  /** Parts left out of the cached copy. */
  parts: Set<string>;
  /** Size and depth of the whole object as received (see measure). */
  whole: Measured;
}

type Marked = { [info]?: TrimInfo };

/** Variable-size parts of one cached object share this many characters. */
export const cacheBudgetChars = 1024;

/** Collects the variable-size parts of one object while they fit the budget. */
export class Budget {
  #left: number;
  readonly #parts = new Set<string>();

  constructor(chars = cacheBudgetChars) {
    this.#left = chars;
  }

  /** `value` if it fits what is left of the budget (which it then uses), else undefined and `part` is
   *  recorded as left out. Whole or nothing: a partial list written back would lose entries. */
  take<V>(part: string, value: V | undefined): V | undefined {
    if (value === undefined) return undefined;
    const m = measure(value, { maxChars: this.#left, maxDepth: 16 });
    if (m.exceeded) {
      this.#parts.add(part);
      return undefined;
    }
    this.#left -= m.chars;
    return value;
  }

  /** Records `part` as left out without offering it (e.g. a list kept only partly, for reading). */
  leaveOut(part: string): void {
    this.#parts.add(part);
  }

  /** Marks `kept` (the cached copy of `whole`) with what was left out and how big `whole` was. */
  seal<T extends KubernetesObject>(kept: T, whole: KubernetesObject): T {
    (kept as Marked)[info] = { parts: this.#parts, whole: measure(whole, unlimited) };
    return kept;
  }
}

/** Whether the cached `obj` lacks any of `parts` (then read the whole object before using them). */
export function isTrimmed(obj: KubernetesObject, ...parts: string[]): boolean {
  const trim = (obj as Marked)[info];
  return trim !== undefined && parts.some((p) => trim.parts.has(p));
}

/** Size and depth of the whole object the cached copy was made from; undefined if no Budget made it. */
export function wholeMeasure(obj: KubernetesObject): Measured | undefined {
  return (obj as Marked)[info]?.whole;
}

/** The fixed-size identity of an object every cached copy keeps (the API server bounds each field). */
export function identityOf(m: V1ObjectMeta): V1ObjectMeta {
  return {
    name: m.name,
    namespace: m.namespace,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
    generation: m.generation,
    creationTimestamp: m.creationTimestamp,
    deletionTimestamp: m.deletionTimestamp,
  };
}
