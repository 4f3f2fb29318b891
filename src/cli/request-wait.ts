// Waiting for InternalRequests to finish: a watch for prompt updates, a poll every 2 s as the fallback
// (and the source of truth), a deadline, and progress on stderr (one live line per request on a
// terminal, a plain line per change in logs).

import { collectionPath, internalRequests, type ResourceClient } from "../api/resources.ts";
import { type WatchHandle, watch } from "../api/watch.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { formatDuration } from "../policy/duration.ts";
import { compareText } from "../policy/text.ts";
import { CommandError, httpCode } from "./request-errors.ts";
import { pickedUp } from "./request-heartbeat.ts";
import { isFinished, messageOf, oneLine, reasonOf } from "./request-output.ts";

export interface WaitOptions {
  kubeConfig: KubeConfig;
  client: ResourceClient<InternalRequest>;
  namespace: string;
  /** The requests to wait for, or all that match selector. */
  names?: string[];
  selector?: string;
  timeoutMs: number;
  /** Give up this soon when a request still has no status (no controller took it up); 0: never. */
  pickupTimeoutMs?: number;
  pollMs?: number;
  progress: Progress;
}

export type WaitOutcome =
  | { kind: "finished"; requests: InternalRequest[] }
  | { kind: "timeout"; requests: InternalRequest[] }
  | { kind: "not-picked-up"; requests: InternalRequest[] }
  | { kind: "interrupted"; signal: NodeJS.Signals; requests: InternalRequest[] };

export async function waitForRequests(opts: WaitOptions): Promise<WaitOutcome> {
  const pollMs = opts.pollMs ?? 2_000;
  const deadline = Date.now() + opts.timeoutMs;
  const pickupDeadline = opts.pickupTimeoutMs ? Date.now() + opts.pickupTimeoutMs : Number.POSITIVE_INFINITY;
  const byName = new Map<string, InternalRequest>();
  const wanted = opts.names ? new Set(opts.names) : undefined;
  let wake = () => {};
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    wake();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  // The watch only speeds things up: when it fails or ends, the next poll restarts it.
  let handle: WatchHandle | undefined;
  let watching = false;
  let stopped = false;
  const startWatch = () => {
    if (watching || stopped) return;
    watching = true;
    const singleName = opts.names?.length === 1 ? opts.names[0] : undefined;
    const query: Record<string, string> = {};
    if (singleName) query.fieldSelector = `metadata.name=${singleName}`;
    if (opts.selector) query.labelSelector = opts.selector;
    watch(
      opts.kubeConfig,
      collectionPath(internalRequests, opts.namespace),
      query,
      (type: string, obj: InternalRequest) => {
        const name = obj?.metadata?.name;
        if (!name || (wanted && !wanted.has(name))) return;
        if (type === "ADDED" || type === "MODIFIED") byName.set(name, obj);
        else if (type === "DELETED" && !wanted) byName.delete(name);
        else return;
        wake();
      },
      () => {
        watching = false;
      },
    ).then(
      (h) => {
        handle = h;
        if (stopped) h.abort();
      },
      () => {
        watching = false;
      },
    );
  };

  const poll = async () => {
    if (opts.names) {
      const got = await Promise.all(opts.names.map((n) => opts.client.get(opts.namespace, n)));
      for (const r of got) byName.set(r.metadata.name as string, r);
      return;
    }
    const items = await opts.client.listAll(opts.namespace, opts.selector);
    byName.clear();
    for (const r of items) byName.set(r.metadata.name as string, r);
  };

  const current = () =>
    [...byName.values()].sort((a, b) => compareText(a.metadata.name ?? "", b.metadata.name ?? ""));
  try {
    let polled = false;
    let nextPoll = 0;
    for (;;) {
      if (Date.now() >= nextPoll) {
        try {
          await poll();
          polled = true;
        } catch (err) {
          // The first look must work (not found, forbidden, unreachable are the user's to fix); later,
          // a server hiccup only delays the next look.
          if (!polled || !isTransient(err)) throw err;
          opts.progress.note(
            `could not read the requests, retrying: ${(err as Error).message.split("\n")[0]}`,
          );
        }
        nextPoll = Date.now() + pollMs;
        if (byName.size === 0 && opts.selector)
          throw new CommandError(
            `no InternalRequests match selector "${opts.selector}" in namespace "${opts.namespace}"`,
          );
        startWatch();
      }
      const requests = current();
      opts.progress.update(requests);
      if (requests.length > 0 && requests.every(isFinished)) return { kind: "finished", requests };
      if (interrupted) return { kind: "interrupted", signal: interrupted, requests };
      const now = Date.now();
      if (now >= deadline) return { kind: "timeout", requests };
      if (now >= pickupDeadline && requests.some((r) => !pickedUp(r)))
        return { kind: "not-picked-up", requests };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(nextPoll, deadline, pickupDeadline) - now);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    stopped = true;
    handle?.abort();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    opts.progress.finish();
  }
}

function isTransient(err: unknown): boolean {
  const code = httpCode(err);
  if (code === undefined) return true; // a transport error
  return code === 429 || code >= 500;
}

/** Progress on stderr: live lines on a terminal, a plain line per change otherwise. */
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #quiet: boolean;
  readonly #started = Date.now();
  readonly #last = new Map<string, string>();
  #lines = 0;

  constructor(opts: { quiet?: boolean; out?: NodeJS.WriteStream } = {}) {
    this.#out = opts.out ?? process.stderr;
    this.#live = this.#out.isTTY === true;
    this.#quiet = opts.quiet ?? false;
  }

  update(requests: InternalRequest[]): void {
    if (this.#quiet) return;
    if (this.#live) {
      this.#render(requests);
      return;
    }
    for (const r of requests) {
      const name = r.metadata.name as string;
      const text = `${reasonOf(r)}: ${oneLine(messageOf(r))}`;
      if (this.#last.get(name) === text) continue;
      this.#last.set(name, text);
      this.#out.write(`${name}: ${text}\n`);
    }
  }

  /** A line outside the per-request lines (retries and the like). */
  note(text: string): void {
    if (this.#quiet) return;
    this.#clear();
    this.#out.write(`isc: ${text}\n`);
  }

  finish(): void {
    // Live lines stay on the screen as the final state.
    this.#lines = 0;
  }

  #clear(): void {
    if (this.#lines > 0) this.#out.write(`\x1b[${this.#lines}F\x1b[J`);
    this.#lines = 0;
  }

  #render(requests: InternalRequest[]): void {
    const width = Math.max(20, (this.#out.columns ?? 100) - 1);
    const elapsed = formatDuration(Math.round((Date.now() - this.#started) / 1000) * 1000);
    const nameWidth = Math.max(0, ...requests.map((r) => (r.metadata.name ?? "").length));
    const lines = requests.map((r) => {
      const mark = isFinished(r) ? (reasonOf(r) === "Succeeded" ? "✓" : "✗") : "…";
      const line = `${mark} ${(r.metadata.name ?? "").padEnd(nameWidth)}  ${reasonOf(r)}: ${oneLine(messageOf(r))}`;
      return line.length > width ? `${line.slice(0, width - 1)}…` : line;
    });
    lines.push(`  (${elapsed})`);
    this.#clear();
    this.#out.write(lines.map((l) => `\x1b[2K${l}\n`).join(""));
    this.#lines = lines.length;
  }
}
