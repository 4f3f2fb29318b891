// `isc request wait`, and what every wait ends with: outputs, messages and the exit code release
// scripts expect (0 succeeded, 21 failed/rejected/cancelled, 124 timed out), and 22 when no controller
// took a request up in time.
import { constants } from "node:os";
import type { InternalRequest } from "../generated/crds.ts";
import { formatDuration } from "../policy/duration.ts";
import { cancelRequest } from "./request-cancel.ts";
import { UsageError } from "./request-errors.ts";
import { bool, durationFlag, type Session, type Subcommand, str, type Values } from "./request-flags.ts";
import { defaultHeartbeatLease, heartbeatLeaseFlag, lastSeen, pickedUp } from "./request-heartbeat.ts";
import {
  checkResultsOptions,
  emitResults,
  formatObjects,
  isFinished,
  messageOf,
  oneLine,
  type ResultsOptions,
  reasonOf,
  succeededCondition,
} from "./request-output.ts";
import { Progress, type WaitOutcome, waitForRequests } from "./request-wait.ts";

export const exitSucceeded = 0;
export const exitFailed = 21;
export const exitNotPickedUp = 22;
export const exitTimedOut = 124;

export const pickupFlagsHelp = `  --pickup-timeout D    give up (exit 22) when a request still has no status after D: no controller
                        has taken it up; the message says when a controller was last seen (default
                        2m; 0: wait for the full timeout regardless)
  --heartbeat-lease NS/NAME
                        where the controller's heartbeat Lease is (default ${defaultHeartbeatLease})`;

/** --pickup-timeout and --heartbeat-lease. */
export function pickupOptions(values: Values): {
  pickupTimeoutMs: number;
  heartbeatLease: { namespace: string; name: string };
} {
  return {
    pickupTimeoutMs: durationFlag(str(values, "pickup-timeout") ?? "2m", "--pickup-timeout", true),
    heartbeatLease: heartbeatLeaseFlag(str(values, "heartbeat-lease") ?? defaultHeartbeatLease),
  };
}

export const pickupFlags = {
  "pickup-timeout": { type: "string" },
  "heartbeat-lease": { type: "string" },
} as const;

export const resultsFlagsHelp = `  --results FORMAT      json (default): print the results as a JSON object on stdout (for several
                        requests, an object keyed by request name); none: print nothing
  --results-dir DIR     write one file per result into DIR (file name = result name, content =
                        value, no trailing newline), as Tekton steps hand results on; for several
                        requests DIR/<request>/<result>. Implies --results none unless given`;

const help = `Usage: isc request wait (NAME... | -l SELECTOR) [flags]

Waits until every named request (or every request matching the label selector) has finished, showing
progress on stderr: a live line per request on a terminal, a line per change otherwise.

Exit codes: 0 all succeeded; 21 any failed, was rejected, cancelled or timed out on the controller's
clock (each one's condition message is printed); 22 no controller took one up within
--pickup-timeout; 124 --timeout passed first; 1 API errors; 2 usage.

Flags:
  -l, --selector SEL    wait for all requests matching this label selector (at least one must exist)
  --timeout DURATION    how long to wait, as a Go duration (default 1h)
  --cancel-on-timeout   cancel the unfinished requests when --timeout or --pickup-timeout passes, or
                        on SIGINT/SIGTERM
${pickupFlagsHelp}
${resultsFlagsHelp}
  -q, --quiet           no progress lines
`;

/** Resolves results flags: --results defaults to json, or none when --results-dir is given. */
export function resultsOptions(values: Values): ResultsOptions {
  const resultsDir = str(values, "results-dir");
  const opts = { results: str(values, "results") ?? (resultsDir ? "none" : "json"), resultsDir };
  checkResultsOptions(opts);
  return opts;
}

