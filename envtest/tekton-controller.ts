// Tekton's real pipelines controller, run out of cluster against the public plane:
// its ConfigMaps in a system namespace, the image flags (any strings: no pod ever runs), explicit
// ports. No kubelet exists, so TaskRuns get Pods that stay Pending; tests complete TaskRuns by hand.
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { ensureTektonController } from "./binaries.ts";
import {
  applyObjects,
  createNamespace,
  goModuleDir,
  readYamlObjects,
  tektonVersion,
  uniqueName,
} from "./cluster.ts";
import { freePort, type Plane } from "./controlplane.ts";
import { eventually } from "./wait.ts";

export class TektonController {
  readonly child: ChildProcess;
  logs = "";
  readonly exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.child = child;
    const logFile = process.env.ISC_TEKTON_LOG;
    const keep = (b: Buffer) => {
      this.logs = (this.logs + b.toString()).slice(-200_000);
      if (logFile) appendFileSync(logFile, b);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => child.on("exit", () => resolve()));
  }

  static async start(plane: Plane, admin: KubeConfig): Promise<TektonController> {
    const binary = await ensureTektonController();
    const systemNamespace = await createNamespace(admin, uniqueName("tekton-pipelines"));
    const configDir = join(await goModuleDir(`github.com/tektoncd/pipeline@${tektonVersion}`), "config");
    const configMaps: KubernetesObject[] = [];
    for (const file of (await readdir(configDir)).filter(
      (f) => f.startsWith("config-") && f.endsWith(".yaml"),
    )) {
      for (const obj of await readYamlObjects(join(configDir, file))) {
        if (obj.kind !== "ConfigMap") continue;
        configMaps.push({ ...obj, metadata: { ...obj.metadata, namespace: systemNamespace } });
      }
    }
    await applyObjects(admin, configMaps);
    const [probes, metrics, profiling] = [await freePort(), await freePort(), await freePort()];
    const image = "isc-test/no-pods-run-here";
    const child = spawn(
      binary,
      [
        `-kubeconfig=${plane.kubeconfigPath}`,
        "-disable-ha",
        ...[
          "-entrypoint-image",
          "-nop-image",
          "-sidecarlogresults-image",
          "-workingdirinit-image",
          "-shell-image",
          "-shell-image-win",
        ].flatMap((flag) => [flag, image]),
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          SYSTEM_NAMESPACE: systemNamespace,
          PROBES_PORT: String(probes),
          METRICS_PROMETHEUS_PORT: String(metrics),
          METRICS_PROMETHEUS_HOST: "127.0.0.1",
          PROFILING_PORT: String(profiling),
          KUBERNETES_MIN_VERSION: "v1.28.0",
        },
      },
    );
    const controller = new TektonController(child);
    await eventually(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`Tekton controller exited:\n${controller.logs.slice(-3000)}`);
        const res = await fetch(`http://127.0.0.1:${probes}/readiness`).catch(() => undefined);
        return res?.ok;
      },
      "Tekton controller ready",
      60_000,
      200,
    ).catch((err: Error) => {
      child.kill("SIGKILL");
      throw new Error(`${err.message}\n${controller.logs.slice(-3000)}`);
    });
    return controller;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
