// `isc controller`: runs the controller until SIGTERM/SIGINT.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { type ParseArgsOptionDescriptor, parseArgs } from "node:util";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { ConfigError, forContext, loadKubeConfig } from "../config/kubeconfig.ts";
import type { WorkspaceConfig } from "../manager.ts";
import { startManager } from "../manager.ts";
import { defaultHeartbeat } from "../runtime/heartbeat.ts";
import { LeaderElector } from "../runtime/leader.ts";
import { newLogger } from "../runtime/log.ts";
import { Metrics } from "../runtime/metrics.ts";
import { MetricsAuthorizer } from "../runtime/metrics-auth.ts";
import { parseAddress, startProbeServer } from "../runtime/server.ts";
import { durationFlag } from "./request-flags.ts";

// The controller's flags are declared once, as data: the parser's options, the help text and the table
// in docs/operations.md (checked against this by test/unit/docs.test.ts) all follow it, so they cannot
// drift apart.

/** A flag of `isc controller`. */
export interface ControllerFlag {
  /** The long name, without "--". */
  name: string;
  /** The value's placeholder in help and docs. */
  value: string;
  /** Read when the flag is absent; the first one set wins (even if empty). */
  env: readonly string[];
  /** Repeatable; its environment variable holds the values space-separated. */
  list?: true;
  /** The value when neither the flag nor an environment variable is set. */
  default?: string;
  /** Without a literal default: what happens when it is not set. */
  unset?: string;
  /** Must be set; checked by the command, not the parser. */
  required?: true;
  /** One line: what it does. */
  meaning: string;
}

export const controllerFlags = [
  {
    name: "kubeconfig",
    value: "PATH",
    env: ["ISC_KUBECONFIG", "KUBECONFIG"],
    unset: "in-cluster",
    meaning: "kubeconfig holding the remote workspaces' contexts",
  },
  {
    name: "workspace",
    value: "CTX[=NS,NS]",
    env: ["ISC_WORKSPACES"],
    list: true,
    unset: "the current context, all namespaces, when no --workspace-selector is given",
    meaning:
      "serve context CTX (a workspace named after it), optionally only the given namespaces; repeat for several",
  },
  {
    name: "workspace-selector",
    value: "CTX=SELECTOR",
    env: ["ISC_WORKSPACE_SELECTORS"],
    list: true,
    unset: "none",
    meaning:
      "serve context CTX's namespaces that match a label selector, following them as they come and go (needs list/watch on namespaces); repeat for several",
  },
  {
    name: "kcp-export",
    value: "[CTX=]EXPORT",
    env: ["ISC_KCP_EXPORTS"],
    list: true,
    unset: "none",
    meaning:
      "serve every kcp workspace bound to APIExport EXPORT, through its virtual workspace; CTX (default the current context) is the provider workspace's context in --kubeconfig; repeat for several",
  },
  {
    name: "private-kubeconfig",
    value: "PATH",
    env: ["ISC_PRIVATE_KUBECONFIG"],
    unset: "in-cluster",
    meaning: "kubeconfig of the private cluster",
  },
  {
    name: "namespace",
    value: "NS",
    env: ["ISC_NAMESPACE", "POD_NAMESPACE"],
    required: true,
    meaning:
      "the controller's namespace in the private cluster: services, config and internal PipelineRuns live here",
  },
  {
    name: "requests",
    value: "BOOL",
    env: ["ISC_REQUESTS"],
    default: "true",
    meaning: "fulfil InternalRequests in the private cluster",
  },
  {
    name: "custom-tasks",
    value: "BOOL",
    env: ["ISC_CUSTOM_TASKS"],
    default: "true",
    meaning:
      "run Tekton CustomRuns of kind InternalRequest by creating InternalRequests (needs Tekton's CRDs in every workspace); with --requests=false this is the bridge alone, e.g. in the public cluster, and --namespace is where its Lease lives",
  },
  {
    name: "metrics-address",
    value: "ADDR",
    env: ["ISC_METRICS_ADDRESS"],
    default: "127.0.0.1:8080",
    meaning:
      "Prometheus /metrics in plain HTTP, unauthenticated: keep it on loopback, and use --metrics-secure-address to serve scrapers elsewhere",
  },
  {
    name: "metrics-secure-address",
    value: "ADDR",
    env: ["ISC_METRICS_SECURE_ADDRESS"],
    unset: "off",
    meaning:
      "/metrics over HTTPS (certificate from --metrics-cert-dir), each scrape's bearer token checked with TokenReview and allowed by a SubjectAccessReview for get on /metrics",
  },
  {
    name: "metrics-cert-dir",
    value: "DIR",
    env: ["ISC_METRICS_CERT_DIR"],
    unset: "none; required with --metrics-secure-address",
    meaning: "tls.crt and tls.key (PEM) for --metrics-secure-address, e.g. a mounted cert-manager Secret",
  },
  {
    name: "health-address",
    value: "ADDR",
    env: ["ISC_HEALTH_ADDRESS"],
    default: ":8081",
    meaning: "/healthz and /readyz, host:port or :port",
  },
  {
    name: "leader-elect",
    value: "BOOL",
    env: ["ISC_LEADER_ELECT"],
    default: "true",
    meaning: "elect a leader through a Lease, so only one replica reconciles",
  },
  {
    name: "leader-election-id",
    value: "NAME",
    env: ["ISC_LEADER_ELECTION_ID"],
    default: "internal-service-controller",
    meaning: "the Lease's name",
  },
  {
    name: "leader-lease-duration",
    value: "D",
    env: ["ISC_LEADER_LEASE_DURATION"],
    default: "15s",
    meaning: "how long a lease is valid without renewal",
  },
  {
    name: "leader-renew-deadline",
    value: "D",
    env: ["ISC_LEADER_RENEW_DEADLINE"],
    default: "10s",
    meaning: "a leader that cannot renew for this long stops",
  },
  {
    name: "leader-retry-period",
    value: "D",
    env: ["ISC_LEADER_RETRY_PERIOD"],
    default: "2s",
    meaning: "how often to try to acquire or renew",
  },
  {
    name: "go-workspace",
    value: "NAME",
    env: ["ISC_GO_WORKSPACE"],
    unset: "the only workspace, when there is one",
    meaning:
      'the workspace the original Go controller served: the requests it was running there are taken over (see the cutover in docs/migrating.md); "" for none',
  },
  {
    name: "heartbeat-namespace",
    value: "NS",
    env: ["ISC_HEARTBEAT_NAMESPACE"],
    default: defaultHeartbeat.namespace,
    meaning: `renew the Lease ${defaultHeartbeat.name} there in every workspace while serving, so callers can see the controller is alive (the CLI and the Task read it); "" for none`,
  },
  {
    name: "heartbeat-interval",
    value: "D",
    env: ["ISC_HEARTBEAT_INTERVAL"],
    default: "1m",
    meaning: "how often the heartbeat Lease is renewed: one write per workspace each time",
  },
  {
    name: "workers",
    value: "N",
    env: ["ISC_WORKERS"],
    default: "16",
    meaning: "concurrent reconciles per controller; they wait on the API, not the CPU",
  },
  {
    name: "log-level",
    value: "LEVEL",
    env: ["ISC_LOG_LEVEL"],
    default: "info",
    meaning: "trace, debug, info, warn, error",
  },
] as const satisfies readonly ControllerFlag[];

