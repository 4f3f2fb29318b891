// Go duration strings (time.ParseDuration / Duration.String), the format Tekton and our CRDs use.

const US = 1_000n;
const MS = 1_000_000n;
const S = 1_000_000_000n;
const M = 60n * S;
const H = 60n * M;
const NS_PER_UNIT: Record<string, bigint> = { ns: 1n, us: US, µs: US, μs: US, ms: MS, s: S, m: M, h: H };
const MAX_NS = 2n ** 63n - 1n; // Go's time.Duration is an int64 of nanoseconds
// One "<number><unit>" component; Go accepts "1.h" and ".5h" but not "." alone.
const COMPONENT = /^([0-9]*)(?:\.([0-9]*))?([^0-9.]*)/;

/** Parses a Go duration ("1h30m", "1.5h", "500ms", "0") to milliseconds; throws an Error saying why not. */
export function parseDuration(text: string): number {
  const fail = (why: string) =>
    new Error(
      `invalid duration ${JSON.stringify(text)}: ${why}; use a Go duration such as 45s or 1h30m (units: ns, us, ms, s, m, h)`,
    );
  const sign = text.startsWith("-") ? -1 : 1;
  let rest = /^[-+]/.test(text) ? text.slice(1) : text;
  if (rest === "0") return 0;
  if (rest === "") throw fail("it is empty");
  // Integer nanoseconds, as Go computes them, so "0.3s" is exactly 300 ms.
  let ns = 0n;
  while (rest !== "") {
    const [matched = "", whole = "", frac = "", unit = ""] = COMPONENT.exec(rest) ?? [];
    if (whole + frac === "") throw fail(`expected a number at ${JSON.stringify(rest)}`);
    if (unit === "") throw fail(`missing unit after ${JSON.stringify(matched)}`);
    const perUnit = NS_PER_UNIT[unit];
    if (perUnit === undefined) throw fail(`unknown unit ${JSON.stringify(unit)}`);
    ns += BigInt(whole || "0") * perUnit;
    if (frac !== "") ns += (BigInt(frac) * perUnit) / 10n ** BigInt(frac.length);
    if (ns > MAX_NS) throw fail("it is longer than Go allows (about 292 years)");
    rest = rest.slice(matched.length);
  }
  return (sign * Number(ns)) / 1e6;
}

/** Formats milliseconds as Go's Duration.String does: "1h30m0s", "1m30.5s", "500ms", "0s". */
export function formatDuration(ms: number): string {
  const total = BigInt(Math.round(ms * 1e6));
  const sign = total < 0n ? "-" : "";
  const ns = total < 0n ? -total : total;
  if (ns === 0n) return "0s";
  if (ns < US) return `${sign}${ns}ns`;
  if (ns < MS) return `${sign}${decimal(ns, US)}µs`;
  if (ns < S) return `${sign}${decimal(ns, MS)}ms`;
  const h = ns / H;
  const m = (ns % H) / M;
  const s = decimal(ns % M, S);
  if (h > 0n) return `${sign}${h}h${m}m${s}s`;
  if (m > 0n) return `${sign}${m}m${s}s`;
  return `${sign}${s}s`;
}

/** value/unit as a decimal without trailing zeros, exactly. */
function decimal(value: bigint, unit: bigint): string {
  const whole = value / unit;
  const frac = value % unit;
  if (frac === 0n) return `${whole}`;
  const digits = unit.toString().length - 1;
  return `${whole}.${frac.toString().padStart(digits, "0").replace(/0+$/, "")}`;
}
