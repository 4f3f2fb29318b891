// The admission decision for one InternalRequest: pure, no I/O. The reconciler looks up the config and the
// service, calls admit(), and either rejects the request with `message` or runs `run`.
import type {
  InternalRequestSpec,
  InternalRequestSpecPipeline,
  InternalService,
  InternalServicesConfigSpec,
} from "../generated/crds.ts";
import { isAllowed } from "./allowlist.ts";
import { type ConcurrencyPlan, concurrencyKey } from "./concurrency.ts";
import { parseDuration } from "./duration.ts";
import { droppedLabelsNote, propagatedLabels } from "./labels.ts";
import { validateParams } from "./schema.ts";
import { checkPipelineSource } from "./sources.ts";
import { listCapped, quote } from "./text.ts";
import { resolveTimeouts, type Timeouts, type TimeoutsResult } from "./timeouts.ts";

export { DEFAULT_PIPELINE_TIMEOUT_MS, DEFAULT_QUEUE_TIMEOUT_MS } from "./timeouts.ts";

export interface AdmitInput {
  /** Name of the remote workspace (cluster) the request lives in. */
  workspace: string;
  /** The workspace is one tenants create themselves (kcp): allow-list entries must name it. */
  namedOnly?: boolean;
  namespace: string;
  request: InternalRequestSpec;
  /** spec of the InternalServicesConfig "config"; undefined when it does not exist. */
  config: InternalServicesConfigSpec | undefined;
  /** The InternalService named by request.service; undefined when not found (or not asked for). */
  service: InternalService | undefined;
  /** The request's metadata.labels (some reach the run, see propagatedLabels). */
  labels?: Record<string, string>;
}

export interface RunPlan {
  service?: string;
  pipelineRef?: { resolver: string; params: { name: string; value: string }[] };
  pipelineName?: string;
  /** PipelineRun params, after the service schema's defaults. */
  params: Record<string, string>;
  serviceAccount?: string;
  /** Where the run goes (the service's runNamespace, or the config's for raw requests); absent: the
   *  controller's namespace. */
  namespace?: string;
  timeouts: Timeouts;
  maxConcurrentRuns?: number;
  /** Param names whose values must never be logged or written to Events or status. */
  sensitiveParams: string[];
  /** What admission changed, for the user, e.g. "spec.timeouts.pipeline 3h0m0s capped at ...". */
  notes: string[];
  /** Labels for the run besides the controller's own: the request's allowed ones, then the service's. */
  labels?: Record<string, string>;
  /** The service's annotations for its runs. */
  annotations?: Record<string, string>;
  /** The request's concurrency key and what to do while another run of it is live (see
   *  policy/concurrency.ts); absent: no key. */
  concurrency?: ConcurrencyPlan;
}

export type Denied = { allowed: false; rule: string; message: string };
export type Admission = { allowed: true; run: RunPlan } | Denied;

const deny = (rule: string, message: string): Denied => ({ allowed: false, rule, message });

/** What can be decided from who asks and for which service alone, before reading a request whole
 *  (the cache may hold only its identity and spec.service): a rejection, or undefined. */
