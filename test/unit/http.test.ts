// The controller's own API calls (src/api/http.ts), over HTTP/1.1 (a plain http: server) and HTTP/2
// (TLS with ALPN, as kube-apiserver): connections kept alive and shared (with the identity's watches
// on HTTP/2), errors as apiStatus reads them, credentials applied per call, and no call left hanging.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { before, describe, it } from "node:test";
import { newCertificateAuthority, newServingCertificate } from "../../envtest/pki.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { call } from "../../src/api/http.ts";
import { watch } from "../../src/api/watch.ts";
import { LoadedKubeConfig, withServer } from "../../src/config/kubeconfig.ts";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  /** The client's port: one per connection. */
  port: number;
  httpVersion: string;
}

/** What the handlers use of a response, common to node:http and node:http2's compatibility API. */
interface Res {
  writeHead(code: number, headers?: Record<string, string>): unknown;
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
}
type Kind = "HTTP/1.1" | "HTTP/2";

let tlsFiles: { caPem: string; keyPem: string; certPem: string };
before(async () => {
  const ca = await newCertificateAuthority("http-test-ca");
  const serving = await newServingCertificate(ca);
  tlsFiles = { caPem: ca.certPem, ...serving };
});

function kubeConfig(kind: Kind, port: number): LoadedKubeConfig {
  const cluster =
    kind === "HTTP/2"
      ? {
          name: "c",
          server: `https://127.0.0.1:${port}`,
          caData: Buffer.from(tlsFiles.caPem).toString("base64"),
          skipTLSVerify: false,
        }
      : { name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true };
  return new LoadedKubeConfig({
    clusters: [cluster],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "ctx", cluster: "c", user: "u" }],
    currentContext: "ctx",
  });
}

async function withLoopback(
  kind: Kind,
  answer: (seen: Seen, res: Res) => void,
  run: (kc: LoadedKubeConfig, seen: Seen[]) => Promise<void>,
) {
  const seen: Seen[] = [];
  const onRequest = (
    req: IncomingMessage | http2.Http2ServerRequest,
    res: ServerResponse | http2.Http2ServerResponse,
  ) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const s = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body,
        port: req.socket.remotePort ?? 0,
        httpVersion: req.httpVersion,
      };
      seen.push(s);
      answer(s, res as unknown as Res);
    });
  };
  const server =
    kind === "HTTP/2"
      ? http2.createSecureServer({ key: tlsFiles.keyPem, cert: tlsFiles.certPem }, onRequest)
      : createServer(onRequest);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => sessions.add(s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  try {
    await run(kubeConfig(kind, port), seen);
  } finally {
    for (const s of sessions) s.destroy();
    if ("closeAllConnections" in server) server.closeAllConnections();
    server.close();
  }
}

