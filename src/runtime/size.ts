// How big and how deep a parsed JSON value is, without recursion: tenant objects can nest thousands
// of levels (a recursive walk, JSON.stringify included, overflows the stack) and carry megabytes.
// Every watch event of a request is measured, so the walk allocates nothing: its stack is reused.

export interface Measured {
  /** Characters of keys and strings plus a few per number, boolean, null and container. */
  chars: number;
  /** Nesting depth: 0 for a scalar, 1 for a flat object or array. */
  depth: number;
  /** The walk stopped early because a limit was passed (chars and depth are then lower bounds). */
  exceeded: boolean;
}

// The walk's stack, kept between calls (a walk never calls out, so never two at once); given back
// when a huge value grew it.
let values: unknown[] = [];
let levels: number[] = [];
const keptStack = 4096;

/** Walks `value` until it has seen all of it or passed `maxChars` or `maxDepth`. */
export function measure(value: unknown, limits: { maxChars: number; maxDepth: number }): Measured {
  let chars = 0;
  let depth = 0;
  let top = 0;
  values[top] = value;
  levels[top++] = 0;
  while (top > 0) {
    const v = values[--top];
    const level = levels[top] as number;
    values[top] = undefined;
    if (typeof v === "string") chars += v.length + 2;
    else if (v === null || typeof v !== "object") chars += 4;
    else {
      const d = level + 1;
      if (d > depth) depth = d;
      chars += 2;
      if (Array.isArray(v))
        for (const item of v) {
          values[top] = item;
          levels[top++] = d;
        }
      else
        for (const k in v) {
          chars += k.length + 3;
          values[top] = (v as Record<string, unknown>)[k];
          levels[top++] = d;
        }
    }
    if (chars > limits.maxChars || depth > limits.maxDepth) {
      release(top);
      return { chars, depth, exceeded: true };
    }
  }
  release(0);
  return { chars, depth, exceeded: false };
}

/** Drops what the stack still holds, and the stack itself if a huge value grew it. */
function release(top: number) {
  if (values.length > keptStack) {
    values = [];
    levels = [];
  } else values.fill(undefined, 0, top);
}