export function callerRejection(
  input: Omit<AdmitInput, "request"> & { request: Pick<InternalRequestSpec, "service"> },
): Denied | undefined {
  const { workspace, namespace, config, service, namedOnly } = input;
  if (config === undefined) {
    return deny(
      "ConfigMissing",
      'there is no InternalServicesConfig "config" in the controller namespace, so every request is rejected (ask the service owners to create it with spec.allowList)',
    );
  }
  // Phrased only for a rejection: every reconcile of a new or running request asks.
  const where = () => `namespace ${quote(namespace)} in workspace ${quote(workspace)}`;
  const suggestion = () =>
    namedOnly
      ? quote(`${workspace}/${namespace}`)
      : `${quote(`${workspace}/${namespace}`)} or ${quote(namespace)}`;
  if ((config.allowList ?? []).length === 0) {
    return deny(
      "NamespaceNotAllowed",
      `${where()} is not allowed: the InternalServicesConfig allowList is empty, so every request is rejected (ask the service owners to add ${suggestion()} to spec.allowList of config in the controller namespace)`,
    );
  }
  if (!isAllowed(config.allowList ?? [], workspace, namespace, namedOnly)) {
    return deny(
      "NamespaceNotAllowed",
      `${where()} is not in the InternalServicesConfig allowList (ask the service owners to add ${suggestion()} to spec.allowList of config in the controller namespace)`,
    );
  }
  const name = input.request.service;
  if (name === undefined) return undefined;
  const svc = () => `InternalService ${quote(name)}`;
  if (service === undefined) {
    return deny(
      "ServiceNotFound",
      `${svc()} does not exist in the controller namespace (check spec.service, or ask the service owners which services exist)`,
    );
  }
  const allowedNamespaces = service.spec.allowedNamespaces ?? [];
  if (allowedNamespaces.length > 0 && !isAllowed(allowedNamespaces, workspace, namespace, namedOnly)) {
    return deny(
      "ServiceNamespaceNotAllowed",
      `${where()} may not use ${svc()}: it is not in the service's allowedNamespaces (ask the owners of ${svc()} to add ${suggestion()} to its spec.allowedNamespaces)`,
    );
  }
  return undefined;
}

export function admit(input: AdmitInput): Admission {
  const rejected = callerRejection(input);
  if (rejected) return rejected;
  const { request, config } = input as AdmitInput & { config: InternalServicesConfigSpec };
  if ((request.service === undefined) === (request.pipeline === undefined)) {
    return deny(
      "InvalidRequest",
      "spec must set exactly one of service (the name of a registered InternalService) or pipeline (a raw pipelineRef)",
    );
  }
  const admitted =
    request.pipeline !== undefined
      ? admitRaw(request, request.pipeline, config)
      : admitService(input, request.service ?? "", input.service as InternalService);
  return admitted.allowed ? withConcurrency(withLabels(admitted.run, input), input) : admitted;
}

/** The concurrency key the service (or, for raw requests, the config) declares; a request lacking
 *  what the key is made of has none, and a note says so. An invalid declaration refuses the request:
 *  running it without the exclusion its owners asked for could run an operation twice. */
function withConcurrency(run: RunPlan, input: AdmitInput): Admission {
  const raw = input.request.pipeline !== undefined;
  const spec = raw ? input.config?.rawPipelineRequests?.concurrency : input.service?.spec.concurrency;
  if (!spec) return { allowed: true, run };
  const key = concurrencyKey({
    spec,
    workspace: input.workspace,
    namespace: input.namespace,
    // A raw request's operation includes the pipeline it runs (as checked).
    scope: run.service ?? JSON.stringify(run.pipelineRef),
    labels: input.labels,
    params: run.params,
    sensitiveParams: run.sensitiveParams,
  });
  if ("plan" in key) return { allowed: true, run: { ...run, concurrency: key.plan } };
  if ("missing" in key)
    return {
      allowed: true,
      run: { ...run, notes: [...run.notes, `no concurrency key (the request has no ${key.missing})`] },
    };
  if (!raw) return invalidService(`InternalService ${quote(run.service ?? "")}`, key.error);
  return deny(
    "InvalidConfig",
    `the InternalServicesConfig is misconfigured (rawPipelineRequests: ${key.error}); this is not the request's fault: ask the service owners to fix it`,
  );
}

/** The run's labels: the request's that the config allows (the rest named in a note), then the
 *  service's (or, for raw requests, the config's rawPipelineRequests'), which win; and their annotations. */
function withLabels(run: RunPlan, input: AdmitInput): RunPlan {
  const { labels, dropped } = propagatedLabels(input.labels, input.config?.propagateLabels);
  const own = input.request.pipeline === undefined ? input.service?.spec : input.config?.rawPipelineRequests;
  const all = { ...labels, ...own?.runLabels };
  const note = droppedLabelsNote(dropped);
  return {
    ...run,
    ...(Object.keys(all).length > 0 ? { labels: all } : {}),
    ...(own?.runAnnotations && Object.keys(own.runAnnotations).length > 0
      ? { annotations: { ...own.runAnnotations } }
      : {}),
    notes: note ? [...run.notes, note] : run.notes,
  };
}

