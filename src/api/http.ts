// The controller's own API calls (watches: watch.ts): node:https with one keep-alive
// agent per cluster and user, JSON read straight off the body. client-node's generated clients send
// every call through undici's fetch (web streams, Headers objects, a middleware chain and a
// serializer pass): this path takes 25–40% less CPU per request in the bench (docs/performance.md).
// Credentials still come from the KubeConfig on every call, so exec plugins, auth providers and
// rotating tokens behave as in client-node; TLS material is read once per agent.
import type { Agent, OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import { apiCallTimeoutMs, type Cluster, type KubeConfig, LoadedKubeConfig } from "../config/kubeconfig.ts";
import { http } from "./node-http.ts";

/** A response other than 2xx: its code and raw body, which apiStatus (errors.ts) reads. */
export class ApiError extends Error {
  readonly code: number;
  readonly body: string;

  constructor(code: number, body: string) {
    // The message never carries the body: it may echo what was sent.
    super(`HTTP ${code}`);
    this.name = "ApiError";
    this.code = code;
    this.body = body;
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface CallOptions {
  query?: Query;
  body?: unknown;
  /** Default application/json. */
  contentType?: string;
}

/**
 * One T per KubeConfig, cluster and user, made on first use: what shares connections (an agent here,
 * HTTP/2 sessions in watch.ts) is shared by the calls of one identity only.
 */
export function perIdentity<T>(
  cache: WeakMap<KubeConfig, Map<string, T>>,
  kc: KubeConfig,
  cluster: Cluster,
  make: () => T,
): T {
  let byKey = cache.get(kc);
  if (!byKey) {
    byKey = new Map();
    cache.set(kc, byKey);
  }
  const key = `${cluster.name}\0${kc.getCurrentUser()?.name ?? ""}`;
  let value = byKey.get(key);
  if (value === undefined) {
    value = make();
    byKey.set(key, value);
  }
  return value;
}

const agents = new WeakMap<KubeConfig, Map<string, Agent>>();

/** One agent per KubeConfig, cluster and user: its connections are kept alive and shared. */
export function agentFor(kc: KubeConfig, cluster: Cluster, opts: https.RequestOptions): Agent {
  // Through a proxy: client-node's own agent for it (hpagent or socks).
  if (cluster.proxyUrl && opts.agent instanceof http.Agent) return opts.agent;
  return perIdentity(agents, kc, cluster, () => {
    // Idle sockets close after 60 s, before kube-apiserver's 90 s idle timeout: a call never starts
    // on a connection the server is closing.
    const shared = { keepAlive: true, keepAliveMsecs: 30_000, timeout: 60_000 };
    return cluster.server.startsWith("http:")
      ? new http.Agent(shared)
      : new https.Agent({
          ...shared,
          ca: opts.ca,
          cert: opts.cert,
          key: opts.key,
          servername: opts.servername,
          ...(opts.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: opts.rejectUnauthorized }),
        });
  });
}

export function queryString(query: Query | undefined): string {
  let out = "";
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value === undefined) continue;
    out += `${out ? "&" : "?"}${name}=${encodeURIComponent(String(value))}`;
  }
  return out;
}

/**
 * One API call on kc's current context: resolves with the parsed response body, rejects with an
 * ApiError for a status other than 2xx, or with a TimeoutError after the call timeout (kubeconfig.ts).
 */
export async function call<T>(
  kc: KubeConfig,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  // Headers (tokens, exec plugins, impersonation), basic auth, TLS material: as client-node applies them.
  const auth: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(auth);
  const agent = agentFor(kc, cluster, auth);
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  // client-node sets headers as an object, never as a raw list.
  const headers: OutgoingHttpHeaders = {
    ...(auth.headers as OutgoingHttpHeaders),
    Accept: "application/json",
  };
  if (body !== undefined) {
    headers["Content-Type"] = opts.contentType ?? "application/json";
    headers["Content-Length"] = Buffer.byteLength(body);
  }
  const url = new URL(cluster.server + path + queryString(opts.query));
  const timeoutMs = kc instanceof LoadedKubeConfig ? kc.callTimeoutMs : apiCallTimeoutMs;
  const send = url.protocol === "http:" ? http.request : https.request;
  return new Promise<T>((resolve, reject) => {
    const req = send(url, { method, headers, agent, auth: auth.auth }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on("end", () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString("utf8");
        const code = res.statusCode ?? 0;
        if (code < 200 || code > 299) return reject(new ApiError(code, text));
        try {
          resolve((text ? JSON.parse(text) : undefined) as T);
        } catch (err) {
          reject(err);
        }
      });
    });
    const timer = setTimeout(
      () => req.destroy(new DOMException("The API call timed out", "TimeoutError")),
      timeoutMs,
    );
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}
