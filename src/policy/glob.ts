// Globs for allow-lists: `*` matches any run of characters except `/`, `**` matches any run of characters
// including `/`, every other character matches itself. A glob must match the whole value.

export type Matcher = (value: string) => boolean;

const compiled = new Map<string, Matcher>();
const MAX_CACHED = 4096; // globs come from a few config objects; the bound only guards against churn

/** Compiles `pattern` once (cached) into a whole-value matcher. */
export function compileGlob(pattern: string): Matcher {
  let matcher = compiled.get(pattern);
  if (matcher) return matcher;
  const source = pattern
    .split(/(\*\*|\*)/)
    .map((part) => (part === "**" ? "[\\s\\S]*" : part === "*" ? "[^/]*" : escapeRegExp(part)))
    .join("");
  const re = new RegExp(`^${source}$`, "u");
  matcher = (value) => re.test(value);
  if (compiled.size >= MAX_CACHED) compiled.clear();
  compiled.set(pattern, matcher);
  return matcher;
}

/** Whether `value` matches `pattern` as a whole. */
export function globMatch(pattern: string, value: string): boolean {
  return compileGlob(pattern)(value);
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}
