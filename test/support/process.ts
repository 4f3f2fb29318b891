// The controller as a separate process (`isc controller`), for tests that kill, restart or run
// several replicas of it. Every process started here is killed when the test file ends.
import { type ChildProcess, spawn } from "node:child_process";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { compiledCli } from "../../envtest/binaries.ts";
import { freePort } from "../../envtest/controlplane.ts";
import { eventually } from "../../envtest/wait.ts";

const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const started = new Set<ChildProcess>();
after(() => {
  for (const child of started) child.kill("SIGKILL");
});

export interface ControllerProcessOptions {
  remoteKubeconfig: string;
  workspaces: string[];
  privateKubeconfig: string;
  namespace: string;
  extraArgs?: string[];
  env?: Record<string, string>;
  /** Open the V8 inspector on loopback, so tests can force a GC and read the heap (heapUsedAfterGcMb). */
  inspect?: boolean;
  /** Run the compiled dist/ (as the image does) instead of the TypeScript sources. */
  compiled?: boolean;
}

export class ControllerProcess {
  readonly child: ChildProcess;
  readonly healthPort: number;
  readonly metricsPort: number;
  logs = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(child: ChildProcess, healthPort: number, metricsPort: number) {
    this.child = child;
    this.healthPort = healthPort;
    this.metricsPort = metricsPort;
    child.stdout?.on("data", (b: Buffer) => {
      this.logs += b.toString();
    });
    child.stderr?.on("data", (b: Buffer) => {
      this.logs += b.toString();
    });
    this.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => started.delete(child));
  }

  static async start(opts: ControllerProcessOptions): Promise<ControllerProcess> {
    const [healthPort, metricsPort] = [await freePort(), await freePort()];
    const args = [
      ...(opts.inspect ? ["--inspect=127.0.0.1:0"] : []),
      opts.compiled ? await compiledCli() : cli,
      "controller",
      `--kubeconfig=${opts.remoteKubeconfig}`,
      ...opts.workspaces.map((w) => `--workspace=${w}`),
      `--private-kubeconfig=${opts.privateKubeconfig}`,
      `--namespace=${opts.namespace}`,
      `--health-address=127.0.0.1:${healthPort}`,
      `--metrics-address=127.0.0.1:${metricsPort}`,
      ...(opts.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...opts.env },
    });
    started.add(child);
    return new ControllerProcess(child, healthPort, metricsPort);
  }

  async get(path: string, port = this.healthPort): Promise<{ status: number; text: string }> {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, text: await res.text() };
  }

  waitForReady(timeoutMs = 30_000): Promise<true> {
    return eventually(
      async () => (await this.get("/readyz")).status === 200 || undefined,
      `controller ready; logs:\n${this.logs}`,
      timeoutMs,
    );
  }

  /** A counter's value summed over label sets, from /metrics. */
  async metric(name: string): Promise<number> {
    const { text } = await this.get("/metrics", this.metricsPort);
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").at(-1));
    }
    return sum;
  }

  /** Forces a full GC in the controller through the inspector, then reads its used heap (MB). */
  async heapUsedAfterGcMb(): Promise<number> {
    const url = await eventually(
      () => /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(this.logs)?.[0],
      "inspector URL",
    );
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    let id = 0;
    const call = (method: string, params: object = {}) =>
      new Promise<{ result?: { result?: { value?: number } } }>((resolve) => {
        const mine = ++id;
        ws.addEventListener("message", function onMessage(event) {
          const msg = JSON.parse(String(event.data)) as { id?: number };
          if (msg.id !== mine) return;
          ws.removeEventListener("message", onMessage);
          resolve(msg as { result?: { result?: { value?: number } } });
        });
        ws.send(JSON.stringify({ id: mine, method, params }));
      });
    try {
      await call("HeapProfiler.collectGarbage");
      await call("HeapProfiler.collectGarbage");
      const answer = await call("Runtime.evaluate", {
        expression: "process.memoryUsage().heapUsed",
        returnByValue: true,
      });
      return Math.round((answer.result?.result?.value ?? 0) / 1048576);
    } finally {
      ws.close();
    }
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.child.kill(signal);
    await this.exited;
  }
}
