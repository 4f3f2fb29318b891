// Watches (src/api/watch.ts) against loopback servers: HTTP/2 with sessions shared and capped by the
// server's stream limit, HTTP/1.1 when the server does not offer h2, lines however the bytes are cut,
// and done called once for every way a watch ends.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net, { type AddressInfo, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import type { TLSSocket } from "node:tls";
import { KubeConfig } from "@kubernetes/client-node";
import { type KeyAndCert, newCertificateAuthority, newServingCertificate } from "../../envtest/pki.ts";
import { sessionTimings } from "../../src/api/connections.ts";
import { ApiError } from "../../src/api/http.ts";
import { type WatchHandle, watch } from "../../src/api/watch.ts";

let caPem = "";
let serving: KeyAndCert;
let otherCaPem = "";

before(async () => {
  const ca = await newCertificateAuthority("watch-test-ca");
  caPem = ca.certPem;
  serving = await newServingCertificate(ca);
  otherCaPem = (await newCertificateAuthority("another-ca")).certPem;
});

type Req = http.IncomingMessage | http2.Http2ServerRequest;

/** What the handlers use of a response, common to node:http and node:http2's compatibility API. */
interface Res {
  writeHead(code: number, headers?: Record<string, string>): unknown;
  flushHeaders(): void;
  write(chunk: string | Buffer): boolean;
  end(chunk?: string | Buffer): unknown;
  once(event: "drain", listener: () => void): unknown;
}

interface Seen {
  req: Req;
  res: Res;
  /** Resolves when the server sees the request's stream or connection close. */
  closed: Promise<void>;
  isClosed: boolean;
}

type Kind = "h2" | "h2+http1" | "http1" | "http";

interface Server {
  url: string;
  seen: Seen[];
  /** HTTP/2 sessions the server accepted. */
  sessions: http2.ServerHttp2Session[];
  /** TCP connections accepted. */
  connections: number;
  /** TLS connections. */
  tls: TLSSocket[];
  /** The protocols each TLS client offered (http1 servers only). */
  alpnOffers: string[][];
  close(): Promise<void>;
}

