// A plain HTTPS client for one plane: keep-alive connections, no library between the bench and the
// API server. The bench creates its load and plays Tekton with it, and the raw baseline measures the
// API's own ceiling with it.
import { readFileSync } from "node:fs";
import { Agent, type RequestOptions, request } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { adminKubeConfig } from "../../envtest/cluster.ts";
import type { Plane } from "../../envtest/controlplane.ts";

export interface RawResponse {
  status: number;
  text: string;
  /** Round trip, request sent to response body read, in ms. */
  ms: number;
  /** performance.now() when the response was complete. */
  at: number;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(method: string, path: string, status: number, text: string) {
    super(`${method} ${path}: HTTP ${status}: ${text.slice(0, 300)}`);
    this.status = status;
  }
}

export const mergePatch = "application/merge-patch+json";

/** Where a RawClient goes and how it authenticates: a client certificate or a bearer token. */
export interface RawTarget {
  name: string;
  /** https://host:port, optionally with a path every call's path is appended to. */
  server: string;
  caPem: string;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
}

/** Where a kubeconfig's current context goes, as a RawTarget (certificates and tokens, inline or in files). */
export function rawTargetOf(kc: KubeConfig): RawTarget {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const data = (inline: string | undefined, file: string | undefined) =>
    inline ? Buffer.from(inline, "base64") : file ? readFileSync(file) : undefined;
  return {
    name: cluster.name,
    server: cluster.server,
    caPem: data(cluster.caData, cluster.caFile)?.toString() ?? "",
    cert: data(user?.certData, user?.certFile),
    key: data(user?.keyData, user?.keyFile),
    token: user?.token,
  };
}

/** An open streaming GET (a watch): `ended` settles when the server or abort() ends it. */
export interface RawStream {
  abort(): void;
  ended: Promise<void>;
}

export class RawClient {
  readonly #agent: Agent;
  readonly #host: string;
  readonly #port: number;
  readonly #prefix: string;
  readonly #auth: Record<string, string>;
  readonly name: string;

  /** A plane (its admin client certificate), or any server with a certificate or a token. */
  constructor(target: Plane | RawTarget, maxSockets = 256) {
    let cert: Buffer | undefined;
    let key: Buffer | undefined;
    let token: string | undefined;
    if ("kubeconfigPath" in target) {
      const user = adminKubeConfig(target).getCurrentUser();
      if (!user?.certData || !user.keyData)
        throw new Error(`${target.name}: admin kubeconfig has no client cert`);
      cert = Buffer.from(user.certData, "base64");
      key = Buffer.from(user.keyData, "base64");
    } else {
      ({ cert, key, token } = target);
    }
    const url = new URL(target.server);
    this.#host = url.hostname;
    this.#port = Number(url.port);
    this.#prefix = url.pathname.replace(/\/$/, "");
    this.#auth = token ? { Authorization: `Bearer ${token}` } : {};
    this.name = target.name;
    this.#agent = new Agent({
      keepAlive: true,
      maxSockets,
      maxFreeSockets: maxSockets,
      ca: target.caPem,
      cert,
      key,
    });
  }

  /** Where a request to `path` goes, authenticated, on the keep-alive agent. */
  #options(method: string, path: string, headers: Record<string, string | number> = {}): RequestOptions {
    return {
      agent: this.#agent,
      host: this.#host,
      port: this.#port,
      method,
      path: `${this.#prefix}${path}`,
      headers: { Accept: "application/json", ...this.#auth, ...headers },
    };
  }

  /** One request; HTTP errors reject with ApiError unless `allow` lists the status. */
  call(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
    allow: number[] = [],
  ): Promise<RawResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const req = request(
        {
          ...this.#options(
            method,
            path,
            payload === undefined
              ? {}
              : { "Content-Type": contentType, "Content-Length": Buffer.byteLength(payload) },
          ),
          timeout: 60_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const at = performance.now();
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString();
            if (status >= 400 && !allow.includes(status)) reject(new ApiError(method, path, status, text));
            else resolve({ status, text, ms: at - started, at });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out after 60s`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  /**
   * A streaming GET whose body is one JSON value per line (a watch): `onValue` gets each, parsed.
   * Resolves once the response has begun; rejects with ApiError for an error status.
   */
  stream(path: string, onValue: (value: unknown) => void): Promise<RawStream> {
    return new Promise((resolve, reject) => {
      const ended = Promise.withResolvers<void>();
      const req = request(this.#options("GET", path), (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 400) {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => reject(new ApiError("GET", path, status, Buffer.concat(chunks).toString())));
          return;
        }
        // Decoded as a stream, so a character split between chunks stays whole.
        res.setEncoding("utf8");
        let pending = "";
        res.on("data", (text: string) => {
          pending += text;
          let start = 0;
          for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n", start)) {
            const line = pending.slice(start, nl);
            start = nl + 1;
            if (!line.trim()) continue;
            try {
              onValue(JSON.parse(line));
            } catch {
              req.destroy(); // not JSON: end the stream (the watch opens it again)
              return;
            }
          }
          pending = pending.slice(start);
        });
        res.on("end", () => ended.resolve());
        res.on("error", () => ended.resolve());
        res.on("close", () => ended.resolve());
        resolve({ abort: () => req.destroy(), ended: ended.promise });
      });
      req.on("error", (err) => {
        reject(err);
        ended.resolve();
      });
      req.end();
    });
  }

  /** Like call(), retrying 429 and 5xx answers (bounded: 6 attempts, backoff from 50 ms). */
  async retrying(method: string, path: string, body?: unknown, contentType?: string): Promise<RawResponse> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.call(method, path, body, contentType);
      } catch (err) {
        const status = (err as ApiError).status ?? 0;
        if (attempt >= 5 || !(status === 429 || status >= 500)) throw err;
        await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}

export const paths = {
  requests: (ns?: string) =>
    `/apis/appstudio.redhat.com/v1alpha1${ns ? `/namespaces/${ns}` : ""}/internalrequests`,
  services: (ns: string) => `/apis/appstudio.redhat.com/v1alpha1/namespaces/${ns}/internalservices`,
  configs: (ns: string) => `/apis/appstudio.redhat.com/v1alpha1/namespaces/${ns}/internalservicesconfigs`,
  pipelineRuns: (ns?: string) => `/apis/tekton.dev/v1${ns ? `/namespaces/${ns}` : ""}/pipelineruns`,
  customRuns: (ns?: string) => `/apis/tekton.dev/v1beta1${ns ? `/namespaces/${ns}` : ""}/customruns`,
  events: (ns: string) => `/api/v1/namespaces/${ns}/events`,
  namespaces: () => "/api/v1/namespaces",
};
