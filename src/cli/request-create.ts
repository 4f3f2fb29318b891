// `isc request create`: builds an InternalRequest from flags, creates it, and with --wait waits for it.
import { apiVersionOf, internalRequests } from "../api/resources.ts";
import type { InternalRequest, InternalRequestSpec } from "../generated/crds.ts";
import { formatDuration } from "../policy/duration.ts";
import { UsageError } from "./request-errors.ts";
import {
  bool,
  durationFlag,
  keyValues,
  list,
  type Session,
  type Subcommand,
  str,
  type Values,
} from "./request-flags.ts";
import { formatObjects } from "./request-output.ts";
import { Progress, waitForRequests } from "./request-wait.ts";
import {
  finishWait,
  pickupFlags,
  pickupFlagsHelp,
  pickupOptions,
  resultsFlagsHelp,
  resultsOptions,
} from "./request-wait-command.ts";

const help = `Usage: isc request create (--service NAME | --pipeline-resolver R) [flags]

Creates an InternalRequest in the namespace. Without --wait it prints the new request's name (-o).
With --wait it then waits like "isc request wait" (same progress, results and exit codes: 0, 21, 22,
124), and cancels the request if the wait times out, no controller takes it up within
--pickup-timeout, or it is interrupted (SIGINT/SIGTERM).

Flags:
  --service NAME            the InternalService to call (spec.service)
  --pipeline-resolver R     instead of a service, a raw pipeline through Tekton resolver R (compat;
                            the controller's config must allow-list its source)
  --pipeline-param K=V      a resolver param (url, revision, pathInRepo, ...); repeatable
  -p, --param K=V           a request param (spec.params); repeatable
  -l, --label K=V           a label on the request; repeatable
  --timeout DURATION        spec.timeouts.pipeline, a Go duration (e.g. 30m, 1h30m)
  --service-account NAME    spec.serviceAccount (must be one the service allows)
  --name NAME               the request's name
  --generate-name PREFIX    metadata.generateName (default "<service>-", or "pipeline-")
  -o, --output FORMAT       name (default), json or yaml: the created request; with --wait, the
                            finished request instead of its results
  --wait                    wait until the request finishes
  --wait-timeout DURATION   with --wait: how long to wait (default 1h, or --timeout plus 1m)
${pickupFlagsHelp}
${resultsFlagsHelp}
  -q, --quiet               no progress lines
`;

const outputs = ["name", "json", "yaml"];

/** The request object the flags describe. */
export function buildRequest(values: Values): InternalRequest {
  const service = str(values, "service");
  const resolver = str(values, "pipeline-resolver");
  const pipelineParams = list(values, "pipeline-param");
  if (service && resolver) throw new UsageError("give --service or --pipeline-resolver, not both");
  if (!service && !resolver)
    throw new UsageError(
      "give --service NAME (an InternalService) or --pipeline-resolver R (a raw pipeline)",
    );
  if (!resolver && pipelineParams.length > 0)
    throw new UsageError("--pipeline-param needs --pipeline-resolver");
  const spec: InternalRequestSpec = {};
  if (service) spec.service = service;
  if (resolver) {
    const params = Object.entries(keyValues(pipelineParams, "--pipeline-param") ?? {}).map(
      ([name, value]) => ({
        name,
        value,
      }),
    );
    spec.pipeline = { pipelineRef: { resolver, ...(params.length > 0 ? { params } : {}) } };
  }
  const params = keyValues(list(values, "param"), "--param");
  if (params) spec.params = params;
  const timeout = str(values, "timeout");
  if (timeout !== undefined) {
    durationFlag(timeout, "--timeout", true);
    spec.timeouts = { pipeline: timeout };
  }
  const serviceAccount = str(values, "service-account");
  if (serviceAccount) spec.serviceAccount = serviceAccount;

  const name = str(values, "name");
  const generateName = str(values, "generate-name");
  if (name && generateName) throw new UsageError("give --name or --generate-name, not both");
  const labels = keyValues(list(values, "label"), "--label");
  return {
    apiVersion: apiVersionOf(internalRequests) as InternalRequest["apiVersion"],
    kind: "InternalRequest",
    metadata: {
      ...(name ? { name } : { generateName: generateName ?? `${service ?? "pipeline"}-` }),
      ...(labels ? { labels } : {}),
    },
    spec,
  };
}

export const createCommand: Subcommand = {
  help,
  options: {
    service: { type: "string" },
    "pipeline-resolver": { type: "string" },
    "pipeline-param": { type: "string", multiple: true },
    param: { type: "string", short: "p", multiple: true },
    label: { type: "string", short: "l", multiple: true },
    timeout: { type: "string" },
    "service-account": { type: "string" },
    name: { type: "string" },
    "generate-name": { type: "string" },
    output: { type: "string", short: "o" },
    wait: { type: "boolean" },
    "wait-timeout": { type: "string" },
    ...pickupFlags,
    results: { type: "string" },
    "results-dir": { type: "string" },
    quiet: { type: "boolean", short: "q" },
  },
  async run(session: Session, values: Values, positionals: string[]): Promise<number> {
    if (positionals.length > 0)
      throw new UsageError(`create takes no arguments, got "${positionals.join(" ")}"`);
    const output = str(values, "output");
    if (output !== undefined && !outputs.includes(output))
      throw new UsageError(`-o must be one of ${outputs.join(", ")}, got "${output}"`);
    const wait = bool(values, "wait");
    const waitTimeout = str(values, "wait-timeout");
    const waitOnly = ["wait-timeout", "pickup-timeout", "heartbeat-lease", "results", "results-dir"];
    if (!wait && waitOnly.some((flag) => str(values, flag) !== undefined))
      throw new UsageError(
        "--wait-timeout, --pickup-timeout, --heartbeat-lease, --results and --results-dir need --wait",
      );
    const body = buildRequest(values);
    const results = resultsOptions(values);
    const pickup = pickupOptions(values);
    const requestTimeoutMs = durationFlag(body.spec.timeouts?.pipeline ?? "0", "--timeout", true);
    const timeoutMs = waitTimeout
      ? durationFlag(waitTimeout, "--wait-timeout")
      : requestTimeoutMs > 0
        ? requestTimeoutMs + 60_000
        : 3_600_000;

    const created = await session.client.create(session.namespace, body);
    const name = created.metadata.name as string;
    if (!wait) {
      process.stdout.write(formatObjects([created], output ?? "name", true));
      return 0;
    }
    if (!bool(values, "quiet"))
      process.stderr.write(
        `isc: created InternalRequest ${session.namespace}/${name}; waiting up to ${formatDuration(timeoutMs)}\n`,
      );
    const outcome = await waitForRequests({
      kubeConfig: session.kubeConfig,
      client: session.client,
      namespace: session.namespace,
      names: [name],
      timeoutMs,
      pickupTimeoutMs: pickup.pickupTimeoutMs,
      progress: new Progress({ quiet: bool(values, "quiet") }),
    });
    return finishWait(session, outcome, { timeoutMs, ...pickup, cancelUnfinished: true, results, output });
  },
};
