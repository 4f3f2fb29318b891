// Generates TypeScript declarations into src/generated/ (run with `npm run generate`):
//  - tekton.ts from Tekton's published OpenAPI (swagger.json of pkg/apis/pipeline/{v1,v1beta1}),
//    read from the Go module cache via `go mod download`;
//  - crds.ts from the openAPIV3Schema of the storage version of every crds/*.yaml.
// Output is sorted and deterministic, so re-running it produces no diff.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";

interface Schema {
  $ref?: string;
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  nullable?: boolean;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
}

const TEKTON_MODULE = "github.com/tektoncd/pipeline";
const TEKTON_VERSION = "v1.15.0";
const TEKTON_SWAGGERS = ["pkg/apis/pipeline/v1/swagger.json", "pkg/apis/pipeline/v1beta1/swagger.json"];
/** The kinds the project uses; everything they reference is generated too. */
const TEKTON_ROOTS = ["v1.Pipeline", "v1.PipelineRun", "v1.TaskRun", "v1beta1.CustomRun"];
const REPO = join(import.meta.dirname, "..");
const OUT_DIR = join(REPO, "src/generated");
const CRD_DIR = join(REPO, "crds");

/** Swagger definitions whose Go type has a custom JSON (un)marshaller, keyed by the last name segment. */
const WIRE_TYPES: Record<string, string> = {
  Duration: "string",
  FeatureFlags: "Record<string, unknown>",
  IntOrString: "number | string",
  MicroTime: "string",
  ParamValue: "ParamValue",
  Quantity: "string",
  RawExtension: "Record<string, unknown>",
  ResultValue: "ResultValue",
  Time: "string",
};
const WIRE_ALIASES = [
  "/** A param value on the wire: a string, an array of strings or an object of strings. */",
  "export type ParamValue = string | string[] | Record<string, string>;",
  "/** A result value on the wire (same encoding as ParamValue). */",
  "export type ResultValue = ParamValue;",
];

/**
 * Types the swagger files refer to without defining them, transcribed from the Go sources of
 * pkg/apis/run/v1beta1/customrunstatus_types.go and knative.dev/pkg/apis (Condition, duckv1.Status).
 */
const str = (description?: string): Schema => ({ type: "string", ...(description ? { description } : {}) });
const SUPPLEMENTS: Record<string, Schema> = {
  "knative.Condition": {
    description: "Condition defines a readiness condition for a Knative resource.",
    required: ["type", "status"],
    properties: {
      type: str("Type of condition, e.g. Succeeded."),
      status: { description: "Status of the condition.", type: "string", enum: ["True", "False", "Unknown"] },
      severity: str("How to interpret failures of this condition: empty (Error), Warning or Info."),
      lastTransitionTime: str("Last time the condition transitioned from one status to another."),
      reason: str("One-word CamelCase reason for the condition's last transition."),
      message: str("Human-readable message indicating details about the last transition."),
    },
  },
  "v1beta1.CustomRunStatus": {
    description:
      "CustomRunStatus defines the observed state of CustomRun (duckv1.Status + CustomRunStatusFields).",
    properties: {
      observedGeneration: {
        type: "integer",
        description: "The 'Generation' last processed by the controller.",
      },
      conditions: { type: "array", items: { $ref: "#/definitions/knative.Condition" } },
      annotations: { type: "object", additionalProperties: { type: "string" } },
      startTime: {
        $ref: "#/definitions/v1.Time",
        description: "StartTime is the time the build is actually started.",
      },
      completionTime: {
        $ref: "#/definitions/v1.Time",
        description: "CompletionTime is the time the build completed.",
      },
      results: { type: "array", items: { $ref: "#/definitions/v1beta1.CustomRunResult" } },
      retriesStatus: {
        description: "RetriesStatus contains the history of CustomRunStatus, in case of a retry.",
        type: "array",
        items: { $ref: "#/definitions/v1beta1.CustomRunStatus" },
      },
      extraFields: {
        description: "ExtraFields holds arbitrary fields provided by the custom task controller.",
        $ref: "#/definitions/k8s.io.apimachinery.pkg.runtime.RawExtension",
      },
    },
  },
  "v1beta1.CustomRunResult": {
    description: "CustomRunResult is a result reported by a custom task.",
    required: ["name", "value"],
    properties: { name: str("Name the given name"), value: str("Value the given value of the result") },
  },
  "github.com.tektoncd.pipeline.pkg.apis.run.v1beta1.CustomRunStatus": {
    $ref: "#/definitions/v1beta1.CustomRunStatus",
  },
};

/** Collects named declarations and type-only imports from @kubernetes/client-node. */
interface Ctx {
  decls: Map<string, string>;
  imports: Set<string>;
  ref: (ref: string) => string;
}

const pascal = (s: string): string =>
  s.replace(/(^|[^A-Za-z0-9]+)([A-Za-z0-9])/g, (_m, _sep, c: string) => c.toUpperCase());
const propKey = (k: string): string => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));

