// The connections of one identity (a KubeConfig's cluster and user), shared by its API calls (http.ts)
// and watches (watch.ts): HTTP/2 sessions over one TLS connection each (more when the server's stream
// limit is reached), and keep-alive HTTP/1.1 agents for http: servers, proxies and servers that do
// not offer h2. TLS material is read once per connection; credentials go with every request.
import type { Agent, OutgoingHttpHeaders } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { isIP } from "node:net";
import tls from "node:tls";
import { type Cluster, type KubeConfig, LoadedKubeConfig } from "../config/kubeconfig.ts";
import { http } from "./node-http.ts";

/**
 * One T per identity, made on first use: what shares connections (an agent, a pool of HTTP/2
 * sessions) is shared by the requests of one cluster (its origin: scheme, host and port) and user
 * only. The copies of one loaded kubeconfig (forContext, withServer: a kcp workspace each) share
 * their credentials, so they share connections too.
 */
export function perIdentity<T>(
  cache: WeakMap<object, Map<string, T>>,
  kc: KubeConfig,
  cluster: Cluster,
  make: () => T,
): T {
  const scope = kc instanceof LoadedKubeConfig ? kc.connectionScope : kc;
  let byKey = cache.get(scope);
  if (!byKey) {
    byKey = new Map();
    cache.set(scope, byKey);
  }
  const key = `${cluster.name}\0${new URL(cluster.server).origin}\0${kc.getCurrentUser()?.name ?? ""}`;
  let value = byKey.get(key);
  if (value === undefined) {
    value = make();
    byKey.set(key, value);
  }
  return value;
}

const agents = new WeakMap<object, Map<string, Agent>>();

/** One agent per identity (see perIdentity): its connections are kept alive and shared. */
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

/** Below kube-apiserver's 250 streams per connection: calls and watches of one session fit in it. */
const maxStreamsPerSession = 100;
/**
 * How sessions are kept. A connection that stopped answering (a dropped NAT entry, a dead node) is
 * found by its ping in at most pingEveryMs + pingTimeoutMs, not when the watches' inactivity
 * timeouts fire one by one; one without streams for idleCloseMs is closed (also those of a KubeConfig
 * no longer used). Tests shorten them.
 */
export const sessionTimings = {
  connectMs: 30_000,
  pingEveryMs: 30_000,
  pingTimeoutMs: 15_000,
  idleCloseMs: 60_000,
};
// Flow-control windows: what the server may send ahead of what has been read, held in native memory
// meanwhile. Node's default of 64 KiB per connection holds a watch-list's initial events (and every
// watch on the connection) to one window per round trip; 4 and 16 MiB cost ~10 MB of RSS while
// 10,000 requests were listed, for no faster start than these (bench scenario 3).
const streamWindowBytes = 1 << 20;
const sessionWindowBytes = 2 << 20;

interface Session {
  /** Set once the server's settings (its stream limit) have arrived. */
  h2?: http2.ClientHttp2Session;
  ready: Promise<void>;
  /** Streams open or about to be. */
  streams: number;
  idle?: NodeJS.Timeout;
}

export type Open = Session & { h2: http2.ClientHttp2Session };

interface Pool {
  /** The server did not pick h2: HTTP/1.1 from then on. */
  http1: boolean;
  sessions: Set<Session>;
}

const pools = new WeakMap<object, Map<string, Pool>>();

/** Counts streams in or out; an idle session must not keep the process alive (a CLI exits). */
export function use(s: Session, delta: number): void {
  s.streams += delta;
  clearTimeout(s.idle);
  if (!s.h2 || s.h2.destroyed) return;
  if (s.streams > 0) {
    s.h2.ref();
    return;
  }
  s.h2.unref();
  const h2 = s.h2;
  s.idle = setTimeout(() => h2.close(), sessionTimings.idleCloseMs).unref();
}

