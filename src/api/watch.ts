// Watches on the connections of connections.ts: an HTTP/2 stream on the session the identity's calls
// also use (in place of client-node's Watch, whose undici fetch costs about 30 MB of RSS just to
// import), else HTTP/1.1. Credentials come from the KubeConfig on every watch, as for calls (http.ts).
import type { Agent, OutgoingHttpHeaders } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { Readable } from "node:stream";
import type { KubeConfig } from "../config/kubeconfig.ts";
import { agentFor, h2Headers, type Open, sessionFor, use } from "./connections.ts";
import { ApiError, type Query, queryString } from "./http.ts";
import { http } from "./node-http.ts";

/** One event: its type, its object (parsed JSON, typed by the caller) and the whole line parsed. */
// biome-ignore lint/suspicious/noExplicitAny: the caller types the object, as with client-node's Watch
export type WatchEvent = (type: string, object: any, raw: unknown) => void;

export interface WatchHandle {
  abort(): void;
}

/** A hostile or broken server must not grow a line without bound. */
const maxLineBytes = 16 << 20;
const maxErrorBodyBytes = 64 << 10;

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
  try {
    // A watch that ends while its connection is being made (a timeout) returns at once; the
    // connection goes on for the watches after it.
    const next = sessionFor(kc, cluster, url, o);
    const s = await Promise.race([next, w.ended]);
    if (w.finished) {
      next.then(
        (late) => late && use(late, -1),
        () => {},
      );
      return handle;
    }
    if (s) {
      w.h2(s, url, h2Headers(headers, o.auth));
    } else {
      w.h1(url, agentFor(kc, cluster, o), headers, o.auth);
    }
  } catch (err) {
    w.finish(err);
  }
  return handle;
}
