// Validates an InternalRequest's spec.params against its InternalService's paramsSchema (JSON Schema).
//
// Params arrive as strings and leave as strings (PipelineRun params), so the value a private PipelineRun
// receives must be exactly the value the schema checked: a param the schema types as integer, number or
// boolean is converted only from its one canonical spelling (anything else is rejected, never coerced),
// checked as that JSON value, and passed on as the same text. Service patterns run on RE2 (linear time):
// patterns are written by service owners but run on tenants' values, up to 64 KiB each.
import { Ajv, type CodeOptions, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats, { type FormatName } from "ajv-formats";
import { RE2JS } from "re2js";
import { listCapped, quote } from "./text.ts";

export type ParamsResult =
  | { ok: true; params: Record<string, string> }
  /** The request's params break the schema: one plain sentence per problem. */
  | { ok: false; kind: "params"; errors: string[] }
  /** The schema itself does not compile: the service owner's mistake, not the requester's. */
  | { ok: false; kind: "schema"; error: string };

type JsonType = "integer" | "number" | "boolean";
type RegExpEngine = NonNullable<CodeOptions["regExp"]>;
type RegExpLike = ReturnType<RegExpEngine>;

/** Which JSON type each param is read as (see `paramTypes`); a param not typed here stays a string. */
type ParamTypes = {
  named: Map<string, JsonType>;
  /** patternProperties keys: a param matching one is not governed by additionalProperties. */
  patterns: RegExpLike[];
  additional: JsonType | undefined;
};

type Compiled = { validate: ValidateFunction; accepts: string[]; types: ParamTypes } | { error: string };

// Keyed by the schema's JSON text, so equal schemas share one compiled validator whoever passes them,
// and an edited service (new text) gets a fresh one. Bounded, least recently used first out.
const cache = new Map<string, Compiled>();
const MAX_CACHED = 256;
let compiles = 0;

/** For tests and metrics: how many schemas were compiled so far and how many are cached. */
export function schemaCacheStats(): { compiles: number; cached: number } {
  return { compiles, cached: cache.size };
}

/** Validates `params` (string values) against `schema`, returning them with the schema's defaults filled in
 *  (as strings). Without a schema, only an empty params map is valid. Messages may quote a rejected value,
 *  except for the params named in `sensitive`. */
export function validateParams(
  schema: Record<string, unknown> | undefined,
  params: Record<string, string> | undefined,
  sensitive: readonly string[] = [],
): ParamsResult {
  const given = params ?? {};
  if (schema === undefined) {
    const errors = Object.keys(given).map(
      (name) => `unknown param ${quote(name)} (the service has no paramsSchema, so it accepts no params)`,
    );
    return errors.length > 0 ? { ok: false, kind: "params", errors } : { ok: true, params: {} };
  }
  const compiled = compile(schema);
  if ("error" in compiled) return { ok: false, kind: "schema", error: compiled.error };

  // A prototype-less copy: ajv fills defaults in place, and inherited names such as "constructor" must
  // not count as given. A param that cannot be read as its type keeps its text and its ajv errors are
  // dropped: the reading error says it better.
  const data: Record<string, unknown> = Object.create(null);
  const unreadable = new Map<string, string>();
  for (const [name, text] of Object.entries(given)) {
    const type = typeOf(compiled.types, name);
    const read = type === undefined ? { value: text } : readAs(type, text);
    data[name] = "value" in read ? read.value : text;
    if ("problem" in read) {
      const got = sensitive.includes(name) ? "" : `, got ${quote(text, 64)}`;
      unreadable.set(name, `param ${quote(name)} ${read.problem}${got}`);
    }
  }
  const valid = compiled.validate(data);
  const errors = (compiled.validate.errors ?? [])
    .filter((e) => {
      const name = paramName(e.instancePath);
      return name === undefined || !unreadable.has(name);
    })
    .map((e) => describe(e, compiled.accepts));
  if (!valid || unreadable.size > 0) {
    return { ok: false, kind: "params", errors: [...new Set([...unreadable.values(), ...errors])] };
  }
  // Exactly what was checked, as text: a string as sent, a typed value as String(value) (its canonical
  // spelling, so again as sent), a default as its JSON text. fromEntries defines own properties, so a
  // param named "__proto__" stays one.
  const out = Object.entries(data).map(([name, value]): [string, string] => [name, asString(value)]);
  return { ok: true, params: Object.fromEntries(out) };
}

// ---- Reading a param as its JSON type: canonical spellings only ----

const INTEGER = /^(0|-?[1-9][0-9]*)$/;
const JSON_NUMBER = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

type Read = { value: unknown } | { problem: string };

/** `text` as a value of `type`, if `text` is that value's one canonical spelling (String(value) === text). */
function readAs(type: JsonType, text: string): Read {
  switch (type) {
    case "boolean":
      return text === "true" || text === "false"
        ? { value: text === "true" }
        : { problem: 'must be "true" or "false" (lowercase, no spaces)' };
    case "integer":
      return readInteger(text);
    case "number":
      return readNumber(text);
  }
}

function readInteger(text: string): Read {
  if (!INTEGER.test(text)) {
    return {
      problem:
        "must be an integer written in canonical form (digits, no sign other than '-', no leading zeros, no spaces, e.g. 5)",
    };
  }
  const value = Number(text);
  return Number.isSafeInteger(value)
    ? { value }
    : { problem: `must be an integer from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}` };
}

function readNumber(text: string): Read {
  if (!JSON_NUMBER.test(text)) {
    return {
      problem:
        "must be a number written in canonical form (JSON number syntax in its shortest form, no spaces, e.g. 1.5, -2 or 1e-7)",
    };
  }
  const value = Number(text);
  if (!Number.isFinite(value)) return { problem: "is beyond the range of double-precision numbers" };
  const canonical = String(value);
  if (canonical === text) return { value };
  return sameDecimal(text, canonical)
    ? { problem: `must be a number written in canonical form (write it as ${canonical})` }
    : { problem: `has more digits than a double-precision number keeps (it would be read as ${canonical})` };
}

/** Whether two JSON number texts denote the same decimal value ("1.50" and "1.5", "-0" and "0"). */
function sameDecimal(a: string, b: string): boolean {
  return decimalKey(a) === decimalKey(b);
}

/** A JSON number text as "sign digits e exponent", the digits stripped of leading and trailing zeros. */
function decimalKey(text: string): string {
  const [, sign = "", int = "", frac = "", exp = "0"] = JSON_NUMBER.exec(text) ?? [];
  const all = int + frac;
  const digits = all.replace(/^0+/, "").replace(/0+$/, "");
  if (digits === "") return "0";
  const leadingZeros = all.length - all.replace(/^0+/, "").length;
  return `${sign}${digits}e${Number(exp) + int.length - leadingZeros}`;
}

// ---- Deciding each param's JSON type from the schema ----
// Only what the schema states directly counts: the param's own subschema under properties (or, for other
// names not matching a patternProperties key, an object-schema additionalProperties). Types reachable only
// through anyOf/oneOf/allOf/$ref/if/patternProperties are not guessed: such params stay strings, so a
// schema that types them only there rejects every value, which is safe and shows up at once.

function paramTypes(schema: Record<string, unknown>): ParamTypes {
  const named = new Map<string, JsonType>();
  for (const [name, sub] of Object.entries(objectAt(schema, "properties") ?? {})) {
    const type = jsonType(sub);
    if (type === undefined) continue;
    checkDefault(name, type, sub);
    named.set(name, type);
  }
  const patterns = Object.keys(objectAt(schema, "patternProperties") ?? {}).map((p) => re2RegExp(p, "u"));
  return { named, patterns, additional: jsonType(own(schema, "additionalProperties")) };
}

function typeOf(types: ParamTypes, name: string): JsonType | undefined {
  if (types.named.has(name)) return types.named.get(name);
  if (types.patterns.some((p) => p.test(name))) return undefined;
  return types.additional;
}

/** `type` if it is exactly integer, number or boolean (alone or as a one-element list); else, without a
 *  `type`, the type all the values of `enum` or `const` share. */
function jsonType(sub: unknown): JsonType | undefined {
  if (!isObject(sub)) return undefined;
  if (Object.hasOwn(sub, "type")) {
    const type = Array.isArray(sub.type) && sub.type.length === 1 ? sub.type[0] : sub.type;
    return type === "integer" || type === "number" || type === "boolean" ? type : undefined;
  }
  const values = Object.hasOwn(sub, "enum") ? sub.enum : Object.hasOwn(sub, "const") ? [sub.const] : [];
  if (!Array.isArray(values) || values.length === 0) return undefined;
  if (values.every((v) => typeof v === "boolean")) return "boolean";
  if (!values.every((v) => typeof v === "number")) return undefined;
  return values.every((v) => Number.isInteger(v)) ? "integer" : "number";
}

/** A default of another type than its param's would be filled in and then fail as the requester's error. */
function checkDefault(name: string, type: JsonType, sub: unknown): void {
  if (!isObject(sub) || !Object.hasOwn(sub, "default")) return;
  const value = sub.default;
  const fits = type === "integer" ? Number.isInteger(value) : typeof value === type;
  if (!fits) {
    throw new Error(`the default of param ${quote(name)} is not a JSON ${type}: ${quote(asString(value))}`);
  }
}

// ---- Compiling ----

function compile(schema: Record<string, unknown>): Compiled {
  let key: string;
  try {
    key = JSON.stringify(schema);
  } catch (err) {
    return { error: `the schema is nested too deeply: ${errorText(err)}` };
  }
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // re-insert: most recently used last
    cache.set(key, hit);
    return hit;
  }
  compiles++;
  const result = compileUncached(schema);
  if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
  cache.set(key, result);
  return result;
}

