// `isc controller`: runs the controller until SIGTERM/SIGINT.
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import type { KubeConfig } from "@kubernetes/client-node";
import { ConfigError, forContext, loadKubeConfig } from "../config/kubeconfig.ts";
import type { WorkspaceConfig } from "../manager.ts";
import { startManager } from "../manager.ts";
import { LeaderElector } from "../runtime/leader.ts";
import { newLogger } from "../runtime/log.ts";
import { Metrics } from "../runtime/metrics.ts";
import { startProbeServer } from "../runtime/server.ts";
import { durationFlag } from "./request-flags.ts";

export const controllerHelp = `Usage: isc controller [flags]

Runs the Internal Service Controller: watches InternalRequests in remote workspaces and fulfils them
as PipelineRuns in the private cluster. Every flag has an environment variable equivalent.

Flags:
  --kubeconfig PATH           kubeconfig holding the remote workspaces' contexts          [ISC_KUBECONFIG]
  --workspace CTX[=NS,NS]     serve context CTX (a workspace named after it), optionally only
                              the given namespaces; repeat for several. Default: the current
                              context, all namespaces.                                     [ISC_WORKSPACES, space-separated]
  --workspace-selector CTX=SELECTOR
                              serve context CTX's namespaces that match a label selector,
                              following them as they come and go (needs list/watch on
                              namespaces); repeat for several                             [ISC_WORKSPACE_SELECTORS, space-separated]
  --private-kubeconfig PATH   kubeconfig of the private cluster (default: in-cluster)     [ISC_PRIVATE_KUBECONFIG]
  --namespace NS              the controller's namespace in the private cluster: services,
                              config and internal PipelineRuns live here                  [ISC_NAMESPACE, POD_NAMESPACE]
  --requests BOOL             fulfil InternalRequests in the private cluster (default true) [ISC_REQUESTS]
  --custom-tasks BOOL         run Tekton CustomRuns of kind InternalRequest by creating
                              InternalRequests (default true; needs Tekton's CRDs in every
                              workspace). With --requests=false this is the bridge alone, e.g.
                              in the public cluster; then --namespace is where its Lease lives.   [ISC_CUSTOM_TASKS]
  --metrics-address ADDR      Prometheus /metrics, host:port or :port (default :8080)     [ISC_METRICS_ADDRESS]
  --health-address ADDR       /healthz and /readyz (default :8081)                        [ISC_HEALTH_ADDRESS]
  --leader-elect BOOL         elect a leader through a Lease, so only one replica
                              reconciles (default true)                                    [ISC_LEADER_ELECT]
  --leader-election-id NAME   the Lease's name (default internal-service-controller)       [ISC_LEADER_ELECTION_ID]
  --leader-lease-duration D   how long a lease is valid without renewal (default 15s)     [ISC_LEADER_LEASE_DURATION]
  --leader-renew-deadline D   a leader that cannot renew for this long stops (default 10s) [ISC_LEADER_RENEW_DEADLINE]
  --leader-retry-period D     how often to try to acquire or renew (default 2s)            [ISC_LEADER_RETRY_PERIOD]
  --go-workspace NAME         the workspace the original Go controller served: the requests
                              it was running there are taken over (see the README's
                              Cutover); default: the only workspace, when there is one;
                              "" for none                                                 [ISC_GO_WORKSPACE]
  --workers N                 concurrent reconciles (default 16)                           [ISC_WORKERS]
  --log-level LEVEL           trace, debug, info, warn, error (default info)               [ISC_LOG_LEVEL]
  -h, --help                  show this help
`;

