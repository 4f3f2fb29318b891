// Helpers for the user-facing text of admission decisions.

// C0/C1 controls, DEL, and invisible format characters (soft hyphen, zero-width, bidi overrides,
// line/paragraph separators, BOM) that could hide or reorder text in a status message, terminal or log.
const UNSAFE_RANGES: [number, number][] = [
  [0x00, 0x1f],
  [0x7f, 0x9f],
  [0xad, 0xad],
  [0x200b, 0x200f],
  [0x2028, 0x202e],
  [0x2060, 0x2069],
  [0xfeff, 0xfeff],
];
const isUnsafe = (cp: number) => UNSAFE_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);

/** Orders strings by UTF-16 code unit, the same in every locale (`localeCompare` would also load ICU's
 *  collation data: ~3 MB of resident memory). */
export const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Double-quotes `s` for a message, escaping quotes and unsafe characters (but not backslashes, so regex
 *  patterns stay readable). Long strings are shortened. */
export function quote(s: string, max = 200): string {
  const chars = Array.from(s);
  const escaped = chars.slice(0, max).map((c) => {
    const cp = c.codePointAt(0) ?? 0;
    if (c === '"') return '\\"';
    return isUnsafe(cp) ? `\\u${cp.toString(16).padStart(4, "0")}` : c;
  });
  return `"${escaped.join("")}${chars.length > max ? "…" : ""}"`;
}

/** "a, b, c and 7 more": lists at most `max` items so messages stay readable. */
export function listCapped(items: readonly string[], max = 10, separator = ", "): string {
  if (items.length <= max) return items.join(separator);
  return `${items.slice(0, max).join(separator)} and ${items.length - max} more`;
}