const json = (res: Res, code: number, body: unknown) => {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

for (const kind of ["HTTP/1.1", "HTTP/2"] as const) {
  describe(`api calls over ${kind}`, () => {
    const version = kind === "HTTP/2" ? "2.0" : "1.1";

    it("sends JSON with the token and query, and reuses one connection", async () => {
      await withLoopback(
        kind,
        (_, res) => json(res, 200, { ok: true }),
        async (kc, seen) => {
          const out = await call(kc, "PATCH", "/apis/g/v1/namespaces/ns/things/a", {
            query: { fieldManager: "m", limit: 5, continue: undefined, labelSelector: "a=b,c in (d)" },
            body: { spec: { x: "é" } },
            contentType: "application/merge-patch+json",
          });
          assert.deepEqual(out, { ok: true });
          await call(kc, "GET", "/api/v1/namespaces");
          const [first, second] = seen as [Seen, Seen];
          assert.equal(first.httpVersion, version);
          assert.equal(first.method, "PATCH");
          assert.equal(
            first.url,
            "/apis/g/v1/namespaces/ns/things/a?fieldManager=m&limit=5&labelSelector=a%3Db%2Cc%20in%20(d)",
          );
          assert.equal(first.headers["content-type"], "application/merge-patch+json");
          assert.equal(first.headers["content-length"], String(Buffer.byteLength(first.body)));
          assert.equal(first.headers.authorization, "Bearer t");
          assert.deepEqual(JSON.parse(first.body), { spec: { x: "é" } });
          assert.equal(second.method, "GET");
          assert.equal(second.body, "");
          assert.equal(second.port, first.port, "the second call reused the first one's connection");
        },
      );
    });

    it("rejects a non-2xx answer with its Status, as apiStatus reads it", async () => {
      const status = {
        kind: "Status",
        code: 409,
        reason: "Conflict",
        message: "the object has been modified",
      };
      await withLoopback(
        kind,
        (_, res) => json(res, 409, status),
        async (kc) => {
          const err = await call(kc, "GET", "/api/v1/namespaces/x").catch((e: unknown) => e);
          assert.deepEqual(apiStatus(err), {
            code: 409,
            reason: "Conflict",
            message: "the object has been modified",
          });
          assert.doesNotMatch((err as Error).message, /modified/, "the body stays out of the message");
        },
      );
    });

    it("fails a call the server never answers after callTimeoutMs, and the next call works", async () => {
      await withLoopback(
        kind,
        (seen, res) => {
          if (seen.url.includes("slow")) return;
          json(res, 200, { ok: true });
        },
        async (kc) => {
          kc.callTimeoutMs = 300;
          const started = Date.now();
          await assert.rejects(call(kc, "GET", "/api/v1/slow"), { name: "TimeoutError" });
          const elapsed = Date.now() - started;
          assert.ok(elapsed >= 250 && elapsed < 5_000, `failed after ${elapsed} ms`);
          assert.deepEqual(await call(kc, "GET", "/api/v1/namespaces"), { ok: true });
        },
      );
    });

    it("rejects a call cut off by the connection's end", async () => {
      await withLoopback(
        kind,
        (_, res) => {
          res.writeHead(200, { "content-type": "application/json" });
          res.write('{"partial":');
          // The connection drops before the body's end.
          const r = res as unknown as ServerResponse | http2.Http2ServerResponse;
          const socket = "stream" in r ? r.stream.session?.socket : r.socket;
          setImmediate(() => socket?.destroy());
        },
        async (kc) => {
          await assert.rejects(call(kc, "GET", "/api/v1/namespaces"));
        },
      );
    });
  });
}

describe("api calls and watches over HTTP/2", () => {
  it("share one connection, also with many calls in flight", async () => {
    await withLoopback(
      "HTTP/2",
      (seen, res) => {
        if (seen.url.includes("watch=true")) {
          res.writeHead(200, { "content-type": "application/json" });
          res.write(`${JSON.stringify({ type: "ADDED", object: { metadata: { name: "a" } } })}\n`);
          return;
        }
        json(res, 200, { n: seen.url });
      },
      async (kc, seen) => {
        const events: string[] = [];
        const ended = Promise.withResolvers<unknown>();
        const handle = await watch(kc, "/api/v1/configmaps", {}, (type) => events.push(type), ended.resolve);
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) => call<{ n: string }>(kc, "GET", `/api/v1/namespaces/n${i}`)),
        );
        assert.deepEqual(
          answers.map((a) => a.n),
          Array.from({ length: 50 }, (_, i) => `/api/v1/namespaces/n${i}`),
        );
        handle.abort();
        assert.equal(((await ended.promise) as Error).name, "AbortError");
        assert.equal(new Set(seen.map((s) => s.port)).size, 1, "one connection for the watch and 50 calls");
        assert.deepEqual(events, ["ADDED"]);
      },
    );
  });
});

describe("connections per identity", () => {
  it("copies of one kubeconfig (a kcp workspace each) share one; another user has its own", async () => {
    await withLoopback(
      "HTTP/2",
      (seen, res) => json(res, 200, { url: seen.url }),
      async (kc, seen) => {
        const server = kc.getCurrentCluster()?.server as string;
        const workspaces = ["root:a", "root:b"].map((ws) => withServer(kc, `${server}/clusters/${ws}`));
        for (const ws of workspaces) await call(ws, "GET", "/api/v1/namespaces");
        await call(kc, "GET", "/api/v1/namespaces");
        assert.deepEqual(
          seen.map((s) => s.url),
          ["/clusters/root:a/api/v1/namespaces", "/clusters/root:b/api/v1/namespaces", "/api/v1/namespaces"],
        );
        assert.equal(new Set(seen.map((s) => s.port)).size, 1, "one connection for the three");
        const other = new LoadedKubeConfig({
          clusters: kc.getClusters(),
          users: [{ name: "someone-else", token: "t2" }],
          contexts: [{ name: "ctx", cluster: "c", user: "someone-else" }],
          currentContext: "ctx",
        });
        await call(other, "GET", "/api/v1/namespaces");
        const last = seen.at(-1) as Seen;
        assert.equal(last.headers.authorization, "Bearer t2");
        assert.notEqual(last.port, seen[0]?.port, "another user, another connection");
      },
    );
  });
});
