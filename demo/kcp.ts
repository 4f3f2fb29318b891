// `npm run demo -- --kcp`: the controller serving kcp workspaces. It starts a real kcp and the private
// control plane, makes the provider workspace root:internal-services with the objects of deploy/kcp,
// three tenant workspaces that bind the export with deploy/kcp/apibinding-tenant.yaml, and runs the
// controller process (`isc controller --kcp-export internal-services`) as the export's least-privilege
// ServiceAccount. Each tenant creates one InternalRequest; the local executor plays the private
// cluster's Tekton (it signs with a key that exists only on the private side), as in the main demo.

import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { ensureTools } from "../envtest/binaries.ts";
import { adminKubeConfig, applyObjects, createNamespace, readYamlObjects } from "../envtest/cluster.ts";
import { freePort, startControlPlanes } from "../envtest/controlplane.ts";
import { bindingPhase, type KcpWorkspace, startKcp } from "../envtest/kcp.ts";
import { installCrds } from "../envtest/lifecycle.ts";
import { apiStatus } from "../src/api/errors.ts";
import {
  internalRequests,
  internalServices,
  internalServicesConfigs,
  pipelineRuns,
  ResourceClient,
} from "../src/api/resources.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "../src/generated/crds.ts";
import type { V1PipelineRun } from "../src/generated/tekton.ts";
import { workspaceAnnotation } from "../src/requests/naming.ts";
import { LocalExecutor } from "./executor.ts";
import { bold, done, event, say, short, show, step, until } from "./ui.ts";

const repo = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const privateNs = "internal-services";
const exportName = "internal-services";
const identity = { namespace: "internal-services-remote", name: "internal-service-controller-remote" };
const tenants = ["team-a", "team-b", "team-c"];
const requestName = "release-1";
const steps = 6;

export const kcpHelp = `With --kcp: the controller serving kcp workspaces instead. A real kcp and the private control
plane, the provider workspace root:internal-services with deploy/kcp, three tenant workspaces that
bind its APIExport, the controller process run with --kcp-export as the export's least-privilege
ServiceAccount, and one InternalRequest in each workspace, fulfilled in the private cluster. The
first run builds kcp too (several more minutes).
`;

