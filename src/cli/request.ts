// `isc request …`: create, wait for, inspect and cancel InternalRequests, for pipeline steps and people.
// This file: the subcommand table, global flags, the cluster connection and the error → exit code rule.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { internalRequests, ResourceClient } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { ConfigError, forContext, loadKubeConfig } from "../config/kubeconfig.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { cancelCommand } from "./request-cancel.ts";
import { createCommand } from "./request-create.ts";
import { type ErrorContext, explainError, UsageError } from "./request-errors.ts";
import { globalFlagsHelp, type Session, type Subcommand, type Values } from "./request-flags.ts";
import { describeCommand, getCommand, listCommand } from "./request-show.ts";
import { waitCommand } from "./request-wait-command.ts";

export const requestHelp = `Usage: isc request <command> [flags]

Create, wait for, inspect and cancel InternalRequests (appstudio.redhat.com/v1alpha1).

Commands:
  create     create a request for an InternalService (or a raw pipeline), optionally wait for it
  wait       wait until requests finish; exit 0 succeeded, 21 failed/rejected/cancelled, 22 not
             picked up by any controller, 124 timed out
  get        show one request (its results as JSON by default)
  list       list requests as a table
  describe   show a request in detail: spec, conditions, its PipelineRun, results and Events
  cancel     cancel requests (spec.status: Cancelled)

Run "isc request <command> --help" for a command's flags.

${globalFlagsHelp}`;

const subcommands: Record<string, Subcommand> = {
  create: createCommand,
  wait: waitCommand,
  get: getCommand,
  list: listCommand,
  ls: listCommand,
  describe: describeCommand,
  cancel: cancelCommand,
};

const globalOptions: ParseArgsOptionsConfig = {
  kubeconfig: { type: "string" },
  context: { type: "string" },
  namespace: { type: "string", short: "n" },
  help: { type: "boolean", short: "h" },
};
const globalWithValue = new Set(["--kubeconfig", "--context", "--namespace", "-n"]);

/** The subcommand is the first positional argument; global flags may come before it. */
function splitSubcommand(argv: string[]): { name?: string; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") break;
    if (!arg.startsWith("-")) return { name: arg, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
    if (globalWithValue.has(arg)) i++;
  }
  return { rest: argv };
}

export async function runRequestCommand(argv: string[]): Promise<number> {
  const errorContext: ErrorContext = { server: "(unknown)" };
  try {
    const { name, rest } = splitSubcommand(argv);
    if (name === undefined || name === "help") {
      const asked = rest.includes("-h") || rest.includes("--help") || name === "help";
      (asked ? process.stdout : process.stderr).write(requestHelp);
      return asked ? 0 : 2;
    }
    const sub = subcommands[name];
    if (!sub)
      throw new UsageError(
        `unknown command "request ${name}" (commands: create, wait, get, list, describe, cancel)`,
      );
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...globalOptions, ...sub.options },
        allowPositionals: true,
        allowNegative: true,
      }) as { values: Values; positionals: string[] };
    } catch (err) {
      throw new UsageError(`${(err as Error).message} (see isc request ${name} --help)`);
    }
    if (parsed.values.help) {
      process.stdout.write(`${sub.help}\n${globalFlagsHelp}`);
      return 0;
    }
    const session = connect(parsed.values);
    Object.assign(errorContext, {
      server: session.server,
      context: session.context,
      namespace: session.namespace,
    });
    return await sub.run(session, parsed.values, parsed.positionals);
  } catch (err) {
    const { message, exitCode } = explainError(err, errorContext);
    process.stderr.write(`isc: ${message}\n`);
    return exitCode;
  }
}

/**
 * The kubeconfig, as kubectl finds it: --kubeconfig, ISC_KUBECONFIG, KUBECONFIG (the first existing
 * file of a list), ~/.kube/config, in-cluster. Never client-node's silent localhost:8080 fallback.
 */
export function loadRequestKubeConfig(flag: string | undefined, env = process.env): KubeConfig {
  const given: [string, string | undefined][] = [
    ["--kubeconfig", flag],
    ["ISC_KUBECONFIG", env.ISC_KUBECONFIG],
    ["KUBECONFIG", env.KUBECONFIG],
  ];
  for (const [source, value] of given) {
    if (!value) continue;
    const paths = value.split(delimiter).filter(Boolean);
    const path = paths.find((p) => existsSync(p)) ?? paths[0];
    return load(path, `${source} ${value}`);
  }
  const home = env.HOME || homedir();
  const defaultPath = home ? join(home, ".kube", "config") : undefined;
  if (defaultPath && existsSync(defaultPath)) return load(defaultPath, defaultPath);
  if (env.KUBERNETES_SERVICE_HOST) return loadKubeConfig(undefined, "in-cluster config");
  throw new ConfigError(
    `no kubeconfig: pass --kubeconfig PATH or set ISC_KUBECONFIG or KUBECONFIG (${defaultPath ?? "~/.kube/config"} does not exist either), and no in-cluster config was found (KUBERNETES_SERVICE_HOST is unset)`,
  );
}

function load(path: string | undefined, what: string): KubeConfig {
  try {
    return loadKubeConfig(path, what);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${what}: cannot read the kubeconfig: ${(err as Error).message.split("\n")[0]}`);
  }
}

function connect(values: Values): Session {
  const loaded = loadRequestKubeConfig(values.kubeconfig as string | undefined);
  const context = (values.context as string | undefined) ?? loaded.getCurrentContext();
  const kubeConfig = values.context ? forContext(loaded, context, "--context") : loaded;
  const server = kubeConfig.getCurrentCluster()?.server;
  if (!server) throw new ConfigError(`context "${context}" has no cluster with a server URL`);
  const namespace =
    (values.namespace as string | undefined) || kubeConfig.getContextObject(context)?.namespace || "default";
  const client = new ResourceClient<InternalRequest>(kubeConfig, internalRequests, "isc");
  return { kubeConfig, client, namespace, server, context };
}
