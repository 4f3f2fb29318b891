// Loading kubeconfigs without client-node's silent fallback to localhost:8080, one KubeConfig per
// context (switching a shared object's current context after creating clients mixes credentials),
// with bearer tokens that follow their files as they rotate (credentials.ts).
import { existsSync } from "node:fs";
import { KubeConfig, type RequestContext } from "@kubernetes/client-node";
import { followTokens, type UserToken } from "./credentials.ts";

export class ConfigError extends Error {}

type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;

/**
 * How long one API call (not a watch) may take before it is abandoned and fails. kube-apiserver
 * answers or times out every non-watch request within 60 s itself; a call still open after 30 s
 * sits on a connection that will never answer (a server killed mid-request, a dead network path).
 * node's HTTP client has no limit of its own, which would leave a call waiting forever after an API
 * server restart. Every write is safe to repeat, so the reconcile just fails and is retried.
 */
export const apiCallTimeoutMs = 30_000;

/**
 * A KubeConfig whose connections are shared and whose calls cannot hang, with bearer tokens that
 * follow their files. API calls go through api/http.ts (one keep-alive agent per cluster and user,
 * a call timeout). Watches go through client-node's Watch, over undici: client-node 2.0 builds a new
 * undici Agent for every request, so here one dispatcher per cluster and user is kept, and every
 * watch shares its HTTP/2 connection (the benchmark measured a connection per request as the
 * controller's biggest cost once: CPU per request 54 -> 20 ms, peak RSS -190 MB; one HTTP/1.1
 * connection per watch costs ~40 KB of RSS each). Client certificates are read once per pool
 * (rotating them needs a restart).
 */
export class PooledKubeConfig extends KubeConfig {
  readonly #dispatchers = new Map<string, Dispatcher>();
  callTimeoutMs = apiCallTimeoutMs;
  /** By user name: bearer tokens read from their files again when these change (loadKubeConfig). */
  tokens: ReadonlyMap<string, UserToken> = new Map();

  /** The user's bearer token as its file holds it now, when it has one of its own. */
  #token(): string | undefined {
    const user = this.getCurrentUser();
    return user ? this.tokens.get(user.name)?.current() : undefined;
  }

  override async applyToHTTPSOptions(opts: Parameters<KubeConfig["applyToHTTPSOptions"]>[0]): Promise<void> {
    await super.applyToHTTPSOptions(opts);
    // After client-node's own header, which holds the token as it was at load (or none, for tokenFile).
    const token = this.#token();
    if (token) opts.headers = { ...opts.headers, Authorization: `Bearer ${token}` };
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const token = this.#token();
    if (token) context.setHeaderParam("Authorization", `Bearer ${token}`);
    const key = `${this.getCurrentCluster()?.name}\0${this.getCurrentUser()?.name}`;
    const pooled = this.#dispatchers.get(key);
    const fresh = context.getDispatcher();
    if (pooled) context.setDispatcher(pooled);
    else if (fresh) this.#dispatchers.set(key, fresh);
    context.setSignal(AbortSignal.timeout(this.callTimeoutMs));
  }
}

/**
 * A kubeconfig file's contexts; `path` undefined means in-cluster (service account) config, whose
 * token client-node itself reads again every 60 s (kubelet renews it long before it expires).
 */
export function loadKubeConfig(path: string | undefined, what: string): KubeConfig {
  const kc = new PooledKubeConfig();
  if (path) {
    if (!existsSync(path)) throw new ConfigError(`${what}: kubeconfig file ${path} does not exist`);
    kc.loadFromFile(path);
    kc.tokens = followTokens(path);
    for (const token of kc.tokens.values()) {
      try {
        token.read();
      } catch (err) {
        throw new ConfigError(`${what}: user "${token.user}" of ${path}: ${(err as Error).message}`);
      }
    }
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    throw new ConfigError(
      `${what}: no kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST is unset); pass a kubeconfig path`,
    );
  }
  if (!kc.getCurrentCluster())
    throw new ConfigError(`${what}: kubeconfig ${path ?? "(in-cluster)"} has no current cluster`);
  return kc;
}

/** A copy of kc bound to one context. */
export function forContext(kc: KubeConfig, context: string, what: string): KubeConfig {
  if (!kc.getContextObject(context)) {
    const known =
      kc
        .getContexts()
        .map((c) => c.name)
        .join(", ") || "(none)";
    throw new ConfigError(`${what}: context "${context}" is not in the kubeconfig (contexts: ${known})`);
  }
  const copy = new PooledKubeConfig();
  if (kc instanceof PooledKubeConfig) copy.tokens = kc.tokens;
  copy.loadFromOptions({
    clusters: kc.getClusters(),
    users: kc.getUsers(),
    contexts: kc.getContexts(),
    currentContext: context,
  });
  return copy;
}

/**
 * A copy of kc (its current context: credentials, CA) talking to another URL on the same servers, e.g.
 * a kcp virtual workspace or one logical cluster behind it.
 */
export function withServer(kc: KubeConfig, server: string): KubeConfig {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  const context = kc.getContextObject(kc.getCurrentContext());
  if (!cluster || !user || !context) throw new ConfigError("the kubeconfig has no current context");
  const copy = new PooledKubeConfig();
  if (kc instanceof PooledKubeConfig) copy.tokens = kc.tokens;
  copy.loadFromOptions({
    clusters: [{ ...cluster, server }],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  });
  return copy;
}
