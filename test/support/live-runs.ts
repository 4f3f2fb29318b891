// Follows the private PipelineRuns through a watch of the API server (not the controller's cache):
// the most unfinished at once per group (a service's slots, a concurrency key), and the runs created
// per group.
import { type KubeConfig, Watch } from "@kubernetes/client-node";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";

export class LiveRuns {
  readonly maxLive = new Map<string, number>();
  /** Runs created, by group. */
  readonly created = new Map<string, number>();
  readonly #live = new Map<string, Set<string>>();
  #abort: AbortController | undefined;

  /** Follows the runs in `namespace` that `groupOf` puts in a group (undefined: not followed). */
  static async watch(
    kc: KubeConfig,
    namespace: string,
    groupOf: (run: V1PipelineRun) => string | undefined,
  ): Promise<LiveRuns> {
    const w = new LiveRuns();
    w.#abort = await new Watch(kc).watch(
      `/apis/tekton.dev/v1/namespaces/${namespace}/pipelineruns`,
      {},
      (type: string, run: V1PipelineRun) => {
        const group = groupOf(run);
        if (group !== undefined) w.#event(type, run, group);
      },
      () => undefined,
    );
    return w;
  }

  #event(type: string, run: V1PipelineRun, group: string): void {
    const name = run.metadata?.name as string;
    const live = this.#live.get(group) ?? new Set<string>();
    this.#live.set(group, live);
    if (type === "ADDED") this.created.set(group, (this.created.get(group) ?? 0) + 1);
    const done = run.status?.conditions?.some((c) => c.type === "Succeeded" && c.status !== "Unknown");
    if (type === "DELETED" || done) live.delete(name);
    else live.add(name);
    this.maxLive.set(group, Math.max(this.maxLive.get(group) ?? 0, live.size));
  }

  stop(): void {
    this.#abort?.abort();
  }
}
