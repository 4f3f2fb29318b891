// The API resources this controller reads and writes, and typed access to them through client-node's
// CustomObjectsApi (it passes bodies through untouched, unlike the typed serializers, which drop keys
// they do not know).
import {
  CustomObjectsApi,
  type KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";

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

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

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

/** Namespaced custom-object operations for one resource type on one cluster. */
export class ResourceClient<T> {
  readonly #api: CustomObjectsApi;
  readonly #objects: KubernetesObjectApi;
  readonly #type: ResourceType;
  readonly fieldManager: string;

  constructor(kubeConfig: KubeConfig, type: ResourceType, fieldManager = "internal-service-controller") {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.#type = type;
    this.fieldManager = fieldManager;
  }

  #base() {
    return { group: this.#type.group, version: this.#type.version, plural: this.#type.plural };
  }

  async get(namespace: string, name: string): Promise<T> {
    return (await this.#api.getNamespacedCustomObject({ ...this.#base(), namespace, name })) as T;
  }

  /** One page of a list; namespace undefined lists across all namespaces. */
  async list(
    namespace: string | undefined,
    opts: { labelSelector?: string; fieldSelector?: string; limit?: number; continue?: string } = {},
  ): Promise<ListPage<T>> {
    if (!this.#type.group) {
      // Core kinds (namespaces) are not custom objects: list them through the generic client.
      const { labelSelector, fieldSelector, limit, continue: token } = opts;
      const t = this.#type;
      const list = await this.#objects.list(
        t.version,
        t.kind,
        namespace,
        undefined,
        undefined,
        undefined,
        fieldSelector,
        labelSelector,
        limit,
        token,
      );
      return list as unknown as ListPage<T>;
    }
    const query = {
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      limit: opts.limit,
      _continue: opts.continue,
    };
    const page = namespace
      ? await this.#api.listNamespacedCustomObject({ ...this.#base(), namespace, ...query })
      : await this.#api.listClusterCustomObject({ ...this.#base(), ...query });
    return page as ListPage<T>;
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
    return (await this.#api.createNamespacedCustomObject({
      ...this.#base(),
      namespace,
      body,
      fieldManager: this.fieldManager,
    })) as T;
  }

  async mergePatch(namespace: string, name: string, body: unknown): Promise<T> {
    return (await this.#api.patchNamespacedCustomObject(
      { ...this.#base(), namespace, name, body, fieldManager: this.fieldManager },
      mergePatch,
    )) as T;
  }

  /**
   * Merge patch of the /status subresource. With resourceVersion the write only succeeds on that
   * version (409 otherwise), so a decision made on a stale read never lands.
   */
  async patchStatus(namespace: string, name: string, status: unknown, resourceVersion?: string): Promise<T> {
    const body = resourceVersion ? { metadata: { resourceVersion }, status } : { status };
    return (await this.#api.patchNamespacedCustomObjectStatus(
      { ...this.#base(), namespace, name, body, fieldManager: this.fieldManager },
      mergePatch,
    )) as T;
  }

  async delete(namespace: string, name: string, preconditions?: { uid?: string }): Promise<void> {
    await this.#api.deleteNamespacedCustomObject({
      ...this.#base(),
      namespace,
      name,
      propagationPolicy: "Background",
      body: preconditions ? { preconditions } : undefined,
    });
  }
}
