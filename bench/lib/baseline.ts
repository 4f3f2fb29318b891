// The raw ceiling: a plain client (bench/lib/http.ts: keep-alive HTTPS, no controller, no watches, no
// library) performing, per request, the same number and kind of API writes a request costs with the
// controller — measured from the audit log of a controller run — plus the bench's own two (creating the
// request, the executor's status patch), at the same concurrency, against the same planes.
import { randomBytes } from "node:crypto";
import { finalizer, isValidLabelValue } from "../../src/requests/naming.ts";
import { succeededRunStatus } from "./executor.ts";
import { mergePatch, paths, type RawClient } from "./http.ts";
import type { BenchPlanes } from "./planes.ts";
import { requestBody, runLabel, serviceName } from "./scenarios.ts";
import { type Distribution, distribution, pool, round } from "./stats.ts";
import { TimedWatch } from "./watch.ts";

export interface BaselineResult {
  requests: number;
  inFlight: number;
  /** Writes each request performed (mean), and the mix they came from. */
  writesPerRequest: number;
  mix: Record<string, number>;
  durationS: number;
  requestsPerSecond: number;
  writesPerSecond: number;
  /**
   * The same stages the controller is measured on, for the plain client doing the same writes in
   * the same order: request created → PipelineRun created, PipelineRun done → terminal status.
   */
  stages: { createToRun: Distribution; doneToTerminal: Distribution };
  /** One write's round trip at this concurrency, ms. */
  writeRtt: Distribution;
  /** The plain client's own CPU (this process), seconds. */
  clientCpuSeconds: number;
  /** With `watched`: the events the bench's two watches received. */
  watchedEvents?: number;
}

/** The order a request's writes happen in with the controller; kinds not listed go last. */
const firsts = [
  "public create internalrequests",
  "public patch internalrequests",
  "private create pipelineruns",
  "public patch internalrequests/status",
  "public create events",
  "private patch pipelineruns/status",
];
const rests = [
  "public patch internalrequests/status",
  "public create events",
  "private delete pipelineruns",
  "public patch internalrequests",
];

/**
 * The remote side for the plain client, when it is not the public kube-apiserver (where it makes
 * fresh namespaces and does every write as the bench's admin): kcp, where the tenants create the
 * requests in their workspaces and the controller's writes go through the export's virtual workspace
 * as its identity.
 */
export interface BaselineRemote {
  /** Creates the requests (the tenants' identity). */
  create: RawClient;
  /** Makes the controller's writes on the remote side. */
  write: RawClient;
  /** Slot i of the load: its namespace, its path prefix on each client, its workspace's name. */
  slots: { namespace: string; createPrefix: string; writePrefix: string; workspace: string }[];
}

interface RequestState {
  ns: string;
  createPrefix: string;
  writePrefix: string;
  workspace: string;
  name: string;
  runName: string;
  resourceVersion: string;
  uid: string;
  runUid: string;
  runDeleted?: boolean;
  patches: number;
  statusPatches: number;
  pending: number;
}

/**
 * `mix`: writes per request by kind (fractions allowed: request i performs floor or ceil so that the
 * totals match). The bench's own create and executor patch are added to it.
 */
