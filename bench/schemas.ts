// `node bench/schemas.ts`: worst-case time of one params validation (src/policy/schema.ts) on adversarial
// input, as a tenant can send it: values up to 64 KiB (the CRD's cap per value; 128 KiB per request). It
// covers service patterns built to backtrack (on the RE2 engine, next to native RegExp on inputs capped to
// what it can finish), every ajv-formats format, and a wide schema. Each figure is the worst of 3 runs after
// a warm-up, which also compiles the schema. Runs in well under 30 s on 2 cores.
import { fullFormats } from "ajv-formats/dist/formats.js";
import { validateParams } from "../src/policy/schema.ts";

const KiB = 1024;
const MAX_VALUE = 64 * KiB;
/** Stop growing a native RegExp's input once one run takes this long: the next could take hours. */
const NATIVE_BUDGET_MS = 100;

function timeMs(run: () => void): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

function worstMs(run: () => void, runs = 3): number {
  run(); // warm-up: compiles the schema, lets the JIT settle
  let worst = 0;
  for (let i = 0; i < runs; i++) worst = Math.max(worst, timeMs(run));
  return worst;
}

/** `unit` repeated between `prefix` and `suffix` to exactly `length` characters (or just under). */
function fill(length: number, unit: string, prefix = "", suffix = ""): string {
  const count = Math.floor((length - prefix.length - suffix.length) / unit.length);
  return prefix + unit.repeat(count) + suffix;
}

const fmt = (ms: number) => `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`.padStart(10);

// ---- Catastrophic patterns ----

type Catastrophe = { pattern: string; value: (length: number) => string };
const catastrophes: Catastrophe[] = [
  { pattern: "^(a+)+$", value: (n) => fill(n, "a", "", "!") },
  { pattern: "^(a|aa)+$", value: (n) => fill(n, "a", "", "!") },
  { pattern: "^(a|a?)+$", value: (n) => fill(n, "a", "", "!") },
  { pattern: "(x+x+)+y", value: (n) => fill(n, "x") },
  { pattern: "^(\\w+\\s?)*$", value: (n) => fill(n, "a", "", "!") },
  { pattern: "^([a-z0-9]+[-.]?)*[a-z0-9]+@example\\.com$", value: (n) => fill(n, "a", "", "!") },
  { pattern: "^(.*a){12}$", value: (n) => fill(n, "a", "", "b") },
  // The worst case for RE2 itself: a DFA with 2^20 states, so it falls back to the NFA.
  { pattern: "^(a|b)*a(a|b){20}$", value: (n) => fill(n, "ab") },
  { pattern: "^[\\s\\S]*x[\\s\\S]*y[\\s\\S]*z$", value: (n) => fill(n, "xy") },
];

function re2Ms(pattern: string, value: string): number {
  const schema = { properties: { v: { type: "string", pattern } } };
  return worstMs(() => validateParams(schema, { v: value }));
}

/** Native RegExp on ever longer inputs until one run exceeds the budget or the input reaches 64 KiB. */
function nativeCapped({ pattern, value }: Catastrophe): { ms: number; length: number; capped: boolean } {
  const re = new RegExp(pattern, "u");
  let length = 4;
  let ms = 0;
  for (;;) {
    ms = timeMs(() => re.test(value(length)));
    if (ms > NATIVE_BUDGET_MS || length >= MAX_VALUE) return { ms, length, capped: length < MAX_VALUE };
    // One character at a time while short (exponential patterns double per character), then by an eighth.
    length = Math.min(MAX_VALUE, length < 64 ? length + 1 : length + Math.ceil(length / 8));
  }
}

