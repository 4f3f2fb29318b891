// Shared by the `isc request` subcommands: the session, flag value helpers and global flags' help.
import type { ParseArgsOptionsConfig } from "node:util";
import type { ResourceClient } from "../api/resources.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";
import type { InternalRequest } from "../generated/crds.ts";
import { parseDuration } from "../policy/duration.ts";
import { UsageError } from "./request-errors.ts";

export const globalFlagsHelp = `Global flags:
  --kubeconfig PATH     kubeconfig to use [ISC_KUBECONFIG, KUBECONFIG; else ~/.kube/config; else in-cluster]
  --context NAME        kubeconfig context (default: its current context)
  -n, --namespace NS    namespace of the requests (default: the context's namespace, else "default")
  -h, --help            show help
`;

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Session {
  kubeConfig: KubeConfig;
  client: ResourceClient<InternalRequest>;
  namespace: string;
  server: string;
  context: string;
}

export interface Subcommand {
  help: string;
  options: ParseArgsOptionsConfig;
  run(session: Session, values: Values, positionals: string[]): Promise<number>;
}

// Flag value helpers (parseArgs values are loosely typed across subcommands).
export const str = (v: Values, key: string) => v[key] as string | undefined;
export const list = (v: Values, key: string) => (v[key] as string[] | undefined) ?? [];
export const bool = (v: Values, key: string) => v[key] === true;

/** key=value flags into a map; duplicates and empty keys are usage errors naming the flag. */
export function keyValues(items: string[], flag: string): Record<string, string> | undefined {
  if (items.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf("=");
    if (i <= 0) throw new UsageError(`${flag} ${JSON.stringify(item)}: want key=value`);
    const key = item.slice(0, i);
    if (key in out) throw new UsageError(`${flag}: "${key}" given twice`);
    out[key] = item.slice(i + 1);
  }
  return out;
}

/** A Go duration flag in milliseconds; must be positive unless allowZero. */
export function durationFlag(value: string, flag: string, allowZero = false): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
  if (ms < 0 || (ms === 0 && !allowZero)) throw new UsageError(`${flag} must be positive, got "${value}"`);
  return ms;
}
