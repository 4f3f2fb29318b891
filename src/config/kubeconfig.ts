// Kubeconfigs without client-node's KubeConfig class: that module imports client-node's whole
// generated API and every auth provider (about 50 MB of RSS, more than the rest of the controller),
// and falls back to localhost:8080 in silence. Loaded here: one object per context (switching a
// shared object's current context after creating clients mixes credentials), bearer tokens that
// follow their files as they rotate (credentials.ts), exec plugins and in-cluster token files through
// client-node's own small authenticators. A context that needs more (an auth-provider such as oidc,
// or a proxy-url) is handed to client-node's KubeConfig, imported on first use.
import { readFileSync } from "node:fs";
import type { OutgoingHttpHeaders } from "node:http";
import type https from "node:https";
import { isIPv6 } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import type { KubeConfig as ClientNodeKubeConfig } from "@kubernetes/client-node";
import {
  type Cluster,
  type Context,
  newClusters,
  newContexts,
  newUsers,
  type User,
} from "@kubernetes/client-node/dist/config_types.js";
import { ExecAuth } from "@kubernetes/client-node/dist/exec_auth.js";
import { FileAuth } from "@kubernetes/client-node/dist/file_auth.js";
import { parse } from "yaml";
import { followTokens, type UserToken } from "./credentials.ts";

export type { Cluster, Context, User };

export class ConfigError extends Error {}

/**
 * What the controller needs of a kubeconfig bound to one context. client-node's KubeConfig has the
 * same shape, so code and tests may pass either.
 */
export interface KubeConfig {
  getCurrentContext(): string;
  getContextObject(name: string): Context | null;
  getCurrentCluster(): Cluster | null;
  getCurrentUser(): User | null;
  getClusters(): Cluster[];
  getUsers(): User[];
  getContexts(): Context[];
  /** Headers (tokens, exec plugins, impersonation), basic auth and TLS material for the next call. */
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

/**
 * How long one API call (not a watch) may take before it is abandoned and fails. kube-apiserver
 * answers or times out every non-watch request within 60 s itself; a call still open after 30 s
 * sits on a connection that will never answer (a server killed mid-request, a dead network path).
 * node's HTTP client has no limit of its own, which would leave a call waiting forever after an API
 * server restart. Every write is safe to repeat, so the reconcile just fails and is retried.
 */
export const apiCallTimeoutMs = 30_000;

/** What the copies of one loaded kubeconfig (forContext, withServer) share. */
class Credentials {
  /** By user name: bearer tokens read from their files again when these change (loadKubeConfig). */
  tokens: ReadonlyMap<string, UserToken> = new Map();
  /** Caches each plugin's credential, by user name, until it expires. */
  readonly exec = new ExecAuth();
  /** In-cluster token files, by user name: read again every 60 s (kubelet renews them long before). */
  readonly files = new Map<string, FileAuth>();
  /** TLS files, by path: read once (rotating client certificates needs a restart). */
  readonly tlsFiles = new Map<string, Buffer>();
}

export interface Options {
  clusters: Cluster[];
  users: User[];
  contexts: Context[];
  currentContext: string;
}

const findByName = <T extends { name: string }>(list: T[], name: string | undefined): T | null =>
  list.find((x) => x.name === name) ?? null;

/** A kubeconfig as loadKubeConfig loads it; its calls cannot hang (callTimeoutMs, api/http.ts). */
export class LoadedKubeConfig implements KubeConfig {
  readonly #options: Options;
  readonly #credentials: Credentials;
  #clientNode: Promise<ClientNodeKubeConfig> | undefined;
  callTimeoutMs = apiCallTimeoutMs;

  constructor(options: Options, credentials = new Credentials()) {
    this.#options = options;
    this.#credentials = credentials;
  }

