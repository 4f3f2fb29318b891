// Validates an InternalRequest's spec.params against its InternalService's paramsSchema (JSON Schema).
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { listCapped, quote } from "./text.ts";

export type ParamsResult =
  | { ok: true; params: Record<string, string> }
  /** The request's params break the schema: one plain sentence per problem. */
  | { ok: false; kind: "params"; errors: string[] }
  /** The schema itself does not compile: the service owner's mistake, not the requester's. */
  | { ok: false; kind: "schema"; error: string };

type Compiled = { validate: ValidateFunction; accepts: string[] } | { error: string };

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
 *  (as strings). Without a schema, only an empty params map is valid. */
export function validateParams(
  schema: Record<string, unknown> | undefined,
  params: Record<string, string> | undefined,
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

  // A prototype-less copy: ajv coerces and fills defaults in place, and inherited names such as
  // "constructor" must not count as given.
  const data: Record<string, unknown> = Object.assign(Object.create(null), given);
  if (!compiled.validate(data)) {
    const errors = (compiled.validate.errors ?? []).map((e) => describe(e, compiled.accepts));
    return { ok: false, kind: "params", errors: [...new Set(errors)] };
  }
  // Given values stay exactly as sent (coercion was only for checking); defaults become strings.
  // fromEntries defines own properties, so a param named "__proto__" stays a param.
  const out = Object.entries(data).map(([name, value]): [string, string] => [
    name,
    Object.hasOwn(given, name) ? (given[name] as string) : asString(value),
  ]);
  return { ok: true, params: Object.fromEntries(out) };
}

function compile(schema: Record<string, unknown>): Compiled {
  const key = JSON.stringify(schema);
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
  // Closed unless the owner says otherwise: a typo in a param name must not be silently ignored.
  const closed = "additionalProperties" in schema ? schema : { ...schema, additionalProperties: false };
  // One Ajv per schema: services cannot see each other's $id/$ref, and evicting the entry frees it all.
  const ajv = new Ajv({
    allErrors: true,
    useDefaults: true,
    coerceTypes: true,
    ownProperties: true,
    strict: false,
  });
  addFormats.default(ajv);
  if (schema.$async === true) return { error: "$async schemas are not supported" };
  try {
    const validate = ajv.compile(closed);
    const props = schema.properties;
    const accepts = typeof props === "object" && props !== null ? Object.keys(props) : [];
    return { validate, accepts };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

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
    case "format":
      return `${subject} must be a valid ${p.format}`;
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
