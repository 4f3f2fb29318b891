// Scenario 4, hostile tenants: `count` objects at the largest size the CRDs allow, written before the
// controller starts, of every kind a tenant can make: requests from namespaces the config does not
// allow, requests from allowed namespaces that the service's schema refuses (the controller must read
// them whole), other custom tasks' CustomRuns, and InternalRequest CustomRuns whose requests are
// refused. Then: the controller's start-up over all of them, a burst of ordinary requests on top, and a
// restart with everything still there. Peak RSS is compared with the Deployment's memory limit.
import { join } from "node:path";
import { Executor } from "./executor.ts";
import { paths } from "./http.ts";
import {
  type BenchContext,
  createNamespaces,
  drive,
  hex,
  type LoadResult,
  newTag,
  runLabel,
  setupPrivate,
  startController,
} from "./scenarios.ts";
import { pool, round, waitFor } from "./stats.ts";

export const deploymentMemoryLimitMb = 256;
/** The CRD's limit on spec.params, all values together (characters). */
const maxParamsChars = 131072;
const strictService = "strict";

export interface HostileResult {
  objects: number;
  /** Characters of params per object (the CRD's maximum). */
  objectParamsChars: number;
  mix: Record<string, number>;
  populateS: number;
  startup: Phase;
  burst: LoadResult;
  restart: Phase;
  memoryLimitMb: number;
}

interface Phase {
  readyMs: number;
  /** Ready until every hostile object was handled (queues empty, reconciles settled). */
  settleS: number;
  peakRssMb: number;
  rssMbSettled: number;
  heapUsedMbSettled: number;
  writes: number;
}