function compileUncached(schema: Record<string, unknown>): Compiled {
  // An async schema's validate returns a promise, which would always count as valid.
  if (schema.$async === true) return { error: "$async schemas are not supported" };
  // Closed unless the owner says otherwise: a typo in a param name must not be silently ignored.
  const closed = "additionalProperties" in schema ? schema : { ...schema, additionalProperties: false };
  // One Ajv per schema: services cannot see each other's $id/$ref, and evicting the entry frees it all.
  const ajv = new Ajv({
    allErrors: true,
    useDefaults: true,
    ownProperties: true,
    // Unknown keywords are tolerated (logged to nowhere), but an unknown format is an error: ignoring it
    // would accept any value the owner meant to restrict. allowMatchingProperties skips a strict check
    // that runs patternProperties keys on native RegExp.
    strict: false,
    strictSchema: "log",
    allowMatchingProperties: true,
    logger: false,
    code: { regExp: re2RegExp },
    // Keywords never read their limits from the tenant's data, and a $ref never loads anything (there is
    // no loadSchema; an unresolved $ref fails the compile).
    $data: false,
  });
  addFormats.default(ajv);
  for (const [name, check] of FORMAT_OVERRIDES) ajv.addFormat(name, check);
  try {
    const validate = ajv.compile(closed);
    const props = objectAt(schema, "properties");
    return { validate, accepts: props ? Object.keys(props) : [], types: paramTypes(schema) };
  } catch (err) {
    // Deep nesting overflows the stack in ajv's recursive compiler; the error is the owner's to fix.
    const tooDeep = err instanceof RangeError ? "the schema is nested too deeply: " : "";
    return { error: `${tooDeep}${errorText(err)}` };
  }
}