export async function rawBaseline(
  bench: BenchPlanes,
  mix: Record<string, number>,
  count: number,
  namespaceCount: number,
  inFlight: number,
  log: (msg: string) => void,
  remote?: BaselineRemote,
  watched = false,
): Promise<BaselineResult> {
  const full: Record<string, number> = {
    ...mix,
    "public create internalrequests": (mix["public create internalrequests"] ?? 0) + 1,
    "private patch pipelineruns/status": (mix["private patch pipelineruns/status"] ?? 0) + 1,
  };
  const tag = `raw-${randomBytes(2).toString("hex")}`;
  let slots = remote?.slots;
  if (!slots) {
    const namespaces = Array.from({ length: namespaceCount }, (_, i) => `${tag}-${i}`);
    await pool(namespaceCount, 25, async (i) => {
      await bench.raw.public.retrying("POST", paths.namespaces(), { metadata: { name: namespaces[i] } });
    });
    slots = namespaces.map((namespace) => ({
      namespace,
      createPrefix: "",
      writePrefix: "",
      workspace: "public",
    }));
  }
  const creator = remote?.create ?? bench.raw.public;
  const writer = remote?.write ?? bench.raw.public;
  const privateNs = `${tag}-private`;
  await bench.raw.private.retrying("POST", paths.namespaces(), { metadata: { name: privateNs } });

  const rtts: number[] = [];
  let writes = 0;
  const plan = (i: number): string[] => {
    const counts = Object.fromEntries(
      Object.entries(full).map(([kind, perRequest]) => {
        const base = Math.floor(perRequest);
        const extra = Math.round((perRequest - base) * count);
        return [kind, base + (i < extra ? 1 : 0)];
      }),
    );
    const steps: string[] = [];
    const take = (kind: string, n: number) => {
      const k = Math.min(n, counts[kind] ?? 0);
      for (let j = 0; j < k; j++) steps.push(kind);
      counts[kind] = (counts[kind] ?? 0) - k;
    };
    for (const kind of firsts) take(kind, 1);
    for (const kind of rests) take(kind, Number.POSITIVE_INFINITY);
    for (const kind of Object.keys(counts).sort()) take(kind, Number.POSITIVE_INFINITY);
    return steps;
  };

  const timed = async (client: RawClient, method: string, path: string, body?: unknown, type?: string) => {
    const res = await client.call(method, path, body, type);
    rtts.push(res.ms);
    writes++;
    return JSON.parse(res.text) as { metadata?: { resourceVersion?: string; uid?: string } };
  };

  const write = async (kind: string, s: RequestState): Promise<void> => {
    const irPath = `${s.writePrefix}${paths.requests(s.ns)}/${s.name}`;
    const runPath = `${paths.pipelineRuns(privateNs)}/${s.runName}`;
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const remember = (obj: { metadata?: { resourceVersion?: string; uid?: string } }) => {
      s.resourceVersion = obj.metadata?.resourceVersion ?? s.resourceVersion;
    };
    switch (kind) {
      case "public create internalrequests": {
        const obj = await timed(
          creator,
          "POST",
          `${s.createPrefix}${paths.requests(s.ns)}`,
          requestBody(s.name, { [runLabel]: tag }),
        );
        remember(obj);
        s.uid = obj.metadata?.uid ?? "";
        return;
      }
      case "public patch internalrequests": {
        // Finalizer on, then off (as the controller does), with the resourceVersion precondition.
        const on = s.patches++ % 2 === 0;
        remember(
          await timed(
            writer,
            "PATCH",
            irPath,
            { metadata: { resourceVersion: s.resourceVersion, finalizers: on ? [finalizer] : [] } },
            mergePatch,
          ),
        );
        return;
      }
      case "public patch internalrequests/status": {
        const final = ++s.statusPatches >= s.pending;
        const condition = final
          ? {
              status: "True",
              reason: "Succeeded",
              message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
            }
          : { status: "Unknown", reason: "Running", message: "accepted; internal PipelineRun started" };
        const status = {
          conditions: [{ type: "Succeeded", ...condition, lastTransitionTime: now, observedGeneration: 1 }],
          observedGeneration: 1,
          startTime: now,
          pipelineRun: `${privateNs}/${s.runName}`,
          service: serviceName,
          ...(final ? { completionTime: now, results: { digest: "sha256:0", signature: "sig" } } : {}),
        };
        remember(
          await timed(
            writer,
            "PATCH",
            `${irPath}/status`,
            { metadata: { resourceVersion: s.resourceVersion }, status },
            mergePatch,
          ),
        );
        return;
      }
      case "public create events": {
        // kcp's virtual workspace refuses an Event without its kind.
        await timed(writer, "POST", `${s.writePrefix}${paths.events(s.ns)}`, {
          apiVersion: "v1",
          kind: "Event",
          metadata: { generateName: `${s.name}.`, namespace: s.ns },
          involvedObject: {
            apiVersion: "appstudio.redhat.com/v1alpha1",
            kind: "InternalRequest",
            name: s.name,
            namespace: s.ns,
            uid: s.uid,
            resourceVersion: s.resourceVersion,
          },
          type: "Normal",
          reason: "Started",
          message: `internal PipelineRun ${privateNs}/${s.runName} started`,
          source: { component: "raw-baseline" },
          reportingComponent: "raw-baseline",
          reportingInstance: "raw-baseline",
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        });
        return;
      }
      case "private create pipelineruns": {
        const obj = await timed(
          bench.raw.private,
          "POST",
          paths.pipelineRuns(privateNs),
          pipelineRunBody(s, tag),
        );
        s.runUid = obj.metadata?.uid ?? "";
        return;
      }
      case "private patch pipelineruns/status":
        await timed(
          bench.raw.private,
          "PATCH",
          `${runPath}/status`,
          succeededRunStatus(s.runName),
          mergePatch,
        );
        return;
      case "private delete pipelineruns":
        // A repeated delete (the controller retrying one that raced) finds the run gone: replay it as
        // the cheapest write instead of failing the baseline on a 404.
        if (s.runDeleted) return write("other", s);
        await timed(bench.raw.private, "DELETE", runPath, {
          propagationPolicy: "Background",
          ...(s.runUid ? { preconditions: { uid: s.runUid } } : {}),
        });
        s.runDeleted = true;
        return;
      default:
        // A kind this baseline does not model: the cheapest equivalent write, a label patch on the request.
        remember(
          await timed(
            writer,
            "PATCH",
            irPath,
            { metadata: { labels: { "bench.isc.dev/other": String(writes) } } },
            mergePatch,
          ),
        );
    }
  };

  // `watched`: the two watches every controller run has open besides the controller's own (the load's
  // on the requests, the executor's on the runs), on this run's objects, as its admin.
  let watchedEvents = 0;
  const counted = () => {
    watchedEvents++;
  };
  const watches = watched
    ? [
        new TimedWatch(bench.publicAdmin, paths.requests(), `${runLabel}=${tag}`, counted),
        new TimedWatch(bench.privateAdmin, paths.pipelineRuns(privateNs), `${runLabel}=${tag}`, counted),
      ]
    : [];
  await Promise.all(watches.map((w) => w.start()));
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  let planned = 0;
  const createToRun: number[] = [];
  const doneToTerminal: number[] = [];
  await pool(count, inFlight, async (i) => {
    const steps = plan(i);
    planned += steps.length;
    const slot = slots[i % slots.length] as BaselineRemote["slots"][number];
    const s: RequestState = {
      ns: slot.namespace,
      createPrefix: slot.createPrefix,
      writePrefix: slot.writePrefix,
      workspace: slot.workspace,
      // Unique in the run (kcp's namespaces are all "default"), apart from the controller run's and
      // from another baseline's in the same workspaces.
      name: remote ? `${tag}-r-${i}` : `r-${i}`,
      runName: `r-${i}-${randomBytes(8).toString("hex")}`,
      resourceVersion: "",
      uid: "",
      runUid: "",
      patches: 0,
      statusPatches: 0,
      pending: steps.filter((k) => k === "public patch internalrequests/status").length,
    };
    const at: Partial<Record<"created" | "runCreated" | "runDone" | "terminal", number>> = {};
    for (const kind of steps) {
      await write(kind, s);
      const now = performance.now();
      if (kind === "public create internalrequests") at.created ??= now;
      else if (kind === "private create pipelineruns") at.runCreated ??= now;
      else if (kind === "private patch pipelineruns/status") at.runDone ??= now;
      else if (kind === "public patch internalrequests/status" && at.runDone !== undefined)
        at.terminal ??= now;
    }
    if (at.created !== undefined && at.runCreated !== undefined) createToRun.push(at.runCreated - at.created);
    if (at.runDone !== undefined && at.terminal !== undefined) doneToTerminal.push(at.terminal - at.runDone);
  });
  const durationS = (performance.now() - started) / 1000;
  for (const w of watches) w.stop();
  const cpu = process.cpuUsage(cpuBefore);
  log(`  raw baseline: ${count} requests, ${writes} writes in ${durationS.toFixed(1)}s`);
  return {
    requests: count,
    inFlight,
    writesPerRequest: round(planned / count, 3),
    mix: Object.fromEntries(Object.entries(full).map(([k, v]) => [k, round(v, 3)])),
    durationS: round(durationS),
    requestsPerSecond: round(count / durationS),
    writesPerSecond: round(writes / durationS),
    stages: { createToRun: distribution(createToRun), doneToTerminal: distribution(doneToTerminal) },
    writeRtt: distribution(rtts),
    clientCpuSeconds: round((cpu.user + cpu.system) / 1e6),
    ...(watched ? { watchedEvents } : {}),
  };
}

/** The shape of the controller's internal PipelineRun (labels, annotations, params, timeouts). */
function pipelineRunBody(s: RequestState, tag: string) {
  const prefix = "internal-services.appstudio.openshift.io";
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: {
      name: s.runName,
      labels: {
        [runLabel]: tag,
        "app.kubernetes.io/managed-by": "raw-baseline",
        [`${prefix}/name`]: s.name,
        [`${prefix}/namespace`]: s.ns,
        [`${prefix}/request-uid`]: s.uid,
        ...(isValidLabelValue(s.workspace) ? { [`${prefix}/workspace`]: s.workspace } : {}),
        [`${prefix}/service`]: serviceName,
      },
      annotations: { [`${prefix}/workspace`]: s.workspace, [`${prefix}/request`]: `${s.ns}/${s.name}` },
    },
    spec: {
      pipelineRef: { name: "bench" },
      params: [{ name: "digest", value: "sha256:0" }],
      timeouts: { pipeline: "1h0m0s" },
    },
  };
}