  /** A copy bound to another context, or with other clusters, sharing tokens and plugin caches. */
  copy(options: Options): LoadedKubeConfig {
    return new LoadedKubeConfig(options, this.#credentials);
  }

  /** What its copies' connections are pooled under (api/connections.ts): they share credentials. */
  get connectionScope(): object {
    return this.#credentials;
  }

  get tokens(): ReadonlyMap<string, UserToken> {
    return this.#credentials.tokens;
  }

  set tokens(tokens: ReadonlyMap<string, UserToken>) {
    this.#credentials.tokens = tokens;
  }

  getCurrentContext(): string {
    return this.#options.currentContext;
  }
  getContextObject(name: string): Context | null {
    return findByName(this.#options.contexts, name);
  }
  getCurrentCluster(): Cluster | null {
    return findByName(this.#options.clusters, this.getContextObject(this.getCurrentContext())?.cluster);
  }
  getCurrentUser(): User | null {
    return findByName(this.#options.users, this.getContextObject(this.getCurrentContext())?.user);
  }
  getClusters(): Cluster[] {
    return this.#options.clusters;
  }
  getUsers(): User[] {
    return this.#options.users;
  }
  getContexts(): Context[] {
    return this.#options.contexts;
  }

  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    if (this.#needsClientNode(cluster, user)) await (await this.#loadClientNode()).applyToHTTPSOptions(opts);
    else await this.#apply(cluster, user, opts);
    // Last: the token as its file holds it now (client-node knows only the one read at load).
    const token = user ? this.#credentials.tokens.get(user.name)?.current() : undefined;
    if (token) opts.headers = { ...opts.headers, Authorization: `Bearer ${token}` };
  }

  /** As client-node's KubeConfig applies a context without an auth provider or a proxy. */
  async #apply(cluster: Cluster | null, user: User | null, opts: https.RequestOptions): Promise<void> {
    if (cluster?.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster?.tlsServerName) opts.servername = cluster.tlsServerName;
    const ca = this.#tls(cluster?.caFile, cluster?.caData);
    if (ca) opts.ca = ca;
    if (!user) return;
    const cert = this.#tls(user.certFile, user.certData);
    if (cert) opts.cert = cert;
    const key = this.#tls(user.keyFile, user.keyData);
    if (key) opts.key = key;
    const headers: OutgoingHttpHeaders = { ...(opts.headers as OutgoingHttpHeaders) };
    opts.headers = headers;
    if (user.impersonateUser) headers["Impersonate-User"] = user.impersonateUser;
    if (this.#credentials.exec.isAuthProvider(user))
      await this.#credentials.exec.applyAuthentication(user, opts);
    else if (user.authProvider?.config?.tokenFile) await this.#fileAuth(user).applyAuthentication(user, opts);
    if (user.token) headers.Authorization = `Bearer ${user.token}`;
    if (user.username) opts.auth = `${user.username}:${user.password}`;
  }

  #tls(file: string | undefined, data: string | undefined): Buffer | undefined {
    if (file) {
      let read = this.#credentials.tlsFiles.get(file);
      if (!read) {
        read = readFileSync(file);
        this.#credentials.tlsFiles.set(file, read);
      }
      return read;
    }
    return data ? Buffer.from(data, "base64") : undefined;
  }

  #fileAuth(user: User): FileAuth {
    let auth = this.#credentials.files.get(user.name);
    if (!auth) {
      auth = new FileAuth();
      this.#credentials.files.set(user.name, auth);
    }
    return auth;
  }

  /** An auth provider other than exec or a token file (oidc, azure, gcp), or a proxy: client-node's. */
  #needsClientNode(cluster: Cluster | null, user: User | null): boolean {
    if (cluster?.proxyUrl) return true;
    const provider = user?.authProvider;
    return Boolean(provider && !provider.config?.tokenFile && !this.#credentials.exec.isAuthProvider(user));
  }

  #loadClientNode(): Promise<ClientNodeKubeConfig> {
    this.#clientNode ??= import("@kubernetes/client-node/dist/config.js").then(({ KubeConfig }) => {
      const kc = new KubeConfig();
      kc.loadFromOptions({ ...this.#options });
      return kc;
    });
    return this.#clientNode;
  }
}

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The pod's service account, as client-node and client-go read it. */
function inClusterOptions(): Options {
  const host = process.env.KUBERNETES_SERVICE_HOST as string;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  const scheme = port === "80" || port === "8080" || port === "8001" ? "http" : "https";
  let namespace: string | undefined;
  try {
    namespace = readFileSync(`${serviceAccount}/namespace`, "utf8");
  } catch {
    // not mounted: no default namespace
  }
  return {
    clusters: [
      {
        name: "inCluster",
        caFile: `${serviceAccount}/ca.crt`,
        server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`,
        skipTLSVerify: false,
      },
    ],
    users: [
      {
        name: "inClusterUser",
        authProvider: { name: "tokenFile", config: { tokenFile: `${serviceAccount}/token` } },
      },
    ],
    contexts: [{ name: "inClusterContext", cluster: "inCluster", user: "inClusterUser", namespace }],
    currentContext: "inClusterContext",
  };
}

/** A kubeconfig file's entries, validated as client-node validates them, TLS paths made absolute. */
function fileOptions(path: string): Options {
  const doc = (parse(readFileSync(path, "utf8")) ?? {}) as Record<string, unknown>;
  const absolute = (file: string | undefined) =>
    file && !isAbsolute(file) ? join(dirname(path), file) : file;
  const clusters = newClusters(doc.clusters).map((c) => ({ ...c, caFile: absolute(c.caFile) }));
  const users = newUsers(doc.users).map((u) => ({
    ...u,
    certFile: absolute(u.certFile),
    keyFile: absolute(u.keyFile),
  }));
  return {
    clusters,
    users,
    contexts: newContexts(doc.contexts),
    currentContext: doc["current-context"] as string,
  };
}

/**
 * A kubeconfig file's contexts; `path` undefined means in-cluster (service account) config, whose
 * token is read again every 60 s (kubelet renews it long before it expires).
 */
export function loadKubeConfig(path: string | undefined, what: string): LoadedKubeConfig {
  let kc: LoadedKubeConfig;
  if (path) {
    try {
      kc = new LoadedKubeConfig(fileOptions(path));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === "ENOENT" && e.path === path)
        throw new ConfigError(`${what}: kubeconfig file ${path} does not exist`);
      throw new ConfigError(`${what}: kubeconfig ${path}: ${e.message}`);
    }
    kc.tokens = followTokens(path);
    for (const token of kc.tokens.values()) {
      try {
        token.read();
      } catch (err) {
        throw new ConfigError(`${what}: user "${token.user}" of ${path}: ${(err as Error).message}`);
      }
    }
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc = new LoadedKubeConfig(inClusterOptions());
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
export function forContext(kc: KubeConfig, context: string, what: string): LoadedKubeConfig {
  if (!kc.getContextObject(context)) {
    const known =
      kc
        .getContexts()
        .map((c) => c.name)
        .join(", ") || "(none)";
    throw new ConfigError(`${what}: context "${context}" is not in the kubeconfig (contexts: ${known})`);
  }
  return copyOf(kc, {
    clusters: kc.getClusters(),
    users: kc.getUsers(),
    contexts: kc.getContexts(),
    currentContext: context,
  });
}

/**
 * A copy of kc (its current context: credentials, CA) talking to another URL on the same servers, e.g.
 * a kcp virtual workspace or one logical cluster behind it.
 */
export function withServer(kc: KubeConfig, server: string): LoadedKubeConfig {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  const context = kc.getContextObject(kc.getCurrentContext());
  if (!cluster || !user || !context) throw new ConfigError("the kubeconfig has no current context");
  const options = {
    clusters: [{ ...cluster, server }],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  };
  return copyOf(kc, options);
}

const copyOf = (kc: KubeConfig, options: Options) =>
  kc instanceof LoadedKubeConfig ? kc.copy(options) : new LoadedKubeConfig(options);