function jsdoc(text: string | undefined, indent: string): string[] {
  const lines = (text ?? "").trim().replaceAll("*/", "*\\/").split("\n");
  if (lines.join("") === "") return [];
  if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
  return [`${indent}/**`, ...lines.map((l) => `${indent} *${l ? ` ${l}` : ""}`), `${indent} */`];
}

function addDecl(ctx: Ctx, name: string, text: string): void {
  const existing = ctx.decls.get(name);
  if (existing !== undefined && existing !== text) throw new Error(`two different types named ${name}`);
  ctx.decls.set(name, text);
}

/** The TypeScript type of a schema; object schemas with properties become interfaces named `hint`. */
function typeOf(s: Schema, hint: string, ctx: Ctx): string {
  let t: string;
  if (s.$ref) t = ctx.ref(s.$ref);
  else if (s["x-kubernetes-int-or-string"]) t = "number | string";
  else if (s.enum) t = s.enum.map((v) => JSON.stringify(v)).join(" | ");
  else if (s.type === "string") t = "string";
  else if (s.type === "integer" || s.type === "number") t = "number";
  else if (s.type === "boolean") t = "boolean";
  else if (s.type === "array") {
    const item = s.items ? typeOf(s.items, `${hint}Item`, ctx) : "unknown";
    t = /[|&]/.test(item) ? `(${item})[]` : `${item}[]`;
  } else if (s.properties && Object.keys(s.properties).length > 0) {
    emitInterface(hint, s, ctx);
    t = hint;
  } else if (typeof s.additionalProperties === "object") {
    t = `Record<string, ${typeOf(s.additionalProperties, `${hint}Value`, ctx)}>`;
  } else t = s.type === "object" ? "Record<string, unknown>" : "unknown";
  return s.nullable ? `${t} | null` : t;
}

function emitInterface(name: string, s: Schema, ctx: Ctx, extra: string[] = []): void {
  const lines = [...jsdoc(s.description, ""), `export interface ${name} {`, ...extra];
  const required = new Set(s.required ?? []);
  for (const key of Object.keys(s.properties ?? {}).sort()) {
    const prop = s.properties?.[key] ?? {};
    const type = typeOf(prop, `${name}${pascal(key)}`, ctx);
    lines.push(
      ...jsdoc(prop.description, "  "),
      `  ${propKey(key)}${required.has(key) ? "" : "?"}: ${type};`,
    );
  }
  if (s["x-kubernetes-preserve-unknown-fields"]) lines.push("  [key: string]: unknown;");
  addDecl(ctx, name, `${lines.join("\n")}\n}`);
}

function renderFile(source: string, ctx: Ctx, preamble: string[] = []): string {
  const header = [
    `// Code generated by scripts/generate-types.ts from ${source}. DO NOT EDIT.`,
    "// Regenerate with: npm run generate",
    "",
  ];
  if (ctx.imports.size > 0) {
    header.push(`import type { ${[...ctx.imports].sort().join(", ")} } from "@kubernetes/client-node";`, "");
  }
  const body = [...ctx.decls.keys()].sort().map((name) => ctx.decls.get(name));
  return `${[...header, ...preamble, ...(preamble.length ? [""] : []), body.join("\n\n")].join("\n").trimEnd()}\n`;
}

function tektonModuleDir(): string {
  const tmp = mkdtempSync(join(tmpdir(), "generate-types-"));
  try {
    const out = execFileSync("go", ["mod", "download", "-json", `${TEKTON_MODULE}@${TEKTON_VERSION}`], {
      cwd: tmp,
      env: { ...process.env, GOFLAGS: "-mod=mod" },
      encoding: "utf8",
    });
    const dir = (JSON.parse(out) as { Dir?: string; Error?: string }).Dir;
    if (!dir) throw new Error(`go mod download did not return a Dir: ${out}`);
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * PipelineRef and TaskRef embed ResolverRef (`json:",inline"` in Go), which the swagger leaves out:
 * add its properties (resolver, params) to them.
 */
function inlineResolverRefs(defs: Record<string, Schema>): void {
  for (const version of ["v1", "v1beta1"]) {
    const resolver = defs[`${version}.ResolverRef`] ?? defs["v1.ResolverRef"];
    for (const kind of ["PipelineRef", "TaskRef"]) {
      const def = defs[`${version}.${kind}`];
      if (def && resolver?.properties) def.properties = { ...def.properties, ...resolver.properties };
    }
  }
}

function generateTekton(): { text: string; count: number; unresolved: string[] } {
  const dir = tektonModuleDir();
  const defs: Record<string, Schema> = {};
  for (const file of TEKTON_SWAGGERS) {
    const swagger = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
      definitions: Record<string, Schema>;
    };
    for (const [key, def] of Object.entries(swagger.definitions)) {
      if (key in defs && JSON.stringify(defs[key]) !== JSON.stringify(def))
        throw new Error(`conflicting ${key}`);
      defs[key] = def;
    }
  }
  Object.assign(defs, SUPPLEMENTS);
  inlineResolverRefs(defs);
  const queue = [...TEKTON_ROOTS];
  const unresolved = new Set<string>();
  const ctx: Ctx = {
    decls: new Map(),
    imports: new Set(),
    ref(ref) {
      const key = ref.replace("#/definitions/", "");
      const def = defs[key];
      const wire = WIRE_TYPES[key.split(".").at(-1) ?? ""];
      if (def?.$ref) return ctx.ref(def.$ref);
      if (wire) return wire;
      if (def) {
        queue.push(key);
        return pascal(key);
      }
      const k8sName = key.startsWith("v1.") ? `V1${key.slice(3)}` : "";
      if (k8sName && typeof (k8s as Record<string, unknown>)[k8sName] === "function") {
        ctx.imports.add(k8sName);
        return k8sName;
      }
      unresolved.add(key);
      return "unknown";
    },
  };
  for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
    if (!ctx.decls.has(pascal(key))) emitInterface(pascal(key), defs[key] ?? {}, ctx);
  }
  const count = ctx.decls.size + 2; // + ParamValue, ResultValue
  const text = renderFile(
    `${TEKTON_MODULE}@${TEKTON_VERSION} (${TEKTON_SWAGGERS.join(", ")})`,
    ctx,
    WIRE_ALIASES,
  );
  return { text, count, unresolved: [...unresolved].sort() };
}