export async function kcpDemo(cleanup: (() => Promise<void> | void)[]): Promise<void> {
  say(bold("Internal Service Controller demo: kcp workspaces through an APIExport, on this machine"));
  say("No kubelet runs here: a local executor plays the private cluster's Tekton (it computes a real");
  say("Ed25519 signature with a key that exists only on the private side).");
  say();

  step(
    1,
    "starting kcp and the private control plane (the first run builds kcp, kube-apiserver and etcd)",
    steps,
  );
  let started = Date.now();
  const work = await mkdtemp(join(tmpdir(), "isc-demo-kcp-"));
  cleanup.push(() => rm(work, { recursive: true, force: true }));
  const tools = await ensureTools();
  // The harness starts a public plane too; this demo's remote side is kcp, so it stays idle.
  // Both settle before going on: one that starts after the other failed must still be stopped.
  const [kcpStart, planesStart] = await Promise.allSettled([startKcp(), startControlPlanes()]);
  if (kcpStart.status === "fulfilled") cleanup.push(() => kcpStart.value.stop());
  if (planesStart.status === "fulfilled") cleanup.push(() => planesStart.value.stop());
  if (kcpStart.status === "rejected") throw kcpStart.reason;
  if (planesStart.status === "rejected") throw planesStart.reason;
  const [kcp, planes] = [kcpStart.value, planesStart.value];
  await installCrds(planes);
  done(started);
  say(`      kcp     ${kcp.url}   admin kubeconfig ${kcp.adminKubeConfigPath}`);
  say(`      private ${planes.private.server}   kubeconfig ${planes.private.kubeconfigPath}`);
  const privateKc = adminKubeConfig(planes.private);

  step(2, `provider workspace root:${exportName}: the objects of deploy/kcp`, steps);
  started = Date.now();
  const provider = await kcp.createWorkspace(exportName);
  const applied = await kcp.apply(provider.path, await kcp.kustomize(repo("deploy/kcp")));
  done(started);
  for (const line of applied.trim().split("\n")) event(line);

  step(3, `three tenant workspaces, each binding the export (deploy/kcp/apibinding-tenant.yaml)`, steps);
  started = Date.now();
  const workspaces = await Promise.all(tenants.map((name) => kcp.createWorkspace(name)));
  const binding = readFileSync(repo("deploy/kcp/apibinding-tenant.yaml"), "utf8");
  await Promise.all(workspaces.map((w) => kcp.apply(w.path, binding)));
  for (const w of workspaces) {
    await until(
      () => bound(w),
      () => `${w.path}: APIBinding ${exportName} Bound (logical cluster ${w.logicalCluster})`,
    );
  }
  done(started);

  step(
    4,
    `registering InternalService "sign-artifact" in the private cluster (namespace ${privateNs})`,
    steps,
  );
  started = Date.now();
  await createNamespace(privateKc, privateNs);
  await applyObjects(
    privateKc,
    (await readYamlObjects(repo("tasks/example-internal-pipeline.yaml"))).map((o) => ({
      ...o,
      metadata: { ...o.metadata, namespace: privateNs },
    })),
  );
  const service = parse(
    readFileSync(repo("samples/internalservice-sign-artifact.yaml"), "utf8"),
  ) as InternalService;
  // kcp workspaces are named by path; a bare namespace allows none of them.
  service.spec.allowedNamespaces = ["root:team-*/default"];
  delete service.spec.serviceAccount;
  delete service.spec.allowedServiceAccounts;
  await new ResourceClient<InternalService>(privateKc, internalServices, "isc-demo").create(
    privateNs,
    service,
  );
  const allowList = workspaces.map((w) => `${w.path}/default`);
  await new ResourceClient<InternalServicesConfig>(privateKc, internalServicesConfigs, "isc-demo").create(
    privateNs,
    {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalServicesConfig",
      metadata: { name: "config" },
      spec: { allowList },
    },
  );
  done(started);
  say(`      allowList: [${allowList.join(", ")}]; the service's allowedNamespaces: [root:team-*/default]`);

  step(5, `starting the controller with --kcp-export, as the ServiceAccount of deploy/kcp`, steps);
  started = Date.now();
  const token = await kcp.createToken(provider.path, identity.namespace, identity.name);
  const providerKubeconfig = join(work, "provider.kubeconfig");
  await writeFile(
    providerKubeconfig,
    kcp.tokenKubeConfig(`${kcp.url}/clusters/${provider.path}`, token).exportConfig(),
    { mode: 0o600 },
  );
  const controller = await startController(work, providerKubeconfig, planes.private.kubeconfigPath);
  cleanup.push(() => controller.stop());
  done(started);
  say(`      ${controller.command}`);
  say(
    `      (kubeconfig: ${provider.path} as ${identity.namespace}/${identity.name}, a bound token; log ${controller.logFile})`,
  );

  const executor = new LocalExecutor({
    privateKc,
    privateNs,
    events: {
      onInternalRun: (run, signature) =>
        event(
          `local executor signed the digest in ${privateNs}/${run.metadata?.name} (for ${run.metadata?.annotations?.[workspaceAnnotation]}): ${short(signature)}`,
        ),
      onDownstream: () => undefined,
    },
  });
  executor.start();
  cleanup.push(() => executor.stop());

  step(6, `one InternalRequest per workspace, each created by its tenant in namespace "default"`, steps);
  const clients = new Map(
    workspaces.map((w) => [
      w.path,
      new ResourceClient<InternalRequest>(w.kubeConfig, internalRequests, "isc-demo"),
    ]),
  );
  const tenantRequests = (w: KcpWorkspace) => clients.get(w.path) as ResourceClient<InternalRequest>;
  const digests = new Map(
    workspaces.map((w) => [
      w.path,
      `sha256:${createHash("sha256").update(`artifact of ${w.path}`).digest("hex")}`,
    ]),
  );
  for (const w of workspaces) {
    await tenantRequests(w).create("default", {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: requestName },
      spec: { service: "sign-artifact", params: { digest: digests.get(w.path) as string } },
    });
    event(
      `${w.path}: InternalRequest default/${requestName} created (digest ${short(digests.get(w.path) ?? "")})`,
    );
  }
  for (const w of workspaces) {
    await until(
      async () => {
        const r = await tenantRequests(w).get("default", requestName);
        return r.status?.pipelineRun ? r : undefined;
      },
      (r) =>
        `${w.path}: accepted; internal PipelineRun ${r.status?.pipelineRun} started in the private cluster`,
    );
  }
  const finished = new Map<string, InternalRequest>();
  for (const w of workspaces) {
    finished.set(
      w.path,
      await until(
        async () => {
          const r = await tenantRequests(w).get("default", requestName);
          const c = r.status?.conditions?.[0];
          return c && c.status !== "Unknown" ? r : undefined;
        },
        (r) =>
          `${w.path}: request ${r.status?.conditions?.[0]?.reason}: results ${Object.keys(r.status?.results ?? {}).join(", ")}`,
      ),
    );
  }

  const runs = (await new ResourceClient<V1PipelineRun>(privateKc, pipelineRuns, "isc-demo").list(privateNs))
    .items;
  say();
  say(bold("Result"));
  const rows = workspaces.map((w) => {
    const r = finished.get(w.path);
    const run = r?.status?.pipelineRun ?? "";
    const annotated = runs.find((x) => `${privateNs}/${x.metadata?.name}` === run)?.metadata?.annotations?.[
      workspaceAnnotation
    ];
    const verified = LocalExecutor.verify(
      executor.publicKeyPem,
      digests.get(w.path) ?? "",
      r?.status?.results?.signature ?? "",
    );
    return [
      w.path,
      `default/${requestName}`,
      r?.status?.conditions?.[0]?.reason ?? "",
      run,
      annotated ?? "",
      `${verified}`,
    ];
  });
  const header = [
    "workspace",
    "request",
    "reason",
    "private PipelineRun",
    "its workspace annotation",
    "signature verifies",
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  for (const r of [header, ...rows])
    say(
      `  ${r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd()}`,
    );
  say();
  say(`PipelineRuns in the private cluster: ${runs.length}, one per workspace's request.`);

  // The tenant's view with the real kubectl: its workspace's kubeconfig (kcp's admin, server
  // <kcp>/clusters/root:team-a).
  const first = workspaces[0] as KcpWorkspace;
  const env = { KUBECONFIG: first.kubeConfigPath, KUBECACHEDIR: join(work, "kube-cache") };
  say();
  say(`The tenant's view of ${first.path}, with the real kubectl (KUBECONFIG=${first.kubeConfigPath}):`);
  await show(tools, "kubectl", ["get", "internalrequests", "-n", "default"], env);
  say();
  say("Done. Stopping everything the demo started.");
}

