// Resolves an InternalRequest's Tekton timeouts against a service's default and maximum.
import { formatDuration, parseDuration } from "./duration.ts";

/** Pipeline timeout when neither the request nor the service gives one: Tekton's own default
 *  (config-defaults default-timeout-minutes: 60), stated explicitly so our watchdog agrees with Tekton. */
export const DEFAULT_PIPELINE_TIMEOUT_MS = 60 * 60 * 1000;

/** Longest wait for a run to start when neither the request nor the service says: nothing waits
 *  without end (a Tekton that never starts the run, a queue that never admits it). */
export const DEFAULT_QUEUE_TIMEOUT_MS = 24 * 60 * 60 * 1000;

export interface Timeouts {
  /** 0 means no timeout (only possible without a service maximum). */
  pipelineMs: number;
  tasksMs?: number;
  finallyMs?: number;
  /** Longest wait for the run to start (a concurrency slot, a private admission queue), from the
   *  request's creation. Never part of the run's own timeouts. */
  queueMs: number;
}

export type TimeoutsResult =
  | { ok: true; timeouts: Timeouts; notes: string[] }
  | { ok: false; message: string };

type Asked = { pipeline?: string; tasks?: string; finally?: string; queue?: string };
type Field = keyof Asked;

export interface TimeoutLimits {
  defaultMs?: number;
  /** 0 or undefined: no maximum. */
  maximumMs?: number;
  /** Where the limits are set, for messages, e.g. "the InternalServicesConfig's rawPipelineRequests";
   *  default: the service. */
  owner?: string;
  /** The longest wait to start: the default of a request's queue timeout and its cap. */
  queueMs?: number;
}

/** `field` names are prefixed with `prefix` in messages (e.g. "spec.timeouts"). */
export function resolveTimeouts(
  asked: Asked | undefined,
  limits: TimeoutLimits,
  prefix = "spec.timeouts",
): TimeoutsResult {
  const maximum = limits.owner ? `${limits.owner}.timeouts.maximum` : "the service maximum";
  const defaultFrom = limits.owner ? `${limits.owner}.timeouts.default` : "the service's timeouts.default";
  const parsed: Partial<Record<Field, number>> = {};
  for (const field of ["pipeline", "tasks", "finally", "queue"] as const) {
    const text = asked?.[field];
    if (text === undefined) continue;
    try {
      parsed[field] = parseDuration(text);
    } catch (err) {
      return { ok: false, message: `${prefix}.${field}: ${(err as Error).message}` };
    }
    if ((parsed[field] ?? 0) < 0) return { ok: false, message: `${prefix}.${field} must not be negative` };
  }

  const notes: string[] = [];
  const max = limits.maximumMs || undefined;
  // A request asking for more than the service allows still runs, with the maximum (and a note saying so).
  const cap = (what: string, ms: number): number => {
    if (max === undefined || (ms !== 0 && ms <= max)) return ms;
    const asked = ms === 0 ? '"0" (no timeout)' : formatDuration(ms);
    notes.push(`${what} ${asked} capped at ${maximum} ${formatDuration(max)}`);
    return max;
  };

  const pipelineFrom =
    parsed.pipeline !== undefined
      ? `${prefix}.pipeline`
      : limits.defaultMs !== undefined
        ? defaultFrom
        : "the default pipeline timeout";
  const pipelineAsked = parsed.pipeline ?? limits.defaultMs ?? DEFAULT_PIPELINE_TIMEOUT_MS;
  const pipelineMs = cap(pipelineFrom, pipelineAsked);
  const timeouts: Timeouts = { pipelineMs, queueMs: queueTimeout(parsed.queue, limits, prefix, notes) };
  if (parsed.tasks !== undefined) timeouts.tasksMs = cap(`${prefix}.tasks`, parsed.tasks);
  if (parsed.finally !== undefined) timeouts.finallyMs = cap(`${prefix}.finally`, parsed.finally);

  const problem = pipelineMs === 0 ? undefined : inconsistency(timeouts, prefix);
  if (problem) {
    const capped = pipelineMs !== pipelineAsked ? `, capped at ${maximum}` : "";
    const source = `${formatDuration(pipelineMs)}, from ${pipelineFrom}${capped}`;
    return {
      ok: false,
      message: `${problem}: the pipeline timeout is ${source}; give tasks and finally timeouts that fit in it`,
    };
  }
  return { ok: true, timeouts, notes };
}

/** The request's queue timeout, capped at the limit (with a note); without one asked, the limit.
 *  Without a limit of the service's (or the config's), the default is the limit: a concurrency slot
 *  or an admission queue is never held longer than that. */
function queueTimeout(
  asked: number | undefined,
  limits: TimeoutLimits,
  prefix: string,
  notes: string[],
): number {
  const max = limits.queueMs || DEFAULT_QUEUE_TIMEOUT_MS;
  if (asked !== undefined && asked !== 0 && asked <= max) return asked;
  if (asked !== undefined) {
    const what = asked === 0 ? '"0" (no limit)' : formatDuration(asked);
    const where = !limits.queueMs
      ? "the longest allowed without a service's timeouts.queue,"
      : limits.owner
        ? `${limits.owner}.timeouts.queue`
        : "the service's timeouts.queue";
    notes.push(`${prefix}.queue ${what} capped at ${where} ${formatDuration(max)}`);
  }
  return max;
}

// Tekton's PipelineRun validation: with a finite pipeline timeout, tasks and finally must be finite and
// together fit in it.
function inconsistency(t: Timeouts, prefix: string): string | undefined {
  for (const [field, ms] of [
    ["tasks", t.tasksMs],
    ["finally", t.finallyMs],
  ] as const) {
    if (ms === 0) return `${prefix}.${field} "0" (no timeout) is not allowed with a finite pipeline timeout`;
    if (ms !== undefined && ms > t.pipelineMs) {
      return `${prefix}.${field} (${formatDuration(ms)}) must not exceed the pipeline timeout`;
    }
  }
  if (t.tasksMs !== undefined && t.finallyMs !== undefined && t.tasksMs + t.finallyMs > t.pipelineMs) {
    return `${prefix}.tasks (${formatDuration(t.tasksMs)}) + ${prefix}.finally (${formatDuration(t.finallyMs)}) must not exceed the pipeline timeout`;
  }
  return undefined;
}
