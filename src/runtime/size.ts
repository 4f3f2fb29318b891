// How big and how deep a parsed JSON value is, without recursion: tenant objects can nest thousands
// of levels (a recursive walk, JSON.stringify included, overflows the stack) and carry megabytes.

export interface Measured {
  /** Characters of keys and strings plus a few per number, boolean, null and container. */
  chars: number;
  /** Nesting depth: 0 for a scalar, 1 for a flat object or array. */
  depth: number;
  /** The walk stopped early because a limit was passed (chars and depth are then lower bounds). */
  exceeded: boolean;
}

/** Walks `value` until it has seen all of it or passed `maxChars` or `maxDepth`. */
export function measure(value: unknown, limits: { maxChars: number; maxDepth: number }): Measured {
  let chars = 0;
  let depth = 0;
  const stack: [unknown, number][] = [[value, 0]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [v, level] = next;
    if (typeof v === "string") chars += v.length + 2;
    else if (v === null || typeof v !== "object") chars += 4;
    else {
      const d = level + 1;
      if (d > depth) depth = d;
      chars += 2;
      if (Array.isArray(v)) for (const item of v) stack.push([item, d]);
      else
        for (const [k, item] of Object.entries(v)) {
          chars += k.length + 3;
          stack.push([item, d]);
        }
    }
    if (chars > limits.maxChars || depth > limits.maxDepth) return { chars, depth, exceeded: true };
  }
  return { chars, depth, exceeded: false };
}
