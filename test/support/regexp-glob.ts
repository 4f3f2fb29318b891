// The glob matcher this project used before (a backtracking RegExp): the reference for the new
// matcher's semantics in tests, and its old cost in the matchers benchmark.

/** `*` -> [^/]*, `**` -> [\s\S]*, everything else literal, anchored at both ends. */
export function regexpGlobMatch(pattern: string, value: string): boolean {
  const source = pattern
    .split(/(\*\*|\*)/)
    .map((part) =>
      part === "**" ? "[\\s\\S]*" : part === "*" ? "[^/]*" : part.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&"),
    )
    .join("");
  return new RegExp(`^${source}$`, "u").test(value);
}
