// The controller's own API calls (watches: watch.ts) over the connections of connections.ts: HTTP/2
// streams on the session its watches use, else a keep-alive HTTP/1.1 agent; JSON read straight off
// the body. client-node's generated clients send every call through undici's fetch (web streams,
// Headers objects, a middleware chain and a serializer pass): this path takes 25–40% less CPU per
// request in the bench (docs/performance.md). Credentials still come from the KubeConfig on every
// call, so exec plugins, auth providers and rotating tokens behave as in client-node.
import type { OutgoingHttpHeaders } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { apiCallTimeoutMs, type KubeConfig, LoadedKubeConfig } from "../config/kubeconfig.ts";
import { agentFor, h2Headers, type Open, sessionFor, use } from "./connections.ts";
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
  const s = await sessionFor(kc, cluster, url, auth);
  if (s) return callH2<T>(s, method, url, h2Headers(headers, auth.auth), body, timeoutMs);
  const agent = agentFor(kc, cluster, auth);
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
        try {
          resolve(settle<T>(res.statusCode ?? 0, chunks));
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

/** The response body parsed, or an ApiError for a status other than 2xx. */
function settle<T>(code: number, chunks: Buffer[]): T {
  const text = Buffer.concat(chunks).toString("utf8");
  if (code < 200 || code > 299) throw new ApiError(code, text);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** One call as a stream of the session (counted in by sessionFor, out when the stream closes). */
function callH2<T>(
  s: Open,
  method: string,
  url: URL,
  headers: http2.OutgoingHttpHeaders,
  body: string | undefined,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.h2.request(
        { ...headers, ":method": method, ":path": url.pathname + url.search },
        { endStream: body === undefined },
      );
    } catch (err) {
      use(s, -1);
      reject(err);
      return;
    }
    let code = 0;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      reject(new DOMException("The API call timed out", "TimeoutError"));
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }, timeoutMs);
    stream.on("response", (h) => {
      code = Number(h[":status"]);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      use(s, -1);
      clearTimeout(timer);
      // Reset or cut off before its end (the connection dropped): no answer to read.
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR || code === 0) {
        reject(new Error(`the API server reset the call (HTTP/2 error code ${stream.rstCode})`));
        return;
      }
      try {
        resolve(settle<T>(code, chunks));
      } catch (err) {
        reject(err);
      }
    });
    if (body !== undefined) stream.end(body);
  });
}