function benchPatterns(): void {
  console.log("\nService patterns, worst of 3 per value (RE2 engine, through validateParams)");
  console.log(`${"pattern".padEnd(48)}${"4 KiB".padStart(10)}${"64 KiB".padStart(10)}   native RegExp`);
  for (const c of catastrophes) {
    const native = nativeCapped(c);
    const nativeText = native.capped
      ? `${fmt(native.ms).trim()} at only ${native.length} chars (input capped: longer would not finish)`
      : `${fmt(native.ms).trim()} at 64 KiB (not capped)`;
    const small = re2Ms(c.pattern, c.value(4 * KiB));
    const large = re2Ms(c.pattern, c.value(MAX_VALUE));
    console.log(`${c.pattern.padEnd(48)}${fmt(small)}${fmt(large)}   ${nativeText}`);
  }
}

// ---- Formats ----

// Shapes that make regex-based checks backtrack: long runs of characters each check accepts in several
// places, after the prefixes that lead into its deeper alternatives, ending in a character that fails.
const prefixes = [
  "",
  "a:",
  "a://",
  "http://",
  "http://a@",
  "a@",
  "#",
  "0",
  "P",
  "2020-01-01T",
  "00:00:00.",
  "::",
];
const units = ["a", "1", ":", "/", ".", "-", "@", "%", "a.", "a-", "ff:", "{a}", "AAAA", "\n", " ", "ä"];
const suffixes = ["", "\\"];
const adversarial = prefixes.flatMap((p) =>
  units.flatMap((u) => suffixes.map((s) => fill(MAX_VALUE, u, p, s))),
);

function worstFormat(schema: Record<string, unknown>): { ms: number; value: string } {
  // One run over every shape, then the worst of 3 on the three slowest.
  const once = adversarial.map((v) => ({ value: v, ms: timeMs(() => validateParams(schema, { v })) }));
  const slowest = once.sort((a, b) => b.ms - a.ms).slice(0, 3);
  return slowest
    .map(({ value }) => ({ value, ms: worstMs(() => validateParams(schema, { v: value })) }))
    .reduce((a, b) => (b.ms > a.ms ? b : a));
}

const show = (value: string) => `${JSON.stringify(value.slice(0, 14))}…`;

function benchFormats(): void {
  console.log("\najv-formats formats on adversarial 64 KiB values, worst of 3 (through validateParams)");
  for (const [name, def] of Object.entries(fullFormats)) {
    if (def === true) {
      console.log(`${name.padEnd(28)}${"-".padStart(10)}   no check (annotation only)`);
      continue;
    }
    if (typeof def === "object" && !(def instanceof RegExp) && def.type === "number") {
      // A number format sees only values our reader accepted: the 64 KiB digit string is rejected first.
      const schema = { properties: { v: { type: "integer", format: name } } };
      const ms = worstMs(() => validateParams(schema, { v: "9".repeat(MAX_VALUE) }));
      console.log(`${name.padEnd(28)}${fmt(ms)}   number format: 64 KiB of digits`);
      continue;
    }
    const { ms, value } = worstFormat({ properties: { v: { type: "string", format: name } } });
    const note = name === "url" ? " (over the 2048 cap: rejected before the check, see below)" : "";
    console.log(`${name.padEnd(28)}${fmt(ms)}   worst on ${show(value)}${note}`);
  }
  for (const name of ["date", "time", "date-time", "iso-time", "iso-date-time"]) {
    const limit = name.includes("date") ? "2020-01-01T00:00:00Z" : "12:00:00Z";
    const schema = { properties: { v: { type: "string", format: name, formatMinimum: limit } } };
    const { ms, value } = worstFormat(schema);
    console.log(`${`${name} + formatMinimum`.padEnd(28)}${fmt(ms)}   worst on ${show(value)}`);
  }
}