async function bound(w: KcpWorkspace): Promise<true | undefined> {
  if ((await bindingPhase(w.kubeConfig, exportName)) !== "Bound") return undefined;
  // Bound, and the InternalRequest API served in the workspace (404 until it is).
  try {
    await new ResourceClient<InternalRequest>(w.kubeConfig, internalRequests, "isc-demo").list("default");
    return true;
  } catch (err) {
    if (apiStatus(err)?.code === 404) return undefined;
    throw err;
  }
}

interface Controller {
  command: string;
  logFile: string;
  stop(): Promise<void>;
}

/** `isc controller --kcp-export` as a process of its own (from source), until /readyz says 200. */
async function startController(
  work: string,
  kubeconfig: string,
  privateKubeconfig: string,
): Promise<Controller> {
  const [health, metrics] = [await freePort(), await freePort()];
  const flags = [
    "--kubeconfig",
    kubeconfig,
    "--kcp-export",
    exportName,
    "--private-kubeconfig",
    privateKubeconfig,
    "--namespace",
    privateNs,
    "--leader-elect=false",
    `--health-address=127.0.0.1:${health}`,
    `--metrics-address=127.0.0.1:${metrics}`,
  ];
  const logFile = join(work, "controller.log");
  const out = createWriteStream(logFile);
  const child: ChildProcess = spawn(process.execPath, [repo("src/cli/main.ts"), "controller", ...flags], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  // It must not outlive the demo, however the demo ends.
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    process.off("exit", kill);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(kill, 10_000);
      await exited;
      clearTimeout(timer);
    }
    out.end();
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stop();
      const tail = (await readFile(logFile, "utf8").catch(() => "")).trim().split("\n").slice(-15).join("\n");
      throw new Error(
        `the controller ${child.exitCode !== null ? "exited" : "was not ready in 60s"}:\n${tail}`,
      );
    }
    const ready = await fetch(`http://127.0.0.1:${health}/readyz`).then(
      async (r) => {
        await r.text();
        return r.status === 200;
      },
      () => false,
    );
    if (ready) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const lines = [flags.slice(0, 4), flags.slice(4, 8), flags.slice(8)].map((l) => l.join(" "));
  return {
    command: `$ isc controller ${lines.join(" \\\n          ")}`,
    logFile,
    stop,
  };
}
