// The controller's own API calls (src/api/http.ts): connections kept alive and shared, errors as
// apiStatus reads them, credentials applied per call, and no call left hanging.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { apiStatus } from "../../src/api/errors.ts";
import { call } from "../../src/api/http.ts";
import type { LoadedKubeConfig } from "../../src/config/kubeconfig.ts";
import { loopbackKubeConfig } from "../support/loopback-kubeconfig.ts";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  port: number;
}

async function withServer(
  answer: (seen: Seen, res: ServerResponse) => void,
  run: (kc: LoadedKubeConfig, seen: Seen[]) => Promise<void>,
) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
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
      };
      seen.push(s);
      answer(s, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const kc = loopbackKubeConfig(port);
  try {
    await run(kc, seen);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const json = (res: ServerResponse, code: number, body: unknown) => {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

describe("api calls", () => {
  it("sends JSON with the token and query, and reuses one connection", async () => {
    await withServer(
      (_, res) => json(res, 200, { ok: true }),
      async (kc, seen) => {
        const out = await call(kc, "PATCH", "/apis/g/v1/namespaces/ns/things/a", {
          query: { fieldManager: "m", limit: 5, continue: undefined, labelSelector: "a=b,c in (d)" },
          body: { spec: { x: 1 } },
          contentType: "application/merge-patch+json",
        });
        assert.deepEqual(out, { ok: true });
        await call(kc, "GET", "/api/v1/namespaces");
        const [first, second] = seen as [Seen, Seen];
        assert.equal(first.method, "PATCH");
        assert.equal(
          first.url,
          "/apis/g/v1/namespaces/ns/things/a?fieldManager=m&limit=5&labelSelector=a%3Db%2Cc%20in%20(d)",
        );
        assert.equal(first.headers["content-type"], "application/merge-patch+json");
        assert.equal(first.headers.authorization, "Bearer t");
        assert.deepEqual(JSON.parse(first.body), { spec: { x: 1 } });
        assert.equal(second.body, "");
        assert.equal(second.port, first.port, "the second call reused the first one's connection");
      },
    );
  });

  it("rejects a non-2xx answer with its Status, as apiStatus reads it", async () => {
    const status = { kind: "Status", code: 409, reason: "Conflict", message: "the object has been modified" };
    await withServer(
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

  it("fails a call the server never answers after callTimeoutMs", async () => {
    await withServer(
      () => {},
      async (kc) => {
        kc.callTimeoutMs = 300;
        const started = Date.now();
        await assert.rejects(call(kc, "GET", "/api/v1/namespaces"), { name: "TimeoutError" });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 5_000, `failed after ${elapsed} ms`);
      },
    );
  });
});