function benchUrl(): void {
  const url = fullFormats.url as RegExp;
  const value = fill(MAX_VALUE, ":", "http://");
  console.log("\najv-formats url (quadratic), bounded to 2048 characters in schema.ts");
  console.log(`${"url check, 64 KiB, no cap".padEnd(40)}${fmt(timeMs(() => url.test(value)))}   (1 run)`);
  console.log(`${"url check, 2048 chars".padEnd(40)}${fmt(worstMs(() => url.test(value.slice(0, 2048))))}`);
  // The request that costs most under the cap: values of 2048 characters up to the CRD's 128 KiB total.
  const schema = { additionalProperties: { type: "string", format: "url" } };
  const params = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`u${i}`, value.slice(0, 2048)]));
  console.log(
    `${"request: 64 url params x 2048 chars".padEnd(40)}${fmt(worstMs(() => validateParams(schema, params)))}`,
  );
}

// ---- Typed params ----

function benchTyped(): void {
  console.log("\nTyped params: reading 64 KiB non-canonical values, worst of 3");
  const schema = { properties: { i: { type: "integer" }, n: { type: "number" }, b: { type: "boolean" } } };
  const cases: [string, string][] = [
    ["i", "9".repeat(MAX_VALUE)],
    ["i", fill(MAX_VALUE, "f", "0x")],
    ["n", fill(MAX_VALUE, "0", "0.", "1")],
    ["n", fill(MAX_VALUE, "1", "", "e-1")],
    ["b", fill(MAX_VALUE, " ", "true")],
  ];
  for (const [name, value] of cases) {
    const ms = worstMs(() => validateParams(schema, { [name]: value }));
    console.log(
      `${`${name === "i" ? "integer" : name === "n" ? "number" : "boolean"} ${show(value)}`.padEnd(40)}${fmt(ms)}`,
    );
  }
}

// ---- A wide schema ----

function benchWide(): void {
  const kinds = [
    { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 1024 },
    { type: "integer", minimum: 0, maximum: 1_000_000 },
    { type: "number", exclusiveMinimum: 0 },
    { type: "boolean", default: false },
    { enum: ["stage", "prod", "dev"] },
    { type: "string", format: "uri" },
    { type: "string", pattern: "^(a|aa)+$" },
    { type: "string", minLength: 1 },
  ];
  const values = ["my-app", "42", "1.5", "true", "prod", "https://example.com/x", "aaaa", "x"];
  const bad = ["My_App!", "042", "1.50", "yes", "qa", "not a uri", "aab", ""];
  const properties = Object.fromEntries(
    Array.from({ length: 256 }, (_, i) => [`p${i}`, kinds[i % kinds.length]]),
  );
  const schema = { type: "object", required: Object.keys(properties).slice(0, 64), properties };
  const request = (texts: string[]) =>
    Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`p${i}`, texts[i % texts.length] as string]));
  // Long values: 256 params of 512 characters (the CRD's 128 KiB total), in the string params' own shapes.
  const long = request([
    "a".repeat(511),
    "1",
    "1.5",
    "true",
    "prod",
    `https://x/${"a".repeat(500)}`,
    "a".repeat(511),
    "x".repeat(512),
  ]);

  console.log("\nA schema with 256 properties (8 kinds, with patterns and formats) and 256-param requests");
  const fresh = { ...schema, title: "uncached" };
  console.log(
    `${"compile (first request)".padEnd(40)}${fmt(timeMs(() => validateParams(fresh, request(values))))}`,
  );
  console.log(`${"valid request".padEnd(40)}${fmt(worstMs(() => validateParams(schema, request(values))))}`);
  console.log(
    `${"request with 256 errors".padEnd(40)}${fmt(worstMs(() => validateParams(schema, request(bad))))}`,
  );
  console.log(
    `${"request of 128 KiB (256 x 512 chars)".padEnd(40)}${fmt(worstMs(() => validateParams(schema, long)))}`,
  );
}

const started = performance.now();
console.log(`Params validation, worst cases (node ${process.version})`);
benchPatterns();
benchFormats();
benchUrl();
benchTyped();
benchWide();
console.log(`\nTotal ${((performance.now() - started) / 1000).toFixed(1)} s`);
