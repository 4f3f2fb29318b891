// The objects of one kind in one workspace, over the namespaces it serves: a fixed list, all
// namespaces, or those matching a label selector, followed as namespaces appear and disappear.
// One reflector per namespace keeps RBAC namespaced where it can be.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { ResourceType } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { Reflector, type ReflectorOptions } from "./reflector.ts";
import type { Handler, Source } from "./source.ts";

const allNamespaces = "";

export class NamespacedCache<T extends KubernetesObject> implements Source<T> {
  readonly #kubeConfig: KubeConfig;
  readonly #type: ResourceType;
  readonly #log: Logger;
  readonly #transform: ReflectorOptions<T>["transform"];
  readonly #labelSelector: string | undefined;
  readonly #byNamespace = new Map<string, Reflector<T>>();
  readonly #handlers: Handler<T>[] = [];

  constructor(
    kubeConfig: KubeConfig,
    type: ResourceType,
    log: Logger,
    opts: Pick<ReflectorOptions<T>, "transform" | "labelSelector"> = {},
  ) {
    this.#kubeConfig = kubeConfig;
    this.#type = type;
    this.#log = log;
    this.#transform = opts.transform;
    this.#labelSelector = opts.labelSelector;
  }

  /** Follows every served namespace's changes, also of namespaces served later. */
  subscribe(handler: Handler<T>): void {
    this.#handlers.push(handler);
  }

  /** Starts serving a namespace (undefined: all of them); resolves once its objects are cached. */
  serve(namespace: string | undefined): Promise<void> {
    const id = namespace ?? allNamespaces;
    if (this.#byNamespace.has(id)) return Promise.resolve();
    const reflector = new Reflector<T>({
      kubeConfig: this.#kubeConfig,
      type: this.#type,
      namespace,
      log: this.#log,
      transform: this.#transform,
      labelSelector: this.#labelSelector,
    });
    reflector.subscribe((key, obj, deleted) => {
      for (const handler of this.#handlers) handler(key, obj, deleted);
    });
    this.#byNamespace.set(id, reflector);
    return reflector.start();
  }

  /** Stops serving a namespace; its objects leave the cache (reconciles then find nothing to do). */
  drop(namespace: string): void {
    const reflector = this.#byNamespace.get(namespace);
    if (!reflector) return;
    reflector.stop();
    this.#byNamespace.delete(namespace);
  }

  /** The namespaces served, and whether each one's first list is in. */
  served(): { namespace: string; synced: boolean }[] {
    return [...this.#byNamespace].map(([namespace, r]) => ({ namespace, synced: r.hasSynced }));
  }

  /** Lookup by "namespace/name". */
  get(key: string): T | undefined {
    const namespace = key.slice(0, key.indexOf("/"));
    return (this.#byNamespace.get(namespace) ?? this.#byNamespace.get(allNamespaces))?.get(key);
  }

  /** See Reflector.observe. */
  observe(obj: T): void {
    const namespace = obj.metadata?.namespace ?? "";
    (this.#byNamespace.get(namespace) ?? this.#byNamespace.get(allNamespaces))?.observe(obj);
  }

  list(): T[] {
    return [...this.#byNamespace.values()].flatMap((r) => r.list());
  }

  stop(): void {
    for (const r of this.#byNamespace.values()) r.stop();
    this.#byNamespace.clear();
  }
}
