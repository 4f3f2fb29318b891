// The fast executor: plays Tekton in the private cluster by completing each internal PipelineRun as soon
// as it appears — a merge patch of /status to Succeeded with two small results, as
// test/support/tekton.ts does — and records when it saw each run and when its patch was answered, so the
// executor's own time can be left out of the controller's overhead.
import type { KubeConfig } from "@kubernetes/client-node";
import type { V1PipelineRun } from "../../src/generated/tekton.ts";
import {
  concurrencyKeyLabel,
  managedSelector,
  requestNameLabel,
  requestNamespaceLabel,
} from "../../src/requests/naming.ts";
import { mergePatch, paths, type RawClient } from "./http.ts";
import { TimedWatch } from "./watch.ts";

export interface RunTimes {
  /** The run's ADDED event reached the executor. */
  seenAt: number;
  /** The executor's status patch was answered (the run is done from here on). */
  doneAt?: number;
  runName: string;
  /** Its concurrency-key label (a digest of scope and key), if it has one. */
  concurrencyKey?: string;
}

/** The status a successful run ends with: 2 small results. */
export function succeededRunStatus(name: string) {
  const now = new Date().toISOString();
  return {
    status: {
      startTime: now,
      completionTime: now,
      results: [
        { name: "digest", value: `sha256:${name.padEnd(64, "0").slice(0, 64)}` },
        { name: "signature", value: `sig-${name}` },
      ],
      conditions: [
        {
          type: "Succeeded",
          status: "True",
          reason: "Succeeded",
          message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
          lastTransitionTime: now,
        },
      ],
    },
  };
}

export class Executor {
  /** By request "namespace/name". */
  readonly runs = new Map<string, RunTimes>();
  readonly #raw: RawClient;
  readonly #namespace: string;
  readonly #watch: TimedWatch<V1PipelineRun>;
  readonly #handled = new Set<string>();
  /** Runs that exist now (ADDED and not yet DELETED). */
  readonly present = new Set<string>();
  /** Live runs (seen, not yet done or deleted) by concurrency key, and the most of one key at once. */
  readonly #liveByKey = new Map<string, Set<string>>();
  maxLivePerKey = 0;
  errors = 0;
  lastError = "";

  constructor(kc: KubeConfig, raw: RawClient, namespace: string) {
    this.#raw = raw;
    this.#namespace = namespace;
    this.#watch = new TimedWatch<V1PipelineRun>(
      kc,
      paths.pipelineRuns(namespace),
      managedSelector,
      (t, r, at) => this.#onEvent(t, r, at),
    );
  }

  start(): Promise<void> {
    return this.#watch.start();
  }

  stop(): void {
    this.#watch.stop();
  }

  /** PipelineRuns seen (each completed once). */
  get created(): number {
    return this.#handled.size;
  }

  // Liveness follows the watch's order, which is etcd's: a run the controller created after seeing
  // another one done comes after that one's done event, so an overlap here is a real one.
  #onEvent(type: string, run: V1PipelineRun, at: number): void {
    const name = run.metadata?.name as string;
    const labels = run.metadata?.labels ?? {};
    const concurrencyKey = labels[concurrencyKeyLabel];
    if (concurrencyKey && (type === "DELETED" || run.status?.completionTime))
      this.#liveByKey.get(concurrencyKey)?.delete(name);
    if (type === "DELETED") {
      this.present.delete(name);
      return;
    }
    this.present.add(name);
    if (this.#handled.has(name) || run.status?.completionTime) return;
    this.#handled.add(name);
    const key = `${labels[requestNamespaceLabel]}/${labels[requestNameLabel]}`;
    const times: RunTimes = { seenAt: at, runName: name, ...(concurrencyKey ? { concurrencyKey } : {}) };
    this.runs.set(key, times);
    if (concurrencyKey) {
      const live = this.#liveByKey.get(concurrencyKey) ?? new Set<string>();
      live.add(name);
      this.#liveByKey.set(concurrencyKey, live);
      this.maxLivePerKey = Math.max(this.maxLivePerKey, live.size);
    }
    void this.#complete(name, times);
  }

  async #complete(name: string, times: RunTimes): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const res = await this.#raw.call(
          "PATCH",
          `${paths.pipelineRuns(this.#namespace)}/${name}/status`,
          succeededRunStatus(name),
          mergePatch,
        );
        times.doneAt = res.at;
        return;
      } catch (err) {
        this.errors++;
        this.lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
  }
}
