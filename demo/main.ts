// `npm run demo`: the main job end to end on this machine. It starts local public
// and private control planes (real kube-apiservers), Tekton's real pipelines controller on the public
// one and this controller, then runs a release PipelineRun whose custom-task step asks the private
// side to sign an artifact digest, and a downstream task that consumes the signature. No kubelet
// exists here: a local executor plays the private cluster's Tekton (it signs with an Ed25519 key that
// exists only on the private side) and completes the downstream TaskRun by verifying the signature.
// The development harness (envtest/) provides the control planes and Tekton's controller.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { parse } from "yaml";
import { ensureTools } from "../envtest/binaries.ts";
import { adminKubeConfig, applyObjects, createNamespace, readYamlObjects } from "../envtest/cluster.ts";
import { startControlPlanes } from "../envtest/controlplane.ts";
import { installCrds } from "../envtest/lifecycle.ts";
import { TektonController } from "../envtest/tekton-controller.ts";
import {
  customRuns,
  internalRequests,
  internalServices,
  internalServicesConfigs,
  pipelineRuns,
  ResourceClient,
} from "../src/api/resources.ts";
import type { InternalRequest, InternalService, InternalServicesConfig } from "../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../src/generated/tekton.ts";
import { startManager } from "../src/manager.ts";
import { newLogger } from "../src/runtime/log.ts";
import { LocalExecutor } from "./executor.ts";
import { kcpDemo, kcpHelp } from "./kcp.ts";
import { bold, done, event, say, short, show, step, until } from "./ui.ts";

const repo = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const privateNs = "internal-services";
const tenantNs = "releng-tenant";
const intruderNs = "intruder";

const demoHelp = `Usage: npm run demo [-- --kcp] [-- --help]

Runs one release end to end on this machine: local public and private control planes, Tekton's
pipelines controller, this controller, a release PipelineRun that asks the private side to sign an
artifact digest, and a request from a namespace that is not allowed. Builds the binaries it needs
on first use (several minutes). Ctrl-C stops everything it started.

${kcpHelp}`;

