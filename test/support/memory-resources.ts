// Objects of one resource type held in memory, with the API server's write rules that reconcilers
// rely on: uids and resourceVersions, 404 and 409 shaped as client-node throws them, JSON merge
// patches (RFC 7386) with resourceVersion and uid preconditions, finalizers holding a deletion.
// For reconciler unit tests only: everything that crosses the real API is tested against a real
// kube-apiserver (test/integration).
import type { Resources } from "../../src/api/resources.ts";

interface Meta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  labels?: Record<string, string>;
  finalizers?: string[];
}
type Obj = { metadata?: Meta; spec?: unknown; status?: unknown };

export interface Write {
  verb: "create" | "patch" | "status" | "delete";
  name: string;
  body?: unknown;
}

const apiError = (code: number, reason: string, message: string, name?: string) =>
  Object.assign(new Error(message), {
    code,
    body: { reason, message, ...(name ? { details: { name } } : {}) },
  });

export class MemoryResources<T extends Obj> implements Resources<T> {
  readonly objects = new Map<string, T>();
  readonly writes: Write[] = [];
  /** Every delete fails with 503 while set (an API server that cannot answer). */
  refuseDeletes = false;
  readonly #now: () => number;
  #version = 0;
  #uid = 0;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** Puts an object as it is (a test's starting state); no write is recorded. */
  put(obj: T): T {
    const m = obj.metadata ?? {};
    const stored = structuredClone({
      ...obj,
      metadata: {
        uid: `uid-${++this.#uid}`,
        generation: 1,
        creationTimestamp: new Date(this.#now()).toISOString(),
        ...m,
        resourceVersion: String(++this.#version),
      },
    }) as T;
    this.objects.set(`${m.namespace}/${m.name}`, stored);
    return structuredClone(stored);
  }

  peek(namespace: string, name: string): T | undefined {
    return this.objects.get(`${namespace}/${name}`);
  }

  async get(namespace: string, name: string): Promise<T> {
    return structuredClone(this.#existing(namespace, name));
  }

  async listAll(namespace: string | undefined, labelSelector?: string): Promise<T[]> {
    const wanted = (labelSelector ?? "")
      .split(",")
      .filter(Boolean)
      .map((s) => s.split("="));
    return [...this.objects.values()]
      .filter((o) => namespace === undefined || o.metadata?.namespace === namespace)
      .filter((o) => wanted.every(([k, v]) => o.metadata?.labels?.[k as string] === v))
      .map((o) => structuredClone(o));
  }

  async create(namespace: string, body: T): Promise<T> {
    const name = body.metadata?.name as string;
    if (this.objects.has(`${namespace}/${name}`))
      throw apiError(409, "AlreadyExists", `${name} already exists`, name);
    this.writes.push({ verb: "create", name, body: structuredClone(body) });
    return this.put({ ...body, metadata: { ...body.metadata, namespace } });
  }

  async mergePatch(namespace: string, name: string, body: unknown): Promise<T> {
    this.writes.push({ verb: "patch", name, body: structuredClone(body) });
    return this.#patch(namespace, name, body as Obj, false);
  }

  async patchStatus(namespace: string, name: string, status: unknown, resourceVersion?: string): Promise<T> {
    this.writes.push({ verb: "status", name, body: structuredClone(status) });
    return this.#patch(
      namespace,
      name,
      { metadata: resourceVersion ? { resourceVersion } : {}, status },
      true,
    );
  }

  async delete(namespace: string, name: string, preconditions?: { uid?: string }): Promise<void> {
    if (this.refuseDeletes) throw apiError(503, "ServiceUnavailable", `deleting ${name}: unavailable`, name);
    const current = this.#existing(namespace, name);
    if (preconditions?.uid && preconditions.uid !== current.metadata?.uid)
      throw apiError(409, "Conflict", `${name}: precondition failed: uid`, name);
    this.writes.push({ verb: "delete", name });
    if (current.metadata?.finalizers?.length) {
      current.metadata.deletionTimestamp ??= new Date(this.#now()).toISOString();
      current.metadata.resourceVersion = String(++this.#version);
    } else this.objects.delete(`${namespace}/${name}`);
  }

  /** Only the writes of one verb (e.g. the status writes) since `from`. */
  count(verb: Write["verb"], from = 0): number {
    return this.writes.slice(from).filter((w) => w.verb === verb).length;
  }

  #existing(namespace: string, name: string): T {
    const current = this.objects.get(`${namespace}/${name}`);
    if (!current) throw apiError(404, "NotFound", `${name} not found`, name);
    return current;
  }

  #patch(namespace: string, name: string, body: Obj, statusOnly: boolean): T {
    const current = this.#existing(namespace, name);
    const { resourceVersion, uid } = body.metadata ?? {};
    if (resourceVersion && resourceVersion !== current.metadata?.resourceVersion)
      throw apiError(409, "Conflict", `${name}: the object has been modified`, name);
    if (uid && uid !== current.metadata?.uid)
      throw apiError(409, "Conflict", `${name}: precondition failed: uid`, name);
    const { resourceVersion: _, uid: _uid, ...metadata } = body.metadata ?? {};
    const next = statusOnly
      ? { ...current, status: merge(current.status, body.status) }
      : (merge(current, { ...body, metadata }) as T);
    next.metadata = { ...next.metadata, resourceVersion: String(++this.#version) };
    if (next.metadata.deletionTimestamp && !next.metadata.finalizers?.length) {
      this.objects.delete(`${namespace}/${name}`);
    } else this.objects.set(`${namespace}/${name}`, next);
    return structuredClone(next);
  }
}

/** RFC 7386: objects merge, null removes, anything else replaces. */
function merge(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(out[k], v);
  }
  return out;
}
