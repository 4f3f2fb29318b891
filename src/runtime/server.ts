// /healthz (the process is alive and serving), /readyz (caches synced, workers running; a standby
// that is not the leader is ready too, so rollouts proceed), /metrics (Prometheus text format).
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface ProbeServerOptions {
  /** "host:port" or ":port"; port 0 picks a free one. */
  address: string;
  isReady: () => boolean;
  registry?: Registry;
}

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new Error(`invalid address "${address}": want host:port, [ipv6]:port or :port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Starts the server; resolves with it once listening (its address() has the real port). */
export async function startProbeServer(opts: ProbeServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else if (path === "/readyz") {
      const ready = opts.isReady();
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ok" : "not ready");
    } else if (path === "/metrics" && opts.registry) {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.registry?.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else {
      res.writeHead(404).end("not found");
    }
  });
  const { host, port } = parseAddress(opts.address);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}