async function runDemo(argv: string[]): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    say(demoHelp);
    return 0;
  }
  const cleanup: (() => Promise<void> | void)[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => undefined);
      cleanup.length = 0;
    })();
    return stopping;
  };
  const onSignal = () => {
    if (!stopping) say("\nstopping everything the demo started…");
    void stopAll().then(() => process.exit(130));
  };
  // "on", not "once": envtest's kcp kills kcp on a signal and raises it again, which must find this
  // handler still there rather than end the demo before the rest is stopped.
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await (argv.includes("--kcp") ? kcpDemo(cleanup) : demo(cleanup));
    return 0;
  } catch (err) {
    say(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await stopAll();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function demo(cleanup: (() => Promise<void> | void)[]): Promise<void> {
  say(bold("Internal Service Controller demo: one release, end to end, on this machine"));
  say("No kubelet runs here: a local executor plays the private cluster's Tekton (it computes a real");
  say(
    "Ed25519 signature with a key that exists only on the private side) and completes the downstream task.",
  );
  say();

  step(
    1,
    "starting the public and private control planes (first run builds kube-apiserver, etcd, kubectl and tkn)",
  );
  let started = Date.now();
  const tools = await ensureTools();
  const planes = await startControlPlanes();
  cleanup.push(() => planes.stop());
  await installCrds(planes);
  done(started);
  say(`      public  ${planes.public.server}   kubeconfig ${planes.public.kubeconfigPath}`);
  say(`      private ${planes.private.server}   kubeconfig ${planes.private.kubeconfigPath}`);
  const publicKc = adminKubeConfig(planes.public);
  const privateKc = adminKubeConfig(planes.private);

  step(2, `registering InternalService "sign-artifact" in the private cluster (namespace ${privateNs})`);
  started = Date.now();
  await createNamespace(privateKc, privateNs);
  for (const ns of [tenantNs, intruderNs]) await createNamespace(publicKc, ns);
  await publicKc
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace: tenantNs, body: { metadata: { name: "default" } } });
  await applyInNamespace(
    privateKc,
    privateNs,
    await readYamlObjects(repo("tasks/example-internal-pipeline.yaml")),
  );
  const service = parse(
    readFileSync(repo("samples/internalservice-sign-artifact.yaml"), "utf8"),
  ) as InternalService;
  service.spec.allowedNamespaces = [tenantNs];
  delete service.spec.serviceAccount;
  delete service.spec.allowedServiceAccounts;
  await new ResourceClient<InternalService>(privateKc, internalServices, "isc-demo").create(
    privateNs,
    service,
  );
  await new ResourceClient<InternalServicesConfig>(privateKc, internalServicesConfigs, "isc-demo").create(
    privateNs,
    {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalServicesConfig",
      metadata: { name: "config" },
      spec: { allowList: [tenantNs] },
    },
  );
  done(started);
  say(`      allowList: [${tenantNs}]; params schema: digest (sha256:<64 hex>, required), keyId (default)`);

  step(3, "starting Tekton's pipelines controller (public) and the Internal Service Controller");
  started = Date.now();
  const tekton = await TektonController.start(planes.public, publicKc);
  cleanup.push(() => tekton.stop());
  const manager = startManager({
    workspaces: [{ name: "public", kubeConfig: publicKc, namespaces: [tenantNs, intruderNs] }],
    privateKubeConfig: privateKc,
    controllerNamespace: privateNs,
    log: newLogger("warn"),
  });
  cleanup.push(() => manager.stop());
  await manager.ready;
  const executor = new LocalExecutor({
    privateKc,
    privateNs,
    publicKc,
    publicNs: tenantNs,
    events: {
      onInternalRun: (run, signature) =>
        event(`local executor signed the digest in ${privateNs}/${run.metadata?.name}: ${short(signature)}`),
      onDownstream: (tr, verified) =>
        event(
          `downstream TaskRun ${tr.metadata?.name} received the signature; verified with the public key: ${verified}`,
        ),
    },
  });
  executor.start();
  cleanup.push(() => executor.stop());
  done(started);

  step(4, `running a release PipelineRun in ${tenantNs} (samples/release-pipelinerun.yaml)`);
  const releases = new ResourceClient<V1PipelineRun>(publicKc, pipelineRuns, "isc-demo");
  const [release] = (await readYamlObjects(repo("samples/release-pipelinerun.yaml"))) as V1PipelineRun[];
  const created = await releases.create(tenantNs, release as V1PipelineRun);
  const prName = created.metadata?.name as string;
  event(`PipelineRun ${tenantNs}/${prName} created`);
  const crName = `${prName}-sign`;
  const requestName = `${crName}-0`;
  const crs = new ResourceClient<V1beta1CustomRun>(publicKc, customRuns, "isc-demo");
  const requests = new ResourceClient<InternalRequest>(publicKc, internalRequests, "isc-demo");
  await until(
    () => crs.get(tenantNs, crName),
    () => `Tekton created CustomRun ${crName} for task "sign"`,
  );
  await until(
    () => requests.get(tenantNs, requestName),
    () => `the controller created InternalRequest ${tenantNs}/${requestName}`,
  );
  const accepted = await until(
    async () => {
      const r = await requests.get(tenantNs, requestName);
      return r.status?.pipelineRun ? r : undefined;
    },
    (r) => `request accepted; internal PipelineRun ${r.status?.pipelineRun} started in the private cluster`,
  );
  void accepted;
  const finished = await until(
    async () => {
      const r = await requests.get(tenantNs, requestName);
      const c = r.status?.conditions?.[0];
      return c && c.status !== "Unknown" ? r : undefined;
    },
    (r) =>
      `request ${r.status?.conditions?.[0]?.reason}: results ${Object.keys(r.status?.results ?? {}).join(", ")}`,
  );
  const pr = await until(
    async () => {
      const p = await releases.get(tenantNs, prName);
      const c = p.status?.conditions?.[0];
      return c && c.status !== "Unknown" ? p : undefined;
    },
    (p) => `PipelineRun ${p.status?.conditions?.[0]?.reason}`,
  );
  const signature = finished.status?.results?.signature ?? "";
  const digest = String(release?.spec?.params?.[0]?.value ?? "");
  say();
  say(bold("Result"));
  say(`  digest     ${digest}`);
  say(`  signature  ${signature}`);
  say(
    `  verifies with the private side's public key: ${LocalExecutor.verify(executor.publicKeyPem, digest, signature)}`,
  );
  say(
    `  pipeline result: ${(pr.status?.results ?? []).map((r) => `${r.name}=${short(String(r.value))}`).join(", ")}`,
  );
  // The real CLIs, against the public plane, as a tenant would look at the release. Their discovery
  // cache goes into the planes' folder, which the demo removes, not into ~/.kube.
  const publicCli = {
    KUBECONFIG: planes.public.kubeconfigPath,
    KUBECACHEDIR: join(planes.dir, "kube-cache"),
  };
  say();
  say(`The tenant's view, with the real kubectl and tkn (KUBECONFIG=${planes.public.kubeconfigPath}):`);
  await show(tools, "kubectl", ["get", "internalrequests", "-n", tenantNs], publicCli);
  await show(tools, "tkn", ["customrun", "describe", crName, "-n", tenantNs], publicCli);

  step(5, `a request for "sign-artifact" from namespace "${intruderNs}", which the config does not allow`);
  await requests.create(intruderNs, {
    apiVersion: "appstudio.redhat.com/v1alpha1",
    kind: "InternalRequest",
    metadata: { name: "sneaky" },
    spec: { service: "sign-artifact", params: { digest } },
  });
  await until(
    async () => {
      const r = await requests.get(intruderNs, "sneaky");
      return r.status?.conditions?.[0]?.reason === "Rejected" ? r : undefined;
    },
    (r) => `Rejected: ${r.status?.conditions?.[0]?.message}`,
  );
  const runs = await new ResourceClient<V1PipelineRun>(privateKc, pipelineRuns, "isc-demo").list(privateNs);
  event(
    `PipelineRuns ever created in the private cluster: ${runs.items.length} (the rejected request caused none)`,
  );
  say();
  say("Done. Stopping everything the demo started.");
}

async function applyInNamespace(kc: KubeConfig, namespace: string, objects: KubernetesObject[]) {
  await applyObjects(
    kc,
    objects.map((o) => ({ ...o, metadata: { ...o.metadata, namespace } })),
  );
}

process.exitCode = await runDemo(process.argv.slice(2));