const servers: Server[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(
  kind: Kind,
  handler: (req: Req, res: Res, seen: Seen) => unknown,
  settings: http2.Settings = {},
): Promise<Server> {
  const tlsOpts = { key: serving.keyPem, cert: serving.certPem };
  const server =
    kind === "http"
      ? http.createServer()
      : kind === "http1"
        ? https.createServer({
            ...tlsOpts,
            ALPNCallback: ({ protocols }) => {
              out.alpnOffers.push(protocols);
              return protocols.includes("http/1.1") ? "http/1.1" : undefined;
            },
          })
        : http2.createSecureServer({ ...tlsOpts, allowHTTP1: kind === "h2+http1", settings });
  const sockets = new Set<Socket>();
  const out: Server = {
    url: "",
    seen: [],
    sessions: [],
    connections: 0,
    tls: [],
    alpnOffers: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
  server.on("connection", (socket: Socket) => {
    out.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("secureConnection", (socket: TLSSocket) => out.tls.push(socket));
  server.on("session", (session: http2.ServerHttp2Session) => out.sessions.push(session));
  server.on("request", (req: Req, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const seen: Seen = { req, res: res as unknown as Res, closed: Promise.resolve(), isClosed: false };
    seen.closed = new Promise((resolve) =>
      res.once("close", () => {
        seen.isClosed = true;
        resolve();
      }),
    );
    out.seen.push(seen);
    // A handler may still write after the client went away: that is not the test's failure.
    Promise.resolve(handler(req, seen.res, seen)).catch(() => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  out.url = `${kind === "http" ? "http" : "https"}://127.0.0.1:${port}`;
  servers.push(out);
  return out;
}

function kubeConfig(
  server: string,
  opts: { ca?: string; user?: { name: string; token?: string; username?: string; password?: string } } = {},
): KubeConfig {
  const kc = new KubeConfig();
  const http = server.startsWith("http:");
  kc.loadFromOptions({
    clusters: [
      {
        name: "c",
        server,
        ...(http ? { skipTLSVerify: true } : { caData: Buffer.from(opts.ca ?? caPem).toString("base64") }),
      },
    ],
    users: [opts.user ?? { name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: opts.user?.name ?? "u" }],
    currentContext: "x",
  });
  return kc;
}

/** The events and outcomes of one watch. */
function recorder() {
  const events: { type: string; name: string }[] = [];
  const dones: unknown[] = [];
  const ended = Promise.withResolvers<unknown>();
  return {
    events,
    dones,
    ended: ended.promise,
    onEvent: (type: string, object: { metadata?: { name?: string } }) => {
      events.push({ type, name: object?.metadata?.name ?? "" });
    },
    done: (err: unknown) => {
      dones.push(err);
      ended.resolve(err);
    },
  };
}

type Recorder = ReturnType<typeof recorder>;

const path = "/api/v1/namespaces/ns/configmaps";

function start(kc: KubeConfig, rec: Recorder, query = {}, inactivityMs?: number): Promise<WatchHandle> {
  return watch(kc, path, query, rec.onEvent, rec.done, inactivityMs ? { inactivityMs } : {});
}

const line = (type: string, name: string) => `${JSON.stringify({ type, object: { metadata: { name } } })}\n`;

/** Polls cond until it holds, failing after the deadline. */
async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Returns once the client has read everything written so far on this HTTP/2 stream (it acks a ping
 * after the frames that came with or before it), so that the next write arrives as a chunk of its own.
 */
function delivered(req: Req): Promise<void> {
  const session = (req as http2.Http2ServerRequest).stream.session;
  assert.ok(session, "an HTTP/2 request");
  return new Promise((resolve, reject) => {
    session.ping((err) => (err ? reject(err) : resolve()));
  });
}

const ok = (res: Res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.flushHeaders();
};

/** Writes the events and keeps the stream open. */
const streams =
  (...names: string[]) =>
  (_req: Req, res: Res) => {
    ok(res);
    for (const name of names) res.write(line("ADDED", name));
  };

describe("watch", () => {
  it("delivers events in order, however lines and characters are cut across chunks", async () => {
    // "é" is two bytes and "€" three: each is cut between chunks. A chunk also ends right before a
    // line's newline, and one in a line of two pieces.
    const b = Buffer.from(line("MODIFIED", "café-€"));
    const d = line("ADDED", "d");
    const e = line("ADDED", "e");
    const cutInE = b.indexOf(Buffer.from("é")) + 1;
    const cutInEuro = b.indexOf(Buffer.from("€")) + 1;
    const server = await serve("h2", async (req, res) => {
      ok(res);
      res.write([line("ADDED", "a"), "not json\n", line("ADDED", "b").slice(0, 10)].join(""));
      await delivered(req);
      res.write(line("ADDED", "b").slice(10));
      res.write(b.subarray(0, cutInE));
      await delivered(req);
      res.write(b.subarray(cutInE, cutInEuro));
      await delivered(req);
      res.write(Buffer.concat([b.subarray(cutInEuro), Buffer.from(line("DELETED", "c"))]));
      res.write(d.slice(0, -1));
      await delivered(req);
      res.write(`\n${e.slice(0, 5)}`);
      await delivered(req);
      res.write(e.slice(5, -1));
      await delivered(req);
      res.write("\n");
      res.end();
    });
    const rec = recorder();
    await start(kubeConfig(server.url), rec);
    assert.equal(await rec.ended, null);
    assert.deepEqual(rec.events, [
      { type: "ADDED", name: "a" },
      { type: "ADDED", name: "b" },
      { type: "MODIFIED", name: "café-€" },
      { type: "DELETED", name: "c" },
      { type: "ADDED", name: "d" },
      { type: "ADDED", name: "e" },
    ]);
    await server.close();
    assert.equal(rec.dones.length, 1);
  });

  it("delivers every event of a stream cut at random places (seeded), newlines and characters included", async () => {
    // A small LCG: the same cuts on every run; the seed is in the failure message.
    const seed = 20261201;
    let state = seed;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const names = Array.from({ length: 200 }, (_, i) => `e${i}-${"é€x".repeat(random(40))}`);
    const bytes = Buffer.from(names.map((n) => line("MODIFIED", n)).join(""));
    const cuts = new Set<number>();
    while (cuts.size < 150) cuts.add(1 + random(bytes.length - 1));
    // Right before and right after some newlines too: the edges a splitter gets wrong.
    for (let i = bytes.indexOf(10), k = 0; i !== -1 && k < 20; i = bytes.indexOf(10, i + 1), k++)
      cuts.add(k % 2 === 0 ? i : i + 1);
    const points = [...cuts].filter((c) => c > 0 && c < bytes.length).sort((x, y) => x - y);
    const server = await serve("h2", async (req, res) => {
      ok(res);
      let from = 0;
      for (const to of [...points, bytes.length]) {
        res.write(bytes.subarray(from, to));
        await delivered(req);
        from = to;
      }
      res.end();
    });
    const rec = recorder();
    await start(kubeConfig(server.url), rec);
    assert.equal(await rec.ended, null);
    assert.deepEqual(
      rec.events.map((e) => e.name),
      names,
      `seed ${seed}: ${points.length} cuts`,
    );
  });

  it("sends the credentials, the query and watch=true", async () => {
    const server = await serve("h2", streams("a"));
    const rec = recorder();
    const handle = await start(kubeConfig(server.url), rec, {
      labelSelector: "app=x,tier in (web)",
      resourceVersion: 5,
      allowWatchBookmarks: true,
      fieldSelector: undefined,
    });
    await until(() => rec.events.length === 1, "the event");
    const basic = recorder();
    const basicKc = kubeConfig(server.url, { user: { name: "b", username: "me", password: "pw" } });
    const basicHandle = await start(basicKc, basic);
    await until(() => basic.events.length === 1, "the event with basic auth");
    const [bearer, withBasic] = server.seen as [Seen, Seen];
    assert.equal(bearer.req.headers.authorization, "Bearer t");
    assert.equal(bearer.req.headers.accept, "application/json");
    const url = new URL(bearer.req.url ?? "", "https://x");
    assert.equal(url.pathname, path);
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      labelSelector: "app=x,tier in (web)",
      resourceVersion: "5",
      allowWatchBookmarks: "true",
      watch: "true",
    });
    assert.equal(withBasic.req.headers.authorization, `Basic ${Buffer.from("me:pw").toString("base64")}`);
    handle.abort();
    basicHandle.abort();
    await Promise.all([rec.ended, basic.ended]);
  });

  it("calls done(null) once when the server ends the watch, with a last line without newline", async () => {
    const server = await serve("h2", (_req, res) => {
      ok(res);
      res.end(line("ADDED", "a") + line("ADDED", "b").trimEnd());
    });
    const rec = recorder();
    const handle = await start(kubeConfig(server.url), rec);
    assert.equal(await rec.ended, null);
    assert.deepEqual(
      rec.events.map((e) => e.name),
      ["a", "b"],
    );
    handle.abort(); // after done: nothing
    await server.close();
    assert.deepEqual(rec.dones, [null]);
  });

  it("stops at abort: done once, no event after it, the stream closed", async () => {
    const server = await serve("h2", (_req, res) => {
      ok(res);
      // One chunk: the abort comes from the first event's callback, with the second already read.
      res.write(line("ADDED", "a") + line("ADDED", "b"));
    });
    const rec = recorder();
    const handle: WatchHandle = await watch(
      kubeConfig(server.url),
      path,
      {},
      (type, object) => {
        rec.onEvent(type, object);
        handle.abort();
      },
      rec.done,
    );
    const err = await rec.ended;
    assert.equal((err as Error).name, "AbortError");
    await (server.seen[0] as Seen).closed;
    assert.deepEqual(
      rec.events.map((e) => e.name),
      ["a"],
    );

    // Aborted from outside, while the server is quiet.
    const quiet = recorder();
    const quietHandle = await start(kubeConfig(server.url), quiet);
    await until(() => quiet.events.length === 2, "the events");
    quietHandle.abort();
    quietHandle.abort();
    assert.equal(((await quiet.ended) as Error).name, "AbortError");
    await (server.seen[1] as Seen).closed;
    await server.close();
    assert.equal(rec.dones.length, 1);
    assert.equal(quiet.dones.length, 1);
  });

  it("ends with an ApiError carrying the code and the body (at most 64 KiB of it)", async () => {
    const status = JSON.stringify({ kind: "Status", code: 410, reason: "Expired", message: "too old" });
    const server = await serve("h2", (req, res) => {
      if (req.url?.startsWith("/gone")) {
        res.writeHead(410, { "content-type": "application/json" });
        res.end(status);
      } else {
        res.writeHead(403, { "content-type": "text/plain" });
        res.end("x".repeat(200_000));
      }
    });
    const kc = kubeConfig(server.url);
    const gone = recorder();
    await watch(kc, "/gone", {}, gone.onEvent, gone.done);
    const err = await gone.ended;
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 410);
    assert.equal(err.body, status);
    const big = recorder();
    await watch(kc, "/big", {}, big.onEvent, big.done);
    const bigErr = await big.ended;
    assert.ok(bigErr instanceof ApiError);
    assert.equal(bigErr.code, 403);
    assert.equal(bigErr.body, "x".repeat(64 * 1024));
    assert.deepEqual(gone.events, []);
  });

  it("times out after inactivityMs without a byte, before and after the response's headers", async () => {
    const server = await serve("h2", (req, res) => {
      if (req.url?.startsWith("/headers")) ok(res);
    });
    const kc = kubeConfig(server.url);
    for (const at of ["/headers", "/nothing"]) {
      const rec = recorder();
      const started = Date.now();
      await watch(kc, at, {}, rec.onEvent, rec.done, { inactivityMs: 200 });
      const err = await rec.ended;
      assert.ok(err instanceof DOMException, at);
      assert.equal(err.name, "TimeoutError");
      assert.ok(Date.now() - started >= 190, `${at}: not before inactivityMs`);
    }
    await Promise.all(server.seen.map((s) => s.closed));
  });

  it("times out while the connection hangs, and returns without waiting for it", async () => {
    // Accepts TCP and never answers the TLS handshake.
    const held = new Set<Socket>();
    const server = net.createServer((socket) => {
      held.add(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const rec = recorder();
      let returned = false;
      void start(kubeConfig(`https://127.0.0.1:${port}`), rec, {}, 200).then(() => {
        returned = true;
      });
      const err = await rec.ended;
      assert.ok(err instanceof DOMException);
      assert.equal(err.name, "TimeoutError");
      await until(() => returned, "watch() to return (not after the 30 s connect timeout)");
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("ends the watch with the error an onEvent throws", async () => {
    const server = await serve("h2", streams("a", "b"));
    const rec = recorder();
    const boom = new Error("boom");
    await watch(
      kubeConfig(server.url),
      path,
      {},
      (type, object) => {
        rec.onEvent(type, object);
        throw boom;
      },
      rec.done,
    );
    assert.equal(await rec.ended, boom);
    assert.equal(rec.events.length, 1);
    await (server.seen[0] as Seen).closed;
  });

  it("shares one HTTP/2 session between watches started together", async () => {
    const server = await serve("h2", streams("a"));
    const kc = kubeConfig(server.url);
    const recs = [recorder(), recorder()];
    const handles = await Promise.all(recs.map((rec) => start(kc, rec)));
    await until(() => recs.every((rec) => rec.events.length === 1), "both watches' events");
    assert.equal(server.sessions.length, 1);
    assert.equal(server.tls.length, 1);
    for (const h of handles) h.abort();
    await Promise.all(recs.map((rec) => rec.ended));
  });

  it("opens another session when the server's stream limit is reached", async () => {
    const server = await serve("h2", streams("a"), { maxConcurrentStreams: 2 });
    const kc = kubeConfig(server.url);
    const recs = Array.from({ length: 5 }, recorder);
    const handles = await Promise.all(recs.map((rec) => start(kc, rec)));
    await until(() => recs.every((rec) => rec.events.length === 1), "every watch's event");
    assert.equal(server.sessions.length, 3);
    for (const h of handles) h.abort();
    for (const rec of recs) assert.equal(((await rec.ended) as Error).name, "AbortError");
    // Freed streams are used again.
    const again = recorder();
    const handle = await start(kc, again);
    await until(() => again.events.length === 1, "the next watch's event");
    assert.equal(server.sessions.length, 3);
    handle.abort();
  });

  it("speaks HTTP/2 to a server that also offers HTTP/1.1", async () => {
    const server = await serve("h2+http1", streams("a"));
    const rec = recorder();
    const handle = await start(kubeConfig(server.url), rec);
    await until(() => rec.events.length === 1, "the event");
    assert.equal(server.seen[0]?.req.httpVersion, "2.0");
    handle.abort();
    await rec.ended;
  });

  it("falls back to HTTP/1.1 for good when the server does not pick h2", async () => {
    const server = await serve("http1", (_req, res) => {
      ok(res);
      res.end(line("ADDED", "a"));
    });
    const kc = kubeConfig(server.url);
    for (const _ of [1, 2]) {
      const rec = recorder();
      await start(kc, rec);
      assert.equal(await rec.ended, null);
      assert.deepEqual(rec.events, [{ type: "ADDED", name: "a" }]);
    }
    assert.deepEqual(
      server.seen.map((s) => [s.req.httpVersion, s.req.headers.authorization]),
      [
        ["1.1", "Bearer t"],
        ["1.1", "Bearer t"],
      ],
    );
    // One connection offered h2 (and got http/1.1); the watches went through the agent's.
    assert.deepEqual(server.alpnOffers, [["h2", "http/1.1"]]);
    assert.equal(server.connections, 2, "the second watch reused the first one's connection");
  });

  it("watches a plain http: server over HTTP/1.1", async () => {
    const server = await serve("http", streams("a", "b"));
    const rec = recorder();
    const handle = await start(kubeConfig(server.url), rec, { resourceVersion: "7" });
    await until(() => rec.events.length === 2, "the events");
    assert.equal(server.seen[0]?.req.url, `${path}?resourceVersion=7&watch=true`);
    assert.equal(server.seen[0]?.req.headers.authorization, "Bearer t");
    handle.abort();
    assert.equal(((await rec.ended) as Error).name, "AbortError");
    await (server.seen[0] as Seen).closed;
  });

  it("ends with an error when the server drops the session or the connection, and reconnects", async () => {
    const server = await serve("h2", streams("a"));
    const kc = kubeConfig(server.url);
    const drops = [
      // The server's session.destroy(): a GOAWAY, then the connection closes.
      () => server.sessions.at(-1)?.destroy(),
      // The connection cut under the session.
      () => server.tls.at(-1)?.destroy(),
    ];
    for (const drop of drops) {
      const rec = recorder();
      await start(kc, rec);
      await until(() => rec.events.length === 1, "the event");
      drop();
      const err = await rec.ended;
      assert.ok(err instanceof Error, `an error, not ${String(err)}`);
      assert.notEqual(err.name, "AbortError");
    }
    const next = recorder();
    const handle = await start(kc, next);
    await until(() => next.events.length === 1, "the next watch's event");
    assert.equal(server.sessions.length, 3);
    handle.abort();
    await next.ended;
  });

  it("opens new watches on another session once the server sends GOAWAY, and the old one goes on", async () => {
    const server = await serve("h2", (_req, res) => {
      ok(res);
      res.write(line("ADDED", `a${server.seen.length}`));
    });
    const kc = kubeConfig(server.url);
    const first = recorder();
    const firstHandle = await start(kc, first);
    await until(() => first.events.length === 1, "the first event");
    const old = server.sessions[0] as http2.ServerHttp2Session;
    // The client closes its side once it has the server's GOAWAY, with a GOAWAY of its own.
    const seen = once(old, "goaway");
    old.close(); // the open stream may finish
    await seen;
    const second = recorder();
    const secondHandle = await start(kc, second);
    await until(() => second.events.length === 1, "the second watch's event");
    assert.equal(server.sessions.length, 2);
    (server.seen[0] as Seen).res.write(line("MODIFIED", "a1"));
    await until(() => first.events.length === 2, "the first watch's next event");
    assert.deepEqual(first.dones, []);
    firstHandle.abort();
    secondHandle.abort();
    await Promise.all([first.ended, second.ended]);
  });

  it("drops a connection that stops answering pings, and the next watch connects again", async () => {
    const server = await serve("h2", streams("a"));
    // A TCP relay to the server that can go silent both ways, as a dropped NAT entry does.
    let silent = false;
    let relayed = 0;
    const sockets = new Set<Socket>();
    const relay = net.createServer((client) => {
      relayed++;
      const upstream = net.connect(Number(new URL(server.url).port), "127.0.0.1");
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.on("data", (d) => silent || upstream.write(d));
      upstream.on("data", (d) => silent || client.write(d));
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    const saved = { ...sessionTimings };
    Object.assign(sessionTimings, { pingEveryMs: 100, pingTimeoutMs: 200 });
    try {
      const kc = kubeConfig(`https://127.0.0.1:${(relay.address() as AddressInfo).port}`);
      const rec = recorder();
      await start(kc, rec, {}, 60_000);
      await until(() => rec.events.length === 1, "the event");
      silent = true;
      await until(() => rec.dones.length === 1, "the ping to end the watch");
      const err = rec.dones[0];
      assert.ok(err instanceof Error, `an error, not ${String(err)}`);
      assert.notEqual(err.name, "TimeoutError", "found by the ping, not the watch's inactivity timeout");
      silent = false;
      const next = recorder();
      const handle = await start(kc, next);
      await until(() => next.events.length === 1, "the next watch's event");
      assert.equal(relayed, 2, "a new connection");
      handle.abort();
      await next.ended;
    } finally {
      Object.assign(sessionTimings, saved);
      for (const s of sockets) s.destroy();
      relay.close();
    }
  });

  it("closes a connection left without streams for idleCloseMs", async () => {
    const server = await serve("h2", streams("a"));
    const saved = { ...sessionTimings };
    Object.assign(sessionTimings, { idleCloseMs: 200 });
    try {
      const kc = kubeConfig(server.url);
      const rec = recorder();
      const handle = await start(kc, rec);
      await until(() => rec.events.length === 1, "the event");
      const session = server.sessions[0] as http2.ServerHttp2Session;
      handle.abort();
      await rec.ended;
      await until(() => session.closed || session.destroyed, "the idle session closed");
      const next = recorder();
      const nextHandle = await start(kc, next);
      await until(() => next.events.length === 1, "the next watch's event");
      assert.equal(server.sessions.length, 2, "a new session for the next watch");
      nextHandle.abort();
      await next.ended;
    } finally {
      Object.assign(sessionTimings, saved);
    }
  });

  it("hands connection and TLS errors to done", async () => {
    const server = await serve("h2", streams("a"));
    const badCa = recorder();
    await start(kubeConfig(server.url, { ca: otherCaPem }), badCa);
    const tlsErr = (await badCa.ended) as NodeJS.ErrnoException;
    assert.ok(tlsErr instanceof Error);
    assert.match(String(tlsErr.code), /CERT|SIGNATURE|ISSUER/);
    await server.close();
    const refused = recorder();
    await start(kubeConfig(server.url), refused);
    assert.equal(((await refused.ended) as NodeJS.ErrnoException).code, "ECONNREFUSED");
    assert.equal(badCa.dones.length + refused.dones.length, 2);
  });

  it("ends a line longer than 16 MiB with an error and closes the stream", async () => {
    const mib = Buffer.alloc(1 << 20, "a");
    const server = await serve("h2", async (_req, res, seen) => {
      ok(res);
      res.write('{"type":"ADDED","object":"');
      for (let i = 0; i < 20 && !seen.isClosed; i++) {
        if (!res.write(mib))
          await Promise.race([new Promise<void>((r) => res.once("drain", () => r())), seen.closed]);
      }
    });
    const rec = recorder();
    await start(kubeConfig(server.url), rec);
    const err = await rec.ended;
    assert.ok(err instanceof Error);
    assert.match(err.message, /longer than 16777216 bytes/);
    await (server.seen[0] as Seen).closed;
    assert.deepEqual(rec.events, []);
  });

  it("lets the process exit once its watch is aborted", async () => {
    const server = await serve("h2", streams("a"));
    const options = {
      clusters: [{ name: "c", server: server.url, caData: Buffer.from(caPem).toString("base64") }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    };
    const script = `
      const { KubeConfig } = await import("@kubernetes/client-node");
      const { watch } = await import(${JSON.stringify(new URL("../../src/api/watch.ts", import.meta.url).href)});
      const kc = new KubeConfig();
      kc.loadFromOptions(${JSON.stringify(options)});
      const handle = await watch(kc, "/w", {}, (type) => {
        console.log("event", type);
        handle.abort();
      }, (err) => console.log("done", err?.name ?? null));
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const deadline = setTimeout(() => child.kill(), 20_000);
    const code = await exited;
    clearTimeout(deadline);
    assert.equal(out, "event ADDED\ndone AbortError\n");
    assert.equal(code, 0, "exited by itself, with the session still open on the server");
  });
});