type Flags = (typeof controllerFlags)[number];
/** parseArgs' options for the flags, typed per flag so that values keep their types. */
type FlagOptions = {
  [F in Flags as F["name"]]: F extends { list: true }
    ? { type: "string"; multiple: true; default: string[] }
    : F extends { default: string }
      ? { type: "string"; default: string }
      : { type: "string"; default?: string };
};

function flagOptions(env: NodeJS.ProcessEnv): FlagOptions {
  const options: Record<string, ParseArgsOptionDescriptor> = {};
  for (const flag of controllerFlags as readonly ControllerFlag[]) {
    const set = flag.env.map((name) => env[name]).find((v) => v !== undefined);
    options[flag.name] = flag.list
      ? { type: "string", multiple: true, default: set?.split(/\s+/).filter(Boolean) ?? [] }
      : { type: "string", default: set ?? flag.default };
  }
  return options as FlagOptions;
}

// The help's layout: descriptions from this column, wrapped at this width, env vars after them.
const helpColumn = 30;
const helpWidth = 62;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, line];
}

function helpEntry(flag: ControllerFlag): string {
  const left = `  --${flag.name} ${flag.value}`;
  const unset =
    flag.default !== undefined
      ? `(default ${flag.default})`
      : flag.required
        ? "(required)"
        : `(default: ${flag.unset})`;
  const env = `[${flag.env.join(", ")}${flag.list ? ", space-separated" : ""}]`;
  const lines = wrap(`${flag.meaning} ${unset}`, helpWidth);
  const last = lines.length - 1;
  const body = lines.map(
    (line, i) => `${" ".repeat(helpColumn)}${i === last ? `${line.padEnd(helpWidth)}  ${env}` : line}`,
  );
  if (left.length < helpColumn) body[0] = left.padEnd(helpColumn) + (body[0] ?? "").slice(helpColumn);
  else body.unshift(left);
  return `${body.join("\n")}\n`;
}

export const controllerHelp = `Usage: isc controller [flags]

Runs the Internal Service Controller: watches InternalRequests in remote workspaces and fulfils them
as PipelineRuns in the private cluster. Every flag has an environment variable equivalent, read when
the flag is not given.

Flags:
${(controllerFlags as readonly ControllerFlag[]).map(helpEntry).join("")}  -h, --help                  show this help
`;

