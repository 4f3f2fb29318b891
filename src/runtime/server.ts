// /healthz (the process is alive and serving), /readyz (caches synced, workers running; a standby
// that is not the leader is ready too, so rollouts proceed), /metrics (Prometheus text format). Probes
// say nothing but ok / not ready; /metrics is served in plain HTTP (for a loopback address) or over
// TLS with every scrape authorized (see metrics-auth.ts).
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Registry } from "prom-client";
import { http } from "../api/node-http.ts";
import type { Decision } from "./metrics-auth.ts";

export interface ProbeServerOptions {
  /** "host:port" or ":port"; port 0 picks a free one. */
  address: string;
  isReady: () => boolean;
  registry?: Registry;
  /** Serve over TLS (PEM). */
  tls?: { cert: string; key: string };
  /** Decides each /metrics request from its Authorization header. */
  authorize?: (authorization: string | undefined) => Promise<Decision>;
}

const refusals: Record<Exclude<Decision, 200>, string> = {
  401: "Unauthorized: a bearer token the API server authenticates is required",
  403: "Forbidden: the token's user may not get /metrics",
  429: "Too Many Requests: try again",
  503: "Service Unavailable: could not ask the API server",
};

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new Error(`invalid address "${address}": want host:port, [ipv6]:port or :port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Starts the server; resolves with it once listening (its address() has the real port). */
export async function startProbeServer(opts: ProbeServerOptions): Promise<Server> {
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else if (path === "/readyz") {
      const ready = opts.isReady();
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ok" : "not ready");
    } else if (path === "/metrics" && opts.registry) {
      const registry = opts.registry;
      (opts.authorize ? opts.authorize(req.headers.authorization) : Promise.resolve(200 as const))
        .then(async (decision) => {
          if (decision !== 200) {
            res.writeHead(decision, { "content-type": "text/plain" }).end(refusals[decision]);
            return;
          }
          const text = await registry.metrics();
          res.writeHead(200, { "content-type": registry.contentType }).end(text);
        })
        .catch(() => res.writeHead(500).end("metrics unavailable"));
    } else {
      res.writeHead(404).end("not found");
    }
  };
  const server = opts.tls ? createTlsServer(opts.tls, handle) : http.createServer(handle);
  const { host, port } = parseAddress(opts.address);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}