interface Crd {
  kind?: string;
  spec: {
    group: string;
    names: { kind: string };
    versions: { name: string; storage?: boolean; schema?: { openAPIV3Schema?: Schema } }[];
  };
}

/** Every CustomResourceDefinition in crds/*.yaml (multi-document files allowed), with the file it came from. */
function readCrds(): { file: string; crd: Crd }[] {
  const files = existsSync(CRD_DIR) ? readdirSync(CRD_DIR).filter((f) => /\.ya?ml$/.test(f)) : [];
  return files.sort().flatMap((file) =>
    parseAllDocuments(readFileSync(join(CRD_DIR, file), "utf8")).flatMap((doc) => {
      if (doc.errors.length > 0) throw new Error(`crds/${file}: ${doc.errors[0]?.message}`);
      const crd = doc.toJS() as Crd | null;
      return crd?.kind === "CustomResourceDefinition" ? [{ file, crd }] : [];
    }),
  );
}

function generateCrds(): { text: string; count: number } {
  const crds = readCrds();
  const ctx: Ctx = {
    decls: new Map(),
    imports: new Set(),
    ref: (ref) => ref, // CRD schemas cannot contain $ref: these are our own placeholders for <Kind><Field>
  };
  for (const { file, crd } of crds) {
    const { group, names, versions } = crd.spec;
    const version = versions.find((v) => v.storage) ?? versions[0];
    const schema = version?.schema?.openAPIV3Schema;
    if (!version || !schema) throw new Error(`crds/${file}: no openAPIV3Schema for the storage version`);
    const kind = names.kind;
    const { apiVersion: _a, kind: _k, metadata: _m, ...properties } = schema.properties ?? {};
    for (const [key, sub] of Object.entries(properties)) {
      const name = `${kind}${pascal(key)}`;
      const type = typeOf(sub, name, ctx);
      if (type !== name)
        addDecl(ctx, name, [...jsdoc(sub.description, ""), `export type ${name} = ${type};`].join("\n"));
      properties[key] = { ...sub, $ref: name };
    }
    ctx.imports.add("V1ObjectMeta");
    emitInterface(kind, { ...schema, properties }, ctx, [
      `  apiVersion: "${group}/${version.name}";`,
      `  kind: "${kind}";`,
      "  metadata: V1ObjectMeta;",
    ]);
  }
  const files = [...new Set(crds.map((c) => `crds/${c.file}`))];
  const source = files.length ? files.join(", ") : "crds/*.yaml (no CRDs found)";
  return { text: renderFile(source, ctx), count: ctx.decls.size };
}

const tekton = generateTekton();
const crds = generateCrds();
mkdirSync(OUT_DIR, { recursive: true });
writeFileSync(join(OUT_DIR, "tekton.ts"), tekton.text);
writeFileSync(join(OUT_DIR, "crds.ts"), crds.text);
writeFileSync(
  join(OUT_DIR, "README.md"),
  [
    "# Generated types — DO NOT EDIT",
    "",
    `\`tekton.ts\` is generated from the OpenAPI (swagger.json) of ${TEKTON_MODULE}@${TEKTON_VERSION},`,
    "`crds.ts` from the storage-version `openAPIV3Schema` of `crds/*.yaml`, by `scripts/generate-types.ts`.",
    "Regenerate with: `npm run generate`",
    "",
  ].join("\n"),
);
console.log(`tekton.ts: ${tekton.count} types; crds.ts: ${crds.count} types`);
if (tekton.unresolved.length)
  console.warn(`unresolved Tekton refs (typed unknown): ${tekton.unresolved.join(", ")}`);