export async function runControllerCommand(argv: string[]): Promise<number> {
  const env = process.env;
  const { values } = parseArgs({
    args: argv,
    options: { ...flagOptions(env), help: { type: "boolean", short: "h" } },
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
  for (const flag of ["metrics-address", "health-address"] as const) addressFlag(values[flag], `--${flag}`);
  const secureMetrics = values["metrics-secure-address"];
  let metricsTls: { cert: string; key: string } | undefined;
  if (secureMetrics) {
    addressFlag(secureMetrics, "--metrics-secure-address");
    metricsTls = readCertDir(values["metrics-cert-dir"]);
  }

  const remote = loadKubeConfig(values.kubeconfig, "--kubeconfig (remote workspaces)");
  const privateKc = serveRequests
    ? loadKubeConfig(values["private-kubeconfig"], "--private-kubeconfig")
    : undefined;
  const selectors = values["workspace-selector"];
  const exports = values["kcp-export"];
  const specs =
    values.workspace.length > 0 || selectors.length > 0 || exports.length > 0
      ? values.workspace
      : [remote.getCurrentContext()];
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

  const kcp = exports.map((spec) => {
    const [context, name] = spec.includes("=") ? spec.split("=", 2) : [remote.getCurrentContext(), spec];
    if (!name || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
      throw new ConfigError(`--kcp-export ${spec}: want [CONTEXT=]APIEXPORT-NAME`);
    return { export: name, kubeConfig: forContext(remote, context as string, `--kcp-export ${spec}`) };
  });
  if (kcp.length > 0 && !serveRequests)
    throw new ConfigError("--kcp-export needs --requests: kcp workspaces are served InternalRequests only");

  const goWorkspace = values["go-workspace"];
  if (goWorkspace && !workspaces.some((w) => w.name === goWorkspace))
    throw new ConfigError(
      `--go-workspace ${goWorkspace}: not a served workspace (${workspaces.map((w) => w.name).join(", ")})`,
    );

  const heartbeatIntervalMs = durationFlag(values["heartbeat-interval"], "--heartbeat-interval");
  if (heartbeatIntervalMs < 1000)
    throw new ConfigError(`--heartbeat-interval must be at least 1s, got "${values["heartbeat-interval"]}"`);
  const identity = `${hostname()}_${process.pid}`;
  const heartbeat = values["heartbeat-namespace"]
    ? {
        namespace: values["heartbeat-namespace"],
        name: defaultHeartbeat.name,
        identity,
        intervalMs: heartbeatIntervalMs,
      }
    : undefined;

  const metrics = new Metrics();
  let manager: ReturnType<typeof startManager> | undefined;
  const startWork = () => {
    manager = startManager({
      workspaces,
      kcp,
      serveRequests,
      serveCustomTasks,
      privateKubeConfig: privateKc,
      controllerNamespace: namespace,
      goWorkspace,
      heartbeat,
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
        identity,
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
  // Reviews go to the cluster the controller runs in (where Prometheus's identity is).
  const authorizer = new MetricsAuthorizer(privateKc ?? (workspaces[0]?.kubeConfig as KubeConfig));
  const listen = (flag: string, opts: Parameters<typeof startProbeServer>[0]) =>
    startProbeServer(opts).catch((err: Error) => {
      throw new ConfigError(`--${flag} ${opts.address}: ${err.message}`);
    });
  const health = await listen("health-address", { address: values["health-address"], isReady });
  const metricsServer = await listen("metrics-address", {
    address: values["metrics-address"],
    isReady,
    registry: metrics.registry,
  }).catch((err: unknown) => {
    health.close(); // or the process stays up, serving probes, after the error
    throw err;
  });
  const secureMetricsServer =
    secureMetrics && metricsTls
      ? await listen("metrics-secure-address", {
          address: secureMetrics,
          isReady,
          registry: metrics.registry,
          tls: metricsTls,
          authorize: (header) => authorizer.decide(header),
        }).catch((err: unknown) => {
          health.close();
          metricsServer.close();
          throw err;
        })
      : undefined;
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
  secureMetricsServer?.close();
  return 0;
}

function parseBool(v: string, flag: string): boolean {
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new ConfigError(`${flag} must be true or false, got "${v}"`);
}

function addressFlag(v: string, flag: string): void {
  try {
    parseAddress(v);
  } catch (err) {
    throw new ConfigError(`${flag}: ${(err as Error).message}`);
  }
}

function readCertDir(dir: string | undefined): { cert: string; key: string } {
  if (!dir)
    throw new ConfigError(
      "--metrics-secure-address needs --metrics-cert-dir (a directory with tls.crt and tls.key)",
    );
  try {
    return {
      cert: readFileSync(join(dir, "tls.crt"), "utf8"),
      key: readFileSync(join(dir, "tls.key"), "utf8"),
    };
  } catch (err) {
    throw new ConfigError(`--metrics-cert-dir ${dir}: ${(err as Error).message}`);
  }
}
