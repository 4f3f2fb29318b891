// The API resources this controller reads and writes, and typed access to them over the controller's
// own HTTP path (http.ts), which passes bodies through untouched (client-node's typed serializers drop
// keys they do not know).
import type { KubeConfig } from "../config/kubeconfig.ts";
import { call } from "./http.ts";

export interface ResourceType {
  /** "" for the core API (/api/v1). */
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export const internalRequests: ResourceType = {
  group: "appstudio.redhat.com",
  version: "v1alpha1",
  plural: "internalrequests",
  kind: "InternalRequest",
};
export const internalServices: ResourceType = {
  ...internalRequests,
  plural: "internalservices",
  kind: "InternalService",
};
export const internalServicesConfigs: ResourceType = {
  ...internalRequests,
  plural: "internalservicesconfigs",
  kind: "InternalServicesConfig",
};
export const pipelineRuns: ResourceType = {
  group: "tekton.dev",
  version: "v1",
  plural: "pipelineruns",
  kind: "PipelineRun",
};
export const taskRuns: ResourceType = {
  group: "tekton.dev",
  version: "v1",
  plural: "taskruns",
  kind: "TaskRun",
};
export const customRuns: ResourceType = {
  group: "tekton.dev",
  version: "v1beta1",
  plural: "customruns",
  kind: "CustomRun",
};

export const namespaces: ResourceType = { group: "", version: "v1", plural: "namespaces", kind: "Namespace" };
export const leases: ResourceType = {
  group: "coordination.k8s.io",
  version: "v1",
  plural: "leases",
  kind: "Lease",
};

export const apiVersionOf = (type: ResourceType) =>
  type.group ? `${type.group}/${type.version}` : type.version;

/** Collection path, for watches: all namespaces when namespace is undefined. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const ns = namespace ? `/namespaces/${namespace}` : "";
  const base = type.group ? `/apis/${type.group}/${type.version}` : `/api/${type.version}`;
  return `${base}${ns}/${type.plural}`;
}

const mergePatch = "application/merge-patch+json";

export interface ListPage<T> {
  items: T[];
  metadata: { resourceVersion: string; continue?: string };
}

/** What reconcilers call on one resource type: the API server's (ResourceClient), or a unit test's
 *  objects in memory. */
export type Resources<T> = Pick<
  ResourceClient<T>,
  "get" | "listAll" | "create" | "mergePatch" | "patchStatus" | "delete"
>;

/** Namespaced operations for one resource type on one cluster. */
export class ResourceClient<T> {
  readonly #kc: KubeConfig;
  readonly #type: ResourceType;
  readonly fieldManager: string;

  constructor(kubeConfig: KubeConfig, type: ResourceType, fieldManager = "internal-service-controller") {
    this.#kc = kubeConfig;
    this.#type = type;
    this.fieldManager = fieldManager;
  }

  #item(namespace: string, name: string): string {
    return `${collectionPath(this.#type, namespace)}/${encodeURIComponent(name)}`;
  }

  async get(namespace: string, name: string): Promise<T> {
    return call<T>(this.#kc, "GET", this.#item(namespace, name));
  }

  /** One page of a list; namespace undefined lists across all namespaces. */
  async list(
    namespace: string | undefined,
    opts: { labelSelector?: string; fieldSelector?: string; limit?: number; continue?: string } = {},
  ): Promise<ListPage<T>> {
    const { labelSelector, fieldSelector, limit, continue: token } = opts;
    return call<ListPage<T>>(this.#kc, "GET", collectionPath(this.#type, namespace), {
      query: { labelSelector, fieldSelector, limit, continue: token },
    });
  }

  /** Every object (namespace undefined: in all namespaces), read in pages of 500. */
  async listAll(namespace: string | undefined, labelSelector?: string): Promise<T[]> {
    const items: T[] = [];
    let token: string | undefined;
    do {
      const page = await this.list(namespace, { labelSelector, limit: 500, continue: token });
      items.push(...page.items);
      token = page.metadata.continue || undefined;
    } while (token);
    return items;
  }

  async create(namespace: string, body: T): Promise<T> {
    return call<T>(this.#kc, "POST", collectionPath(this.#type, namespace), {
      query: { fieldManager: this.fieldManager },
      body,
    });
  }

  async mergePatch(namespace: string, name: string, body: unknown): Promise<T> {
    return call<T>(this.#kc, "PATCH", this.#item(namespace, name), {
      query: { fieldManager: this.fieldManager },
      body,
      contentType: mergePatch,
    });
  }

  /**
   * Merge patch of the /status subresource. With resourceVersion the write only succeeds on that
   * version (409 otherwise), so a decision made on a stale read never lands.
   */
  async patchStatus(namespace: string, name: string, status: unknown, resourceVersion?: string): Promise<T> {
    const body = resourceVersion ? { metadata: { resourceVersion }, status } : { status };
    return call<T>(this.#kc, "PATCH", `${this.#item(namespace, name)}/status`, {
      query: { fieldManager: this.fieldManager },
      body,
      contentType: mergePatch,
    });
  }

  async delete(namespace: string, name: string, preconditions?: { uid?: string }): Promise<void> {
    await call(this.#kc, "DELETE", this.#item(namespace, name), {
      query: { propagationPolicy: "Background" },
      body: preconditions ? { preconditions } : undefined,
    });
  }
}
