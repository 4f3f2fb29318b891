// Plays Tekton's part in the private cluster (no Tekton controller or kubelet runs there in these
// tests): reads the PipelineRuns the controller created and writes their status the way Tekton does.
import type { KubeConfig } from "@kubernetes/client-node";
import { eventually } from "../../envtest/wait.ts";
import { pipelineRuns, ResourceClient, taskRuns } from "../../src/api/resources.ts";
import type { V1PipelineRun, V1TaskRun } from "../../src/generated/tekton.ts";

export class FakeTekton {
  readonly runs: ResourceClient<V1PipelineRun>;
  readonly taskRuns: ResourceClient<V1TaskRun>;
  readonly namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.runs = new ResourceClient<V1PipelineRun>(kc, pipelineRuns, "fake-tekton");
    this.taskRuns = new ResourceClient<V1TaskRun>(kc, taskRuns, "fake-tekton");
    this.namespace = namespace;
  }

  async list(): Promise<V1PipelineRun[]> {
    return (await this.runs.list(this.namespace)).items;
  }

  /** Waits until exactly `count` PipelineRuns exist and returns them. */
  async waitForRuns(count: number, timeoutMs?: number): Promise<V1PipelineRun[]> {
    return eventually(
      async () => {
        const items = await this.list();
        return items.length === count ? items : undefined;
      },
      `${count} PipelineRun(s) in ${this.namespace}`,
      timeoutMs,
    );
  }

  /** Writes the run's Succeeded condition (and any other status fields), as Tekton does. */
  async #setStatus(
    name: string,
    condition: { status: "True" | "False" | "Unknown"; reason: string; message: string },
    fields: Record<string, unknown> = {},
  ): Promise<void> {
    const now = new Date().toISOString();
    await this.runs.patchStatus(this.namespace, name, {
      ...fields,
      conditions: [{ type: "Succeeded", ...condition, lastTransitionTime: now }],
    });
  }

  /** Marks the run started, with `total` tasks of which `completed` are done. */
  async progress(name: string, completed: number, total: number): Promise<void> {
    const message = `Tasks Completed: ${completed} (Failed: 0, Cancelled 0), Incomplete: ${total - completed}, Skipped: 0`;
    await this.#setStatus(
      name,
      { status: "Unknown", reason: "Running", message },
      {
        startTime: new Date().toISOString(),
        pipelineSpec: {
          tasks: Array.from({ length: total }, (_, i) => ({ name: `task-${i}`, taskRef: { name: "t" } })),
        },
      },
    );
  }

  async succeed(name: string, results: { name: string; value: unknown }[] = []): Promise<void> {
    const message = "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0";
    await this.#setStatus(
      name,
      { status: "True", reason: "Succeeded", message },
      { completionTime: new Date().toISOString(), results },
    );
  }

  /** Fails the run the way Tekton does: a failed TaskRun, and the PipelineRun's generic summary. */
  async fail(
    name: string,
    task: { name: string; reason: string; message: string },
    results: { name: string; value: unknown }[] = [],
  ): Promise<void> {
    const taskRunName = `${name}-${task.name}`.slice(0, 63);
    await this.taskRuns.create(this.namespace, {
      apiVersion: "tekton.dev/v1",
      kind: "TaskRun",
      metadata: { name: taskRunName, labels: { "tekton.dev/pipelineRun": name } },
      spec: { taskRef: { name: task.name } },
    } as V1TaskRun);
    await this.taskRuns.patchStatus(this.namespace, taskRunName, {
      podName: "",
      conditions: [{ type: "Succeeded", status: "False", reason: task.reason, message: task.message }],
    });
    await this.#setStatus(
      name,
      {
        status: "False",
        reason: "Failed",
        message: "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0",
      },
      {
        completionTime: new Date().toISOString(),
        results,
        childReferences: [
          { apiVersion: "tekton.dev/v1", kind: "TaskRun", name: taskRunName, pipelineTaskName: task.name },
        ],
      },
    );
  }

  /**
   * Completes every PipelineRun as soon as it appears (Succeeded, two small results; cancelled ones
   * Cancelled), until the returned stop function is called. Counts what it completed.
   */
  autoComplete(intervalMs = 100): { stop: () => Promise<void>; completed: Set<string> } {
    const completed = new Set<string>();
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        const runs = await this.list().catch(() => []);
        for (const run of runs) {
          const name = run.metadata?.name as string;
          if (run.status?.completionTime || completed.has(name)) continue;
          const done =
            run.spec?.status === "Cancelled"
              ? this.markCancelled(name)
              : this.succeed(name, [
                  { name: "digest", value: "sha256:0000" },
                  { name: "url", value: `https://example.test/${name}` },
                ]);
          await done.then(() => completed.add(name)).catch(() => undefined);
        }
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    })();
    return {
      completed,
      stop: async () => {
        stopped = true;
        await loop;
      },
    };
  }

  /** What an admission queue (tekton-kueue's webhook) does to a new run: holds it pending, in a
   *  queue; and what Tekton's controller then says of it (Unknown, reason PipelineRunPending). */
  async hold(name: string, queue: string): Promise<void> {
    await this.runs.mergePatch(this.namespace, name, {
      metadata: { labels: { "kueue.x-k8s.io/queue-name": queue } },
      spec: { status: "PipelineRunPending" },
    });
    await this.#setStatus(name, {
      status: "Unknown",
      reason: "PipelineRunPending",
      message: `PipelineRun "${name}" is pending`,
    });
  }

  /** The queue admits the run: the pending status goes, and Tekton starts it. */
  async admit(name: string): Promise<void> {
    await this.runs.mergePatch(this.namespace, name, { spec: { status: null } });
    await this.progress(name, 0, 1);
  }

  /** Tekton's reaction to spec.status "Cancelled". */
  async markCancelled(name: string): Promise<void> {
    await this.#setStatus(
      name,
      { status: "False", reason: "Cancelled", message: `PipelineRun "${name}" was cancelled` },
      { completionTime: new Date().toISOString() },
    );
  }
}
