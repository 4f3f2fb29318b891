// Watches over node:http2: the watches of one cluster and user share one TLS connection (a few when
// the server caps the streams per connection), in place of client-node's Watch, whose undici fetch
// costs about 30 MB of RSS just to import. HTTP/1.1 (http.ts's agents) for http: servers, through
// proxies, and for servers that do not offer h2. Credentials come from the KubeConfig on every watch,
// as for calls (http.ts); TLS material is read once per connection.
import type { Agent, OutgoingHttpHeaders } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import tls from "node:tls";
import type { Cluster, KubeConfig } from "../config/kubeconfig.ts";
import { ApiError, agentFor, perIdentity, type Query, queryString } from "./http.ts";
import { http } from "./node-http.ts";

/** One event: its type, its object (parsed JSON, typed by the caller) and the whole line parsed. */
// biome-ignore lint/suspicious/noExplicitAny: the caller types the object, as with client-node's Watch
export type WatchEvent = (type: string, object: any, raw: unknown) => void;

export interface WatchHandle {
  abort(): void;
}

/** Below kube-apiserver's 250, so that calls sharing the server's stream budget still fit. */
const maxStreamsPerSession = 100;
const connectTimeoutMs = 30_000;
// A connection that stopped answering (a dropped NAT entry, a dead node) is found in at most 45 s,
// not when the watches' inactivity timeouts fire one by one.
const pingEveryMs = 30_000;
const pingTimeoutMs = 15_000;
/** A session without streams for this long is closed (also those of a KubeConfig no longer used). */
const idleCloseMs = 60_000;
// Flow-control windows: what the server may send ahead of what has been read, held in native memory
// meanwhile. Node's default of 64 KiB per connection holds a watch-list's initial events (and every
// watch on the connection) to one window per round trip; 4 and 16 MiB cost ~10 MB of RSS while
// 10,000 requests were listed, for no faster start than these (bench scenario 3).
const streamWindowBytes = 1 << 20;
const sessionWindowBytes = 2 << 20;
/** A hostile or broken server must not grow a line without bound. */
const maxLineBytes = 16 << 20;
const maxErrorBodyBytes = 64 << 10;

interface Session {
  /** Set once the server's settings (its stream limit) have arrived. */
  h2?: http2.ClientHttp2Session;
  ready: Promise<void>;
  /** Streams open or about to be. */
  streams: number;
  idle?: NodeJS.Timeout;
}

type Open = Session & { h2: http2.ClientHttp2Session };

interface Pool {
  /** The server did not pick h2: HTTP/1.1 from then on. */
  http1: boolean;
  sessions: Set<Session>;
}

const pools = new WeakMap<KubeConfig, Map<string, Pool>>();