// ---- Formats ----

// ajv-formats checks whose time grows faster than linearly with the value (bench/schemas.ts: "url" takes
// ~2 s on 64 KiB); a longer value is rejected before the check runs. 2048 is the usual practical URL limit.
const FORMAT_MAX_LENGTH = new Map<FormatName, number>([["url", 2048]]);

// Where ajv-formats' checks are replaced. Its "byte" regex has the m flag, so a value passed if any of its
// lines was base64, and "anything\n" (an empty last line) always did: base64 here is the whole value.
type FormatCheck = RegExp | ((value: string) => boolean);
const FORMAT_OVERRIDES: [FormatName, FormatCheck][] = [
  ...[...FORMAT_MAX_LENGTH].map(([name, max]): [FormatName, FormatCheck] => [name, capped(name, max)]),
  ["byte", /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/],
];

function capped(name: FormatName, max: number): (value: string) => boolean {
  const check = addFormats.default.get(name);
  if (!(check instanceof RegExp)) throw new Error(`ajv-formats' ${name} format is no longer a RegExp`);
  return (value) => value.length <= max && check.test(value);
}

// ---- Patterns: ECMAScript regexes, run by RE2 ----

/** ajv's regex engine for `pattern` and `patternProperties`. JSON Schema patterns are ECMAScript regexes
 *  (ajv passes the "u" flag): the native parser checks the syntax, `toRe2` rewrites the pattern into RE2
 *  syntax with the same meaning, and re2js runs it in time linear in the value, whatever the pattern.
 *  `test` is a search, as RegExp.test. Lookaround and backreferences cannot run in linear time: such a
 *  pattern throws, which makes the schema invalid. */