export async function runControllerCommand(argv: string[]): Promise<number> {
  const env = process.env;
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: "string", default: env.ISC_KUBECONFIG ?? env.KUBECONFIG },
      workspace: {
        type: "string",
        multiple: true,
        default: env.ISC_WORKSPACES?.split(/\s+/).filter(Boolean) ?? [],
      },
      "workspace-selector": {
        type: "string",
        multiple: true,
        default: env.ISC_WORKSPACE_SELECTORS?.split(/\s+/).filter(Boolean) ?? [],
      },
      "private-kubeconfig": { type: "string", default: env.ISC_PRIVATE_KUBECONFIG },
      namespace: { type: "string", default: env.ISC_NAMESPACE ?? env.POD_NAMESPACE },
      requests: { type: "string", default: env.ISC_REQUESTS ?? "true" },
      "custom-tasks": { type: "string", default: env.ISC_CUSTOM_TASKS ?? "true" },
      "metrics-address": { type: "string", default: env.ISC_METRICS_ADDRESS ?? ":8080" },
      "health-address": { type: "string", default: env.ISC_HEALTH_ADDRESS ?? ":8081" },
      "leader-elect": { type: "string", default: env.ISC_LEADER_ELECT ?? "true" },
      "leader-election-id": {
        type: "string",
        default: env.ISC_LEADER_ELECTION_ID ?? "internal-service-controller",
      },
      "leader-lease-duration": { type: "string", default: env.ISC_LEADER_LEASE_DURATION ?? "15s" },
      "leader-renew-deadline": { type: "string", default: env.ISC_LEADER_RENEW_DEADLINE ?? "10s" },
      "leader-retry-period": { type: "string", default: env.ISC_LEADER_RETRY_PERIOD ?? "2s" },
      "go-workspace": { type: "string", default: env.ISC_GO_WORKSPACE },
      workers: { type: "string", default: env.ISC_WORKERS ?? "16" },
      "log-level": { type: "string", default: env.ISC_LOG_LEVEL ?? "info" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(controllerHelp);
    return 0;
  }
  const log = newLogger(values["log-level"]);
  const namespace = values.namespace;
  if (!namespace)
    throw new ConfigError(
      "--namespace (or ISC_NAMESPACE) is required: the controller's namespace in the private cluster",
    );
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1)
    throw new ConfigError(`--workers must be a positive integer, got "${values.workers}"`);
  const leaderElect = parseBool(values["leader-elect"], "--leader-elect");
  const serveRequests = parseBool(values.requests, "--requests");
  const serveCustomTasks = parseBool(values["custom-tasks"], "--custom-tasks");
  if (!serveRequests && !serveCustomTasks)
    throw new ConfigError("--requests and --custom-tasks are both false: nothing to do");

  const remote = loadKubeConfig(values.kubeconfig, "--kubeconfig (remote workspaces)");
  const privateKc = serveRequests
    ? loadKubeConfig(values["private-kubeconfig"], "--private-kubeconfig")
    : undefined;
  const selectors = values["workspace-selector"];
  const specs =
    values.workspace.length > 0 || selectors.length > 0 ? values.workspace : [remote.getCurrentContext()];
  const workspace = (flag: string, context: string): WorkspaceConfig => {
    if (context.includes("/"))
      throw new ConfigError(`${flag}: a workspace (context) name cannot contain "/"`);
    return { name: context, kubeConfig: forContext(remote, context, flag) };
  };
  const workspaces: WorkspaceConfig[] = [
    ...specs.map((spec) => {
      const [context = "", nsList] = spec.split("=", 2);
      return { ...workspace(`--workspace ${spec}`, context), namespaces: nsList?.split(",").filter(Boolean) };
    }),
    ...selectors.map((spec) => {
      const i = spec.indexOf("=");
      if (i <= 0 || i === spec.length - 1) {
        throw new ConfigError(
          `--workspace-selector ${spec}: want CONTEXT=LABEL-SELECTOR, e.g. prod=release.example.com/tenant`,
        );
      }
      return {
        ...workspace(`--workspace-selector ${spec}`, spec.slice(0, i)),
        namespaceSelector: spec.slice(i + 1),
      };
    }),
  ];

  const goWorkspace = values["go-workspace"];
  if (goWorkspace && !workspaces.some((w) => w.name === goWorkspace))
    throw new ConfigError(
      `--go-workspace ${goWorkspace}: not a served workspace (${workspaces.map((w) => w.name).join(", ")})`,
    );

  const metrics = new Metrics();
  let manager: ReturnType<typeof startManager> | undefined;
  const startWork = () => {
    manager = startManager({
      workspaces,
      serveRequests,
      serveCustomTasks,
      privateKubeConfig: privateKc,
      controllerNamespace: namespace,
      goWorkspace,
      workers,
      log,
      metrics,
      // Fault injection for the crash-consistency test: die between "create run" and "record it".
      afterCreate:
        env.ISC_TEST_FAILPOINT === "crash-after-pipelinerun-create"
          ? () => process.kill(process.pid, "SIGKILL")
          : undefined,
    });
    manager.ready.catch((err: unknown) => {
      log.fatal({ err: String(err) }, "controller failed to start");
      process.exit(1);
    });
  };
  const elector = leaderElect
    ? new LeaderElector({
        // The Lease lives where the controller runs: the private cluster, or the workspace for the bridge alone.
        kubeConfig: privateKc ?? (workspaces[0]?.kubeConfig as KubeConfig),
        namespace,
        name: values["leader-election-id"],
        identity: `${hostname()}_${process.pid}`,
        leaseDurationMs: durationFlag(values["leader-lease-duration"], "--leader-lease-duration"),
        renewDeadlineMs: durationFlag(values["leader-renew-deadline"], "--leader-renew-deadline"),
        retryPeriodMs: durationFlag(values["leader-retry-period"], "--leader-retry-period"),
        log,
        onStartedLeading: () => {
          metrics.leader.set({ name: values["leader-election-id"] }, 1);
          startWork();
        },
        onStoppedLeading: () => {
          metrics.leader.set({ name: values["leader-election-id"] }, 0);
          // Another replica may already be reconciling: stop at once, let the restart policy bring us back.
          process.exit(1);
        },
      })
    : undefined;
  const isReady = () => (elector && !elector.isLeader ? true : (manager?.isReady() ?? false));
  const health = await startProbeServer({ address: values["health-address"], isReady });
  const metricsServer = await startProbeServer({
    address: values["metrics-address"],
    isReady,
    registry: metrics.registry,
  });
  log.info({ workspaces: workspaces.map((w) => w.name), namespace, leaderElect }, "starting");
  if (elector) elector.start();
  else startWork();

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  log.info({ signal }, "shutting down");
  await manager?.stop();
  await elector?.stop();
  health.close();
  metricsServer.close();
  return 0;
}

function parseBool(v: string, flag: string): boolean {
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new ConfigError(`${flag} must be true or false, got "${v}"`);
}
