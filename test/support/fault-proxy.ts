// A TLS-terminating reverse proxy on loopback between the controller and one API server, which
// injects latency, dropped connections and 5xx answers, or cuts everything off for a while. The
// controller authenticates with a bearer token, which the proxy passes on unchanged.

import { writeFile } from "node:fs/promises";
import { createServer, request as httpsRequest, type Server } from "node:https";
import type { Socket } from "node:net";
import { join } from "node:path";
import { kubeconfigYaml, type Plane } from "../../envtest/controlplane.ts";
import { newCertificateAuthority, newServingCertificate } from "../../envtest/pki.ts";

export interface Faults {
  /** Added before each request is forwarded. */
  latencyMs: number;
  /** Probability a request's connection is destroyed (before or during the answer). */
  dropRate: number;
  /** Probability a request is answered 503 without reaching the API server. */
  errorRate: number;
  /** Every connection is refused (destroyed at once) while true. */
  down: boolean;
  /** Refuse watch-lists (sendInitialEvents) with the 422 an API server without the feature gives. */
  refuseWatchList: boolean;
  /** End watch-lists with the ERROR event a loaded API server sends when its watch cache lags. */
  laggingWatchList: boolean;
  /** Answer every write to this resource (e.g. "pipelineruns") 503, without passing it on. */
  failWritesTo: string | undefined;
}

/** One answer the API server gave through the proxy, with the credential the request carried. */
export interface ProxiedAnswer {
  /** When the request arrived (ms since the epoch). */
  at: number;
  method: string;
  /** The path without the query. */
  path: string;
  watch: boolean;
  status: number;
  authorization: string;
}

export class FaultProxy {
  readonly faults: Faults = {
    latencyMs: 0,
    dropRate: 0,
    errorRate: 0,
    down: false,
    refuseWatchList: false,
    laggingWatchList: false,
    failWritesTo: undefined,
  };
  /** `writes`: requests other than GET/HEAD/OPTIONS (counted when they arrive, before any fault). */
  readonly stats = { requests: 0, writes: 0, dropped: 0, errors: 0 };
  /** Told of every answer passed on from the API server (not of injected faults). */
  onAnswer: ((answer: ProxiedAnswer) => void) | undefined;
  /** Writes per resource (the plural in the request path, e.g. "pipelineruns", "leases"). */
  readonly #writesByResource = new Map<string, number>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #upstream: URL;
  readonly #upstreamCa: string;
  readonly caPem: string;
  readonly url: string;

  private constructor(server: Server, upstream: Plane, caPem: string, url: string) {
    this.#server = server;
    this.#upstream = new URL(upstream.server);
    this.#upstreamCa = upstream.caPem;
    this.caPem = caPem;
    this.url = url;
    server.on("connection", (socket: Socket) => {
      if (this.faults.down) {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    server.on("request", (req, res) => {
      const at = Date.now();
      this.stats.requests++;
      if (!["GET", "HEAD", "OPTIONS"].includes(req.method ?? "GET")) {
        this.stats.writes++;
        const resource = resourceOf(req.url ?? "");
        this.#writesByResource.set(resource, (this.#writesByResource.get(resource) ?? 0) + 1);
      }
      const forward = () => {
        if (this.faults.down || Math.random() < this.faults.dropRate) {
          this.stats.dropped++;
          req.socket.destroy();
          return;
        }
        if (this.faults.refuseWatchList && /[?&]sendInitialEvents=true/.test(req.url ?? "")) {
          res.writeHead(422, { "content-type": "application/json" }).end(
            JSON.stringify({
              kind: "Status",
              apiVersion: "v1",
              status: "Failure",
              message:
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
              reason: "Invalid",
              code: 422,
            }),
          );
          return;
        }
        if (this.faults.laggingWatchList && /[?&]sendInitialEvents=true/.test(req.url ?? "")) {
          const status = {
            kind: "Status",
            apiVersion: "v1",
            status: "Failure",
            message: "Timeout: Too large resource version: 1155, current: 1117",
            reason: "Timeout",
            details: { retryAfterSeconds: 1 },
            code: 504,
          };
          res.writeHead(200, { "content-type": "application/json" });
          res.end(`${JSON.stringify({ type: "ERROR", object: status })}\n`);
          return;
        }
        const write = !["GET", "HEAD", "OPTIONS"].includes(req.method ?? "GET");
        const failed = write && this.faults.failWritesTo === resourceOf(req.url ?? "");
        if (failed || Math.random() < this.faults.errorRate) {
          this.stats.errors++;
          res.writeHead(503, { "content-type": "application/json" }).end(
            JSON.stringify({
              kind: "Status",
              apiVersion: "v1",
              status: "Failure",
              message: "injected by the fault proxy",
              reason: "ServiceUnavailable",
              code: 503,
            }),
          );
          return;
        }
        const upstream = httpsRequest(
          {
            host: this.#upstream.hostname,
            port: this.#upstream.port,
            path: req.url,
            method: req.method,
            headers: { ...req.headers, host: this.#upstream.host },
            ca: this.#upstreamCa,
          },
          (answer) => {
            const [path = "", query = ""] = (req.url ?? "").split("?", 2);
            this.onAnswer?.({
              at,
              method: req.method ?? "GET",
              path,
              watch: /(^|&)watch=(true|1)(&|$)/.test(query),
              status: answer.statusCode ?? 502,
              authorization: req.headers.authorization ?? "",
            });
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on("error", () => req.socket.destroy());
        res.on("close", () => upstream.destroy());
        req.pipe(upstream);
      };
      if (this.faults.latencyMs > 0) setTimeout(forward, this.faults.latencyMs);
      else forward();
    });
  }

  static async start(upstream: Plane): Promise<FaultProxy> {
    const ca = await newCertificateAuthority("isc-fault-proxy-ca");
    const serving = await newServingCertificate(ca);
    const server = createServer({ cert: serving.certPem, key: serving.keyPem });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    return new FaultProxy(server, upstream, ca.certPem, `https://127.0.0.1:${port}`);
  }

  /** Writes so far to one resource, e.g. "pipelineruns" (leader election's "leases" are others). */
  writesTo(resource: string): number {
    return this.#writesByResource.get(resource) ?? 0;
  }

  /** Cuts every open connection (watches included) without refusing new ones. */
  dropAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  /** A kubeconfig that reaches the API server through this proxy with a bearer token. */
  async writeKubeconfig(dir: string, name: string, token: string): Promise<string> {
    const path = join(dir, `${name}-via-proxy.kubeconfig`);
    await writeFile(path, kubeconfigYaml(name, this.url, this.caPem, { token }), { mode: 0o600 });
    return path;
  }

  async stop(): Promise<void> {
    this.faults.down = true;
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** "pipelineruns" from /apis/tekton.dev/v1/namespaces/ns/pipelineruns/name/status?x=y. */
function resourceOf(url: string): string {
  const parts = url.split("?")[0]?.split("/").filter(Boolean) ?? [];
  const i = parts.indexOf("namespaces");
  const rest = i >= 0 ? parts.slice(i + 2) : parts.slice(parts[0] === "api" ? 2 : 3);
  return rest[0] ?? "";
}
