// The private cluster's runs in memory, for reconciler rules: PipelineRuns and TaskRuns as stores, and
// run slots that follow them as the informer cache would (sync() after every step).
import type { V1PipelineRun, V1TaskRun } from "../../src/generated/tekton.ts";
import { RunSlots } from "../../src/requests/slots.ts";
import { MemoryResources } from "./memory-resources.ts";

export class MemoryRuns {
  readonly runs: MemoryResources<V1PipelineRun>;
  readonly taskRuns: MemoryResources<V1TaskRun>;
  slots = new RunSlots();
  readonly #seen = new Map<string, V1PipelineRun>();

  constructor(clock: () => number) {
    this.runs = new MemoryResources<V1PipelineRun>(clock);
    this.taskRuns = new MemoryResources<V1TaskRun>(clock);
  }

  byName(name: string): V1PipelineRun | undefined {
    return [...this.runs.objects.values()].find((r) => r.metadata?.name === name);
  }

  /** The slots see every run as it is now, and the deletion of every run gone since the last sync. */
  sync(): void {
    for (const [name, run] of this.#seen) if (!this.byName(name)) this.slots.observe(run, true);
    this.#seen.clear();
    for (const run of this.runs.objects.values()) {
      this.#seen.set(run.metadata?.name as string, run);
      this.slots.observe(run, false);
    }
  }

  /** A new process: slots rebuilt from what exists. */
  restart(): void {
    this.slots = new RunSlots();
    this.#seen.clear();
    this.sync();
  }
}