export interface FinishOptions {
  timeoutMs: number;
  pickupTimeoutMs: number;
  heartbeatLease: { namespace: string; name: string };
  cancelUnfinished: boolean;
  results: ResultsOptions;
  /** Print the final objects in this format instead of results. */
  output?: string;
}

/** Reports an outcome and returns the exit code. */
export async function finishWait(
  session: Session,
  outcome: WaitOutcome,
  opts: FinishOptions,
): Promise<number> {
  const { requests } = outcome;
  if (outcome.kind === "finished") {
    const failed = requests.filter((r) => succeededCondition(r)?.status === "False");
    for (const r of failed)
      process.stderr.write(`isc: ${r.metadata.name} ${reasonOf(r)}: ${oneLine(messageOf(r))}\n`);
    process.stdout.write(
      opts.output
        ? formatObjects(requests, opts.output, requests.length === 1)
        : emitResults(requests, opts.results),
    );
    return failed.length > 0 ? exitFailed : exitSucceeded;
  }
  const unfinished = requests.filter((r) => !isFinished(r));
  const what = unfinished.map(describeShort).join(", ");
  if (outcome.kind === "timeout")
    process.stderr.write(`isc: timed out after ${formatDuration(opts.timeoutMs)} waiting for ${what}\n`);
  else if (outcome.kind === "not-picked-up") {
    const names = requests.filter((r) => !pickedUp(r)).map((r) => r.metadata.name);
    const seen = await lastSeen(session.kubeConfig, opts.heartbeatLease);
    process.stderr.write(
      `isc: no controller has picked up ${names.join(", ")} after ${formatDuration(opts.pickupTimeoutMs)} (no status yet); ${seen}\n`,
    );
  } else process.stderr.write(`isc: ${outcome.signal} while waiting for ${what}\n`);
  if (opts.cancelUnfinished) {
    for (const r of unfinished) {
      const name = r.metadata.name as string;
      try {
        const { result } = await cancelRequest(session, name);
        if (result !== "finished") process.stderr.write(`isc: cancelled ${name}\n`);
      } catch (err) {
        process.stderr.write(`isc: could not cancel ${name}: ${(err as Error).message.split("\n")[0]}\n`);
      }
    }
  }
  if (outcome.kind === "timeout") return exitTimedOut;
  if (outcome.kind === "not-picked-up") return exitNotPickedUp;
  return 128 + (constants.signals[outcome.signal] ?? 15);
}

const describeShort = (r: InternalRequest) =>
  `${r.metadata.name} (${reasonOf(r)}${messageOf(r) ? `: ${oneLine(messageOf(r))}` : ""})`;

export const waitCommand: Subcommand = {
  help,
  options: {
    selector: { type: "string", short: "l" },
    timeout: { type: "string", default: "1h" },
    "cancel-on-timeout": { type: "boolean" },
    ...pickupFlags,
    results: { type: "string" },
    "results-dir": { type: "string" },
    quiet: { type: "boolean", short: "q" },
  },
  async run(session: Session, values: Values, names: string[]): Promise<number> {
    const selector = str(values, "selector");
    if (names.length > 0 && selector)
      throw new UsageError("wait: give request names or -l SELECTOR, not both");
    if (names.length === 0 && !selector) throw new UsageError("wait: give request names or -l SELECTOR");
    const timeoutMs = durationFlag(str(values, "timeout") as string, "--timeout");
    const results = resultsOptions(values);
    const pickup = pickupOptions(values);
    const outcome = await waitForRequests({
      kubeConfig: session.kubeConfig,
      client: session.client,
      namespace: session.namespace,
      names: names.length > 0 ? [...new Set(names)] : undefined,
      selector,
      timeoutMs,
      pickupTimeoutMs: pickup.pickupTimeoutMs,
      progress: new Progress({ quiet: bool(values, "quiet") }),
    });
    return finishWait(session, outcome, {
      timeoutMs,
      ...pickup,
      cancelUnfinished: bool(values, "cancel-on-timeout"),
      results,
    });
  },
};
