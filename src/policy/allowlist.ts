// Namespace allow-lists (InternalServicesConfig.allowList, InternalService.allowedNamespaces).
import { globMatch } from "./glob.ts";

/** Whether `entry` ("namespace" for any workspace, or "workspace/namespace"; `*` globs within a name)
 *  allows `namespace` in `workspace`. With `namedOnly` (workspaces tenants create themselves, such as
 *  kcp's) only entries that name the workspace apply. */
export function entryAllows(entry: string, workspace: string, namespace: string, namedOnly = false): boolean {
  const parts = entry.split("/");
  if (parts.length === 1) return !namedOnly && globMatch(entry, namespace);
  if (parts.length !== 2) return false; // malformed: never allows anything
  const [ws = "", ns = ""] = parts;
  return globMatch(ws, workspace) && globMatch(ns, namespace);
}

/** Whether any entry allows `namespace` in `workspace`. */
export function isAllowed(
  entries: readonly string[],
  workspace: string,
  namespace: string,
  namedOnly = false,
): boolean {
  return entries.some((entry) => entryAllows(entry, workspace, namespace, namedOnly));
}