function admitService(input: AdmitInput, name: string, service: InternalService): Admission {
  const { request } = input;
  const svc = `InternalService ${quote(name)}`;
  const spec = service.spec;
  const { pipelineRef, pipelineName } = spec.pipeline ?? {};
  if ((pipelineRef === undefined) === (pipelineName === undefined)) {
    return invalidService(svc, "spec.pipeline must set exactly one of pipelineRef or pipelineName");
  }

  const checked = validateParams(spec.paramsSchema, request.params, spec.sensitiveParams);
  if (!checked.ok && checked.kind === "schema") {
    return deny(
      "InvalidServiceSchema",
      `${svc} has an invalid spec.paramsSchema (${checked.error}); this is not the request's fault: ask the service owners to fix the schema`,
    );
  }
  if (!checked.ok) {
    const errors = listCapped(checked.errors, 10, "; ");
    return deny("InvalidParams", `spec.params do not match the paramsSchema of ${svc}: ${errors}`);
  }

  const allowedAccounts = [spec.serviceAccount, ...(spec.allowedServiceAccounts ?? [])].filter(
    (sa): sa is string => sa !== undefined,
  );
  if (request.serviceAccount !== undefined && !allowedAccounts.includes(request.serviceAccount)) {
    const choices =
      allowedAccounts.length > 0
        ? `it allows: ${listCapped(allowedAccounts.map((sa) => quote(sa)))}`
        : "it allows no choice of ServiceAccount";
    return deny(
      "ServiceAccountNotAllowed",
      `spec.serviceAccount ${quote(request.serviceAccount)} is not allowed by ${svc} (${choices}; leave spec.serviceAccount unset to use the service's default)`,
    );
  }

  let limits: { defaultMs?: number; maximumMs?: number; queueMs?: number };
  try {
    limits = {
      defaultMs: optionalDuration(spec.timeouts?.default),
      maximumMs: optionalDuration(spec.timeouts?.maximum),
      queueMs: optionalDuration(spec.timeouts?.queue),
    };
    // Read when the run is cleaned up; a service that cannot say how long is refused up front.
    optionalDuration(spec.retention?.keepFinishedPipelineRuns);
  } catch (err) {
    return invalidService(svc, (err as Error).message);
  }
  const timed = resolveTimeouts(request.timeouts, limits);
  if (!timed.ok) return deny("InvalidTimeout", timed.message);

  return plan(timed, {
    service: name,
    pipelineRef: pipelineRef && copyRef(pipelineRef),
    pipelineName,
    params: checked.params,
    serviceAccount: request.serviceAccount ?? spec.serviceAccount,
    namespace: spec.runNamespace,
    maxConcurrentRuns: spec.maxConcurrentRuns,
    sensitiveParams: [...(spec.sensitiveParams ?? [])],
  });
}

/** Built-in limits of raw pipeline requests, where the config's rawPipelineRequests says nothing. */
export const rawDefaults = {
  timeoutDefaultMs: 60 * 60 * 1000,
  timeoutMaximumMs: 24 * 60 * 60 * 1000,
  maxConcurrentRuns: 100,
  maxParamsSize: 65536,
} as const;