/** Counts streams in or out; an idle session must not keep the process alive (a CLI exits). */
function use(s: Session, delta: number): void {
  s.streams += delta;
  clearTimeout(s.idle);
  if (!s.h2 || s.h2.destroyed) return;
  if (s.streams > 0) {
    s.h2.ref();
    return;
  }
  s.h2.unref();
  const h2 = s.h2;
  s.idle = setTimeout(() => h2.close(), idleCloseMs).unref();
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
      () => settle(new Error(`connecting to ${url.host} timed out after ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
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
          () => h2.destroy(new Error(`${url.host} did not answer a ping within ${pingTimeoutMs} ms`)),
          pingTimeoutMs,
        ).unref();
        h2.ping((err) => {
          clearTimeout(deadline);
          if (err) h2.destroy(err);
        });
      }, pingEveryMs).unref();
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
 * A session with room for one more stream (counted in), or undefined when the server speaks only
 * HTTP/1.1. Sessions are opened one at a time: watches started together wait for it, then share it.
 */
async function sessionFor(
  kc: KubeConfig,
  cluster: Cluster,
  url: URL,
  o: https.RequestOptions,
): Promise<Open | undefined> {
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

const cutOff = () => new Error("the API server closed the watch before its end");

/** One watch's state: the inactivity timer, the line being read, and done called once. */
class Watcher {
  readonly #onEvent: WatchEvent;
  readonly #done: (err: unknown) => void;
  readonly #timer: NodeJS.Timeout;
  /** Closes the request; set once it is sent. */
  #close: (() => void) | undefined;
  #line: Buffer[] = [];
  #lineBytes = 0;
  finished = false;
  readonly #ended = Promise.withResolvers<undefined>();
  /** Resolves (to undefined) when done is called. */
  readonly ended = this.#ended.promise;

  constructor(onEvent: WatchEvent, done: (err: unknown) => void, inactivityMs: number) {
    this.#onEvent = onEvent;
    this.#done = done;
    this.#timer = setTimeout(
      () => this.finish(new DOMException(`no bytes from the watch in ${inactivityMs} ms`, "TimeoutError")),
      inactivityMs,
    ).unref();
  }

  finish(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.#timer);
    // After the server's end there is nothing to close: an HTTP/1.1 socket goes back to its agent.
    if (err !== null) this.#close?.();
    this.#ended.resolve(undefined);
    this.#done(err);
  }

  h2(s: Open, url: URL, headers: http2.OutgoingHttpHeaders): void {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.h2.request({ ":path": url.pathname + url.search, ...headers }, { endStream: true });
    } catch (err) {
      use(s, -1);
      this.finish(err);
      return;
    }
    this.#close = () => stream.close(http2.constants.NGHTTP2_CANCEL);
    stream.on("error", (err) => this.finish(err));
    stream.on("close", () => {
      use(s, -1);
      this.finish(cutOff());
    });
    // A reset stream ends too (Node pushes its end), with the reset's code already set.
    const complete = () => stream.rstCode === http2.constants.NGHTTP2_NO_ERROR;
    stream.on("response", (h) => this.#read(Number(h[":status"]), stream, complete));
  }

  h1(url: URL, agent: Agent, headers: OutgoingHttpHeaders, auth: string | null | undefined): void {
    const send = url.protocol === "http:" ? http.request : https.request;
    const req = send(url, { headers, agent, auth }, (res) => {
      res.on("error", (err) => this.finish(err));
      res.on("close", () => this.finish(cutOff()));
      this.#read(res.statusCode ?? 0, res, () => true);
    });
    this.#close = () => req.destroy();
    req.on("error", (err) => this.finish(err));
    req.end();
  }

  /** Events from a 200; from any other status, an ApiError with the start of the body. */
  #read(status: number, body: Readable, complete: () => boolean): void {
    this.#timer.refresh();
    if (status !== 200) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      const fail = () =>
        this.finish(
          new ApiError(status, Buffer.concat(chunks).subarray(0, maxErrorBodyBytes).toString("utf8")),
        );
      body.on("data", (chunk: Buffer) => {
        this.#timer.refresh();
        chunks.push(chunk);
        bytes += chunk.length;
        if (bytes >= maxErrorBodyBytes) fail();
      });
      body.on("end", fail);
      return;
    }
    body.on("data", (chunk: Buffer) => {
      this.#timer.refresh();
      this.#lines(chunk);
    });
    body.on("end", () => {
      if (!complete()) {
        this.finish(cutOff());
        return;
      }
      // A last line without its newline, as readline gives it to client-node's Watch.
      if (this.#lineBytes > 0) this.#event(Buffer.concat(this.#line));
      this.finish(null);
    });
  }

  /** Splits on "\n" as bytes: it never occurs inside a UTF-8 sequence, so lines decode whole. */
  #lines(chunk: Buffer): void {
    let start = 0;
    while (!this.finished) {
      const nl = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, nl === -1 ? chunk.length : nl);
      this.#lineBytes += piece.length;
      if (this.#lineBytes > maxLineBytes) {
        this.finish(new Error(`a watch event is longer than ${maxLineBytes} bytes`));
        return;
      }
      if (piece.length > 0) this.#line.push(piece);
      if (nl === -1) return;
      // Every non-empty piece of the line is in #line: a chunk may have ended right before the newline.
      const line = this.#line.length === 1 ? (this.#line[0] as Buffer) : Buffer.concat(this.#line);
      this.#line = [];
      this.#lineBytes = 0;
      this.#event(line);
      start = nl + 1;
    }
  }

  #event(line: Buffer): void {
    let data: unknown;
    try {
      data = JSON.parse(line.toString("utf8"));
    } catch {
      return; // as client-node: a line that is not JSON is skipped
    }
    if (typeof data !== "object" || data === null) return;
    const { type, object } = data as { type: string; object: unknown };
    try {
      this.#onEvent(type, object, data);
    } catch (err) {
      // Ends the watch rather than dropping the event unseen (client-node swallows the error).
      this.finish(err);
    }
  }
}

/**
 * Opens a watch on kc's current context. Resolves once the request is sent; every outcome after
 * that goes to done, called once: null when the server ends the watch, an AbortError after abort(),
 * a TimeoutError after inactivityMs without a byte, an ApiError for a status other than 200, or the
 * connection's error. Rejects only when the kubeconfig gives no cluster or no credentials.
 */
export async function watch(
  kc: KubeConfig,
  path: string,
  query: Query,
  onEvent: WatchEvent,
  done: (err: unknown) => void,
  opts: { inactivityMs?: number } = {},
): Promise<WatchHandle> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  // Per watch: tokens rotate and exec plugins renew.
  const o: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(o);
  const url = new URL(cluster.server + path + queryString({ ...query, watch: true }));
  const headers: OutgoingHttpHeaders = {
    ...(o.headers as OutgoingHttpHeaders),
    Accept: "application/json",
  };
  const w = new Watcher(onEvent, done, opts.inactivityMs ?? 30_000);
  const handle = { abort: () => w.finish(new DOMException("the watch was aborted", "AbortError")) };
  const proxied = Boolean(cluster.proxyUrl && o.agent instanceof http.Agent);
  try {
    let s: Open | undefined;
    if (url.protocol === "https:" && !proxied) {
      // A watch that ends while its connection is being made (a timeout) returns at once; the
      // connection goes on for the watches after it.
      const next = sessionFor(kc, cluster, url, o);
      s = await Promise.race([next, w.ended]);
      if (w.finished) {
        next.then(
          (late) => late && use(late, -1),
          () => {},
        );
        return handle;
      }
    }
    if (s) {
      // HTTP/2 wants lower-case names; https.request would turn o.auth into this header.
      const h2Headers: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(headers)) h2Headers[name.toLowerCase()] = value;
      if (o.auth && !h2Headers.authorization) {
        h2Headers.authorization = `Basic ${Buffer.from(o.auth).toString("base64")}`;
      }
      w.h2(s, url, h2Headers);
    } else {
      w.h1(url, agentFor(kc, cluster, o), headers, o.auth);
    }
  } catch (err) {
    w.finish(err);
  }
  return handle;
}