export async function hostile(
  ctx: BenchContext,
  count: number,
  requests: number,
  namespaceCount: number,
  inFlight: number,
): Promise<HostileResult> {
  const { bench } = ctx;
  const tag = newTag(`hostile${count}`);
  const half = Math.max(1, Math.floor(namespaceCount / 2));
  const allowed = await createNamespaces(bench.raw.public, `${tag}-a`, half);
  const outside = await createNamespaces(bench.raw.public, `${tag}-x`, half);
  // The config allows `allowed` only; the "strict" service's schema refuses large params.
  const privateNs = await setupPrivate(bench.raw.private, tag, allowed, {
    [strictService]: {
      paramsSchema: { type: "object", additionalProperties: { type: "string", maxLength: 64 } },
    },
  });

  // 40% outside the allowList, 20% refused by the schema, 20% other custom tasks, 20% our CustomRuns.
  const params = { a: "a".repeat(maxParamsChars / 2), b: "b".repeat(maxParamsChars / 2) };
  const crParams = Object.entries(params).map(([name, value]) => ({ name, value }));
  const labels = { [runLabel]: `${tag}-hostile` };
  const kinds = [
    { name: "request-outside", share: 0.4 },
    { name: "request-refused", share: 0.2 },
    { name: "customrun-other", share: 0.2 },
    { name: "customrun-refused", share: 0.2 },
  ];
  const mix = Object.fromEntries(kinds.map((k) => [k.name, Math.round(count * k.share)]));
  const plan = kinds.flatMap((k) => Array.from({ length: mix[k.name] as number }, () => k.name));
  const populateStarted = performance.now();
  await pool(plan.length, 16, async (i) => {
    const kind = plan[i] as string;
    const ns = (kind === "request-outside" ? outside : allowed)[i % half] as string;
    const name = `h-${i}-${hex(2)}`;
    const metadata = { name, labels };
    if (kind.startsWith("request")) {
      await bench.raw.public.retrying("POST", paths.requests(ns), {
        apiVersion: "appstudio.redhat.com/v1alpha1",
        kind: "InternalRequest",
        metadata,
        spec: { service: strictService, params },
      });
    } else {
      const customRef =
        kind === "customrun-other"
          ? { apiVersion: "example.com/v1", kind: "Other" }
          : { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest", name: strictService };
      await bench.raw.public.retrying("POST", paths.customRuns(ns), {
        apiVersion: "tekton.dev/v1beta1",
        kind: "CustomRun",
        metadata,
        spec: { customRef, params: crParams },
      });
    }
    if ((i + 1) % 2000 === 0) ctx.log(`  ${i + 1}/${plan.length} hostile objects written`);
  });
  const populateS = (performance.now() - populateStarted) / 1000;
  ctx.log(
    `  ${plan.length} hostile objects (${maxParamsChars} characters of params each) in ${round(populateS)}s`,
  );

  const executor = new Executor(bench.privateAdmin, bench.raw.private, privateNs);
  await executor.start();
  const namespaces = [...allowed, ...outside];
  // Every refused request (and every request the bridge made for a refused CustomRun) ends Rejected.
  const rejections =
    (mix["request-outside"] ?? 0) + (mix["request-refused"] ?? 0) + (mix["customrun-refused"] ?? 0);
  try {
    const startup = await phase(ctx, `${tag}-1`, namespaces, privateNs, rejections);
    let burst: LoadResult;
    {
      const { controller, readyMs, rssMbAtReady } = startup.started;
      try {
        burst = await drive(
          ctx,
          { tag, namespaces: allowed, privateNs, controller, readyMs, rssMbAtReady, executor },
          "requests",
          requests,
          inFlight,
        );
        burst.scenario = "hostile";
        burst.controller.peakRssMb = round((await controller.usage()).peakRssMb, 1);
      } finally {
        await controller.stop();
      }
    }
    const restart = await phase(ctx, `${tag}-2`, namespaces, privateNs, 0);
    await restart.started.controller.stop();
    return {
      objects: plan.length,
      objectParamsChars: maxParamsChars,
      mix,
      populateS: round(populateS),
      startup: startup.figures,
      burst,
      restart: restart.figures,
      memoryLimitMb: deploymentMemoryLimitMb,
    };
  } finally {
    executor.stop();
  }
}

/** Starts the controller over the hostile objects and waits until it has handled them all. */
async function phase(
  ctx: BenchContext,
  tag: string,
  namespaces: string[],
  privateNs: string,
  rejections: number,
) {
  const mark = await ctx.bench.audit.mark();
  const started = await startController(ctx, tag, namespaces, privateNs);
  const { controller } = started;
  const readyAt = performance.now();
  let last = -1;
  let stableSince = performance.now();
  const settled = await waitFor(
    async () => {
      const rejected = await controller.metric("internal_requests_completed_total");
      const reconciles = await controller.metric("controller_runtime_reconcile_total");
      const depth = await controller.metric("workqueue_depth");
      if (reconciles !== last || depth > 0 || rejected < rejections) {
        last = reconciles;
        stableSince = performance.now();
      }
      return performance.now() - stableSince >= 2_000;
    },
    1_800_000,
    500,
  );
  if (!settled)
    throw new Error(
      `the controller did not settle over the hostile objects; see ${join(ctx.workDir, `controller-${tag}.log`)}`,
    );
  const settleS = (performance.now() - readyAt - 2_000) / 1000;
  const usage = await controller.usage();
  const window = await ctx.bench.audit.since(mark);
  const figures: Phase = {
    readyMs: round(started.readyMs),
    settleS: round(settleS),
    peakRssMb: round(usage.peakRssMb, 1),
    rssMbSettled: round(usage.rssMb, 1),
    heapUsedMbSettled: round((await controller.metric("nodejs_heap_size_used_bytes")) / 1048576, 1),
    writes: window.controller.total,
  };
  ctx.log(
    `  ready in ${(figures.readyMs / 1000).toFixed(1)}s, settled ${figures.settleS}s later; peak RSS ${figures.peakRssMb} MB (limit ${deploymentMemoryLimitMb}), heap ${figures.heapUsedMbSettled} MB; ${figures.writes} writes`,
  );
  return { started, figures };
}