export const re2RegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string): RegExpLike => {
    if (flags !== "u") throw new Error(`regex flags ${quote(flags)} are not supported (only "u")`);
    new RegExp(pattern, flags); // throws the native SyntaxError for what ECMAScript rejects
    try {
      return new Re2Pattern(RE2JS.compile(toRe2(pattern)), `/${pattern}/${flags}`);
    } catch (err) {
      throw new Error(
        `pattern ${quote(pattern)} cannot run on the linear-time regex engine: ${errorText(err)}`,
      );
    }
  },
  { code: "re2RegExp" }, // source text for ajv's standalone code generation, which is not used
);

class Re2Pattern implements RegExpLike {
  readonly #re: RE2JS;
  readonly #source: string;
  constructor(re: RE2JS, source: string) {
    this.#re = re;
    this.#source = source;
  }
  test(s: string): boolean {
    return this.#re.test(s);
  }
  /** ajv keys compiled patterns by their text: it must differ between patterns. */
  toString(): string {
    return this.#source;
  }
}

// What ECMAScript's `.` (without the s flag) and `\s` match; RE2's differ (its `.` excludes only \n, its
// `\s` is [\t\n\f\r ]).
const DOT = "[^\\x{A}\\x{D}\\x{2028}\\x{2029}]";
const SPACE_RANGES: [number, number][] = [
  [0x9, 0xd],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const SPACE = SPACE_RANGES.map(([lo, hi]) => range(lo, hi)).join("");
const NOT_SPACE = complement(SPACE_RANGES)
  .map(([lo, hi]) => range(lo, hi))
  .join("");

/** An ECMAScript pattern (valid with the u flag) in RE2 syntax with the same meaning for `test`. Every
 *  literal is written as \x{...}, so no character means something else in RE2 (such as "[:" in a class). */
function toRe2(pattern: string): string {
  const t = { p: pattern, i: 0 };
  let out = "";
  while (t.i < t.p.length) out += term(t);
  return out;
}

type Cursor = { p: string; i: number };

function term(t: Cursor): string {
  const c = t.p[t.i] as string;
  if (c === "\\") {
    const e = escapeAt(t, false);
    return typeof e === "number" ? hex(e) : e;
  }
  if (c === "[") return charClass(t);
  if (c === "(") return group(t);
  if (c === "{") {
    // A quantifier: in u-mode a literal brace must be escaped.
    const end = t.p.indexOf("}", t.i) + 1;
    const q = t.p.slice(t.i, end);
    t.i = end;
    return q;
  }
  if (c === ".") {
    t.i++;
    return DOT;
  }
  if ("^$|)*+?".includes(c)) {
    t.i++;
    return c;
  }
  const cp = t.p.codePointAt(t.i) as number;
  t.i += cp > 0xffff ? 2 : 1;
  return hex(cp);
}

function group(t: Cursor): string {
  const rest = t.p.slice(t.i, t.i + 4);
  if (!rest.startsWith("(?")) {
    t.i++;
    return "(";
  }
  if (rest.startsWith("(?:")) {
    t.i += 3;
    return "(?:";
  }
  if (/^\(\?<[=!]/.test(rest) || /^\(\?[=!]/.test(rest)) {
    throw new Error("lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not supported");
  }
  if (rest.startsWith("(?<")) {
    t.i = t.p.indexOf(">", t.i) + 1; // a named group; the name does not matter to a test
    return "(?:";
  }
  throw new Error("inline modifiers such as (?i:...) are not supported");
}

function charClass(t: Cursor): string {
  t.i++; // [
  const negated = t.p[t.i] === "^";
  if (negated) t.i++;
  let items = "";
  while (t.p[t.i] !== "]") {
    const lo = classAtom(t);
    if (typeof lo === "number" && t.p[t.i] === "-" && t.p[t.i + 1] !== "]") {
      t.i++;
      items += range(lo, classAtom(t) as number); // u-mode ranges are between single characters
    } else {
      items += typeof lo === "number" ? hex(lo) : lo;
    }
  }
  t.i++; // ]
  // [] matches nothing and [^] anything; RE2 has no empty class.
  if (items === "") return negated ? "[\\x{0}-\\x{10FFFF}]" : "[^\\x{0}-\\x{10FFFF}]";
  return `[${negated ? "^" : ""}${items}]`;
}

function classAtom(t: Cursor): number | string {
  if (t.p[t.i] === "\\") return escapeAt(t, true);
  const cp = t.p.codePointAt(t.i) as number;
  t.i += cp > 0xffff ? 2 : 1;
  return cp;
}

/** The escape at t.i: a code point, or RE2 text for a class or assertion (class items inside a class). */
function escapeAt(t: Cursor, inClass: boolean): number | string {
  const c = t.p[t.i + 1] as string;
  t.i += 2;
  switch (c) {
    case "d":
    case "D":
    case "w":
    case "W":
      return `\\${c}`; // ASCII in both engines
    case "s":
      return inClass ? SPACE : `[${SPACE}]`;
    case "S":
      return inClass ? NOT_SPACE : `[${NOT_SPACE}]`;
    case "b":
      return inClass ? 0x8 : "\\b";
    case "B":
      return "\\B";
    case "p":
    case "P":
      return property(t, c);
    case "k":
    case "1":
    case "2":
    case "3":
    case "4":
    case "5":
    case "6":
    case "7":
    case "8":
    case "9":
      throw new Error("backreferences are not supported");
    default:
      return characterEscape(t, c);
  }
}

const CONTROL_ESCAPES: Record<string, number> = { f: 0xc, n: 0xa, r: 0xd, t: 0x9, v: 0xb, "0": 0 };

function characterEscape(t: Cursor, c: string): number {
  if (Object.hasOwn(CONTROL_ESCAPES, c)) return CONTROL_ESCAPES[c] as number;
  if (c === "c") return t.p.charCodeAt(t.i++) % 32;
  if (c === "x") return hexDigits(t, 2);
  if (c === "u") {
    if (t.p[t.i] === "{") {
      const end = t.p.indexOf("}", t.i);
      const cp = Number.parseInt(t.p.slice(t.i + 1, end), 16);
      t.i = end + 1;
      return cp;
    }
    const unit = hexDigits(t, 4);
    // With the u flag an escaped surrogate pair is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && /^\\u[dD][c-fC-F][0-9a-fA-F]{2}/.test(t.p.slice(t.i, t.i + 6))) {
      t.i += 2;
      return 0x10000 + ((unit - 0xd800) << 10) + (hexDigits(t, 4) - 0xdc00);
    }
    return unit;
  }
  return t.p.codePointAt(t.i - 1) as number; // an escaped syntax character, "/" or "-"
}

function hexDigits(t: Cursor, n: number): number {
  const value = Number.parseInt(t.p.slice(t.i, t.i + n), 16);
  t.i += n;
  return value;
}

/** \p{...} / \P{...}: general categories and binary properties keep their names, Script=X becomes X. */
function property(t: Cursor, p: "p" | "P"): string {
  const end = t.p.indexOf("}", t.i);
  const body = t.p.slice(t.i + 1, end);
  t.i = end + 1;
  const [key, value] = body.includes("=") ? body.split("=") : [undefined, body];
  if (key === "Script_Extensions" || key === "scx") throw new Error(`\\${p}{${body}} is not supported`);
  return `\\${p}{${value}}`;
}

function hex(cp: number): string {
  return `\\x{${cp.toString(16).toUpperCase()}}`;
}

function range(lo: number, hi: number): string {
  return lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`;
}

function complement(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of ranges) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  out.push([next, 0x10ffff]);
  return out;
}

// ---- Messages ----

/** One ajv error as a sentence a requester can act on. */
function describe(e: ErrorObject, accepts: string[]): string {
  const p = e.params as Record<string, unknown>;
  const name = paramName(e.instancePath);
  const subject = name === undefined ? "params" : `param ${quote(name)}`;
  switch (e.keyword) {
    case "required":
      return `missing required param ${quote(String(p.missingProperty))}`;
    case "additionalProperties": {
      const known =
        accepts.length > 0
          ? `the service accepts: ${listCapped(accepts, 20)}`
          : "the service accepts no other params";
      return `unknown param ${quote(String(p.additionalProperty))} (${known})`;
    }
    case "pattern":
      return `${subject} must match pattern ${quote(String(p.pattern))}`;
    case "minLength":
      return `${subject} must be at least ${p.limit} characters long`;
    case "maxLength":
      return `${subject} must be at most ${p.limit} characters long`;
    case "enum":
      return `${subject} must be one of: ${listCapped((p.allowedValues as unknown[]).map((v) => quote(asString(v))))}`;
    case "const":
      return `${subject} must be ${quote(asString(p.allowedValue))}`;
    case "type":
      return `${subject} must be ${typeWords(String(p.type))}`;
    case "format": {
      const max = FORMAT_MAX_LENGTH.get(p.format as FormatName);
      return `${subject} must be a valid ${p.format}${max === undefined ? "" : ` of at most ${max} characters`}`;
    }
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return `${subject} must be ${p.comparison} ${p.limit}`;
    default:
      return `${subject} ${e.message ?? `fails the schema's ${quote(e.keyword)} rule`}`;
  }
}

function paramName(instancePath: string): string | undefined {
  if (instancePath === "") return undefined;
  // JSON Pointer: "/name" with "~1" for "/" and "~0" for "~".
  return instancePath.slice(1).replace(/~1/g, "/").replace(/~0/g, "~");
}

function typeWords(type: string): string {
  const words: Record<string, string> = {
    integer: "an integer",
    number: "a number",
    boolean: '"true" or "false"',
    null: "empty",
    string: "a string",
  };
  return type
    .split(",")
    .map((t) => words[t] ?? `of type ${t}`)
    .join(" or ");
}

function asString(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- Plain-object helpers (schemas are JSON: only own properties count) ----

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function objectAt(obj: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const value = own(obj, key);
  return isObject(value) ? value : undefined;
}