function admitRaw(
  request: InternalRequestSpec,
  pipeline: InternalRequestSpecPipeline,
  config: InternalServicesConfigSpec,
): Admission {
  const source = checkPipelineSource(pipeline.pipelineRef, config);
  if (!source.ok) return deny("PipelineSourceNotAllowed", source.message);

  const raw = config.rawPipelineRequests ?? {};
  const params = request.params ?? {};
  const size = Object.entries(params).reduce((n, [k, v]) => n + k.length + v.length, 0);
  const maxSize = raw.maxParamsSize ?? rawDefaults.maxParamsSize;
  if (size > maxSize) {
    return deny(
      "ParamsTooLarge",
      `spec.params hold ${size} characters (names and values), over the ${maxSize} allowed for raw pipeline requests (rawPipelineRequests.maxParamsSize of the InternalServicesConfig): pass large data by reference, or use an InternalService`,
    );
  }
  let limits: { defaultMs: number; maximumMs: number; queueMs?: number; owner: string };
  try {
    limits = {
      defaultMs: optionalDuration(raw.timeouts?.default) ?? rawDefaults.timeoutDefaultMs,
      maximumMs: optionalDuration(raw.timeouts?.maximum) ?? rawDefaults.timeoutMaximumMs,
      queueMs: optionalDuration(raw.timeouts?.queue),
      owner: "the InternalServicesConfig's rawPipelineRequests",
    };
  } catch (err) {
    return deny(
      "InvalidConfig",
      `the InternalServicesConfig is misconfigured (rawPipelineRequests: ${(err as Error).message}); this is not the request's fault: ask the service owners to fix it`,
    );
  }
  // The legacy fields under spec.pipeline apply only when the newer top-level ones are absent.
  const timed = request.timeouts
    ? resolveTimeouts(request.timeouts, limits)
    : resolveTimeouts(pipeline.timeouts, limits, "spec.pipeline.timeouts");
  if (!timed.ok) return deny("InvalidTimeout", timed.message);
  // The original controller let callers pick any ServiceAccount in the internal namespace.
  const serviceAccount = request.serviceAccount ?? pipeline.serviceAccountName;
  const allowedAccounts = config.allowedServiceAccounts ?? [];
  if (serviceAccount !== undefined && !allowedAccounts.includes(serviceAccount)) {
    const choices =
      allowedAccounts.length > 0 ? `allowed: ${listCapped(allowedAccounts)}` : "none is allowed";
    return deny(
      "ServiceAccountNotAllowed",
      `spec.serviceAccount ${quote(serviceAccount)} is not allowed for raw pipeline requests (${choices} by spec.allowedServiceAccounts of the InternalServicesConfig; leave it unset to run as Tekton's default)`,
    );
  }
  return plan(timed, {
    // The resolver params as checked, in canonical form (e.g. a URL as parsed).
    pipelineRef: { resolver: pipeline.pipelineRef.resolver, params: source.params },
    params: { ...params },
    serviceAccount,
    namespace: raw.namespace,
    maxConcurrentRuns: raw.maxConcurrentRuns ?? rawDefaults.maxConcurrentRuns,
    sensitiveParams: [],
  });
}

function plan(timed: TimeoutsResult & { ok: true }, run: Omit<RunPlan, "timeouts" | "notes">): Admission {
  // Drop absent optionals so plans compare and serialise cleanly.
  const clean = Object.fromEntries(Object.entries(run).filter(([, v]) => v !== undefined)) as typeof run;
  return { allowed: true, run: { ...clean, timeouts: timed.timeouts, notes: timed.notes } };
}

function copyRef(ref: {
  resolver: string;
  params?: { name: string; value: string }[];
}): RunPlan["pipelineRef"] {
  return { resolver: ref.resolver, params: (ref.params ?? []).map(({ name, value }) => ({ name, value })) };
}

function invalidService(svc: string, why: string): Admission {
  return deny(
    "InvalidService",
    `${svc} is misconfigured (${why}); this is not the request's fault: ask the service owners to fix it`,
  );
}

function optionalDuration(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text);
}

/** A copy of `params` with the values of `sensitive` names replaced by "<redacted>", for logs and Events. */
export function redactParams(
  params: Record<string, string>,
  sensitive: readonly string[],
): Record<string, string> {
  const hidden = new Set(sensitive);
  return Object.fromEntries(
    Object.entries(params).map(([name, value]) => [name, hidden.has(name) ? "<redacted>" : value]),
  );
}