/** Connects a session into the pool, with one stream counted in for the caller. */
function open(pool: Pool, url: URL, o: https.RequestOptions): Session {
  const s: Session = { streams: 1, ready: Promise.resolve() };
  pool.sessions.add(s);
  s.ready = new Promise<void>((resolve, reject) => {
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const socket = tls.connect({
      host,
      port: Number(url.port) || 443,
      servername: o.servername ?? (isIP(host) ? undefined : host),
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      ...(o.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: o.rejectUnauthorized }),
      ALPNProtocols: ["h2", "http/1.1"],
    });
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!err) return resolve();
      pool.sessions.delete(s);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => settle(new Error(`connecting to ${url.host} timed out after ${sessionTimings.connectMs} ms`)),
      sessionTimings.connectMs,
    );
    socket.once("error", settle);
    socket.once("secureConnect", () => {
      socket.off("error", settle);
      if (socket.alpnProtocol !== "h2") {
        pool.http1 = true;
        pool.sessions.delete(s);
        socket.destroy();
        return settle();
      }
      const h2 = http2.connect(url.origin, {
        createConnection: () => socket,
        settings: { initialWindowSize: streamWindowBytes },
      });
      const drop = () => pool.sessions.delete(s);
      h2.on("error", (err) => {
        drop();
        settle(err);
      });
      h2.on("goaway", drop);
      h2.on("close", () => {
        drop();
        clearInterval(ping);
        clearTimeout(s.idle);
        settle(new Error(`${url.host} closed the connection`));
      });
      const ping = setInterval(() => {
        if (h2.destroyed) return;
        const deadline = setTimeout(
          () =>
            h2.destroy(
              new Error(`${url.host} did not answer a ping within ${sessionTimings.pingTimeoutMs} ms`),
            ),
          sessionTimings.pingTimeoutMs,
        ).unref();
        h2.ping((err) => {
          clearTimeout(deadline);
          if (err) h2.destroy(err);
        });
      }, sessionTimings.pingEveryMs).unref();
      // The stream limit comes with the server's first settings: streams are opened after them.
      h2.once("remoteSettings", () => {
        h2.setLocalWindowSize(sessionWindowBytes);
        s.h2 = h2;
        settle();
      });
    });
  });
  return s;
}

/**
 * A session with room for one more stream (counted in), or undefined for HTTP/1.1: an http: server,
 * one reached through a proxy (client-node's agent for it), or one that speaks only HTTP/1.1.
 * Sessions are opened one at a time: requests started together wait for it, then share it.
 */
export async function sessionFor(
  kc: KubeConfig,
  cluster: Cluster,
  url: URL,
  o: https.RequestOptions,
): Promise<Open | undefined> {
  if (url.protocol !== "https:" || (cluster.proxyUrl && o.agent instanceof http.Agent)) return undefined;
  const pool = perIdentity(pools, kc, cluster, (): Pool => ({ http1: false, sessions: new Set() }));
  for (;;) {
    if (pool.http1) return undefined;
    let pending: Session | undefined;
    for (const s of pool.sessions) {
      if (!s.h2) pending = s;
      else if (
        !s.h2.closed &&
        !s.h2.destroyed &&
        s.streams < Math.min(maxStreamsPerSession, s.h2.remoteSettings.maxConcurrentStreams ?? Infinity)
      ) {
        use(s, 1);
        return s as Open;
      }
    }
    if (!pending) {
      const s = open(pool, url, o);
      await s.ready;
      return pool.http1 ? undefined : (s as Open);
    }
    await pending.ready;
  }
}

/** HTTP/1.1-style headers as HTTP/2 wants them: lower-case names, basic auth as its header (what
 *  https.request makes of the `auth` option). */
export function h2Headers(
  headers: OutgoingHttpHeaders,
  basic: string | null | undefined,
): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  if (basic && !out.authorization) out.authorization = `Basic ${Buffer.from(basic).toString("base64")}`;
  return out;
}
