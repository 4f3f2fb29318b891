// PooledKubeConfig: every API call of one context gets the same connection pool (dispatcher), and
// no API call can hang.
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { CoreV1Api, RequestContext, Watch } from "@kubernetes/client-node";
import { PooledKubeConfig } from "../../src/config/kubeconfig.ts";

const config = (server: string) => ({
  // A CA makes client-node build a dispatcher (it only connects, and parses the CA, on first use).
  clusters: [
    { name: "c", server, skipTLSVerify: false, caData: Buffer.from("not parsed here").toString("base64") },
  ],
  users: [{ name: "u", token: "t" }],
  contexts: [{ name: "ctx", cluster: "c", user: "u" }],
  currentContext: "ctx",
});

describe("PooledKubeConfig", () => {
  it("reuses one dispatcher for every call, while headers still apply per call", async () => {
    const kc = new PooledKubeConfig();
    kc.loadFromOptions(config("https://127.0.0.1:6443"));
    const first = new RequestContext("https://127.0.0.1:6443/api", "GET" as never);
    const second = new RequestContext("https://127.0.0.1:6443/apis", "GET" as never);
    await kc.applySecurityAuthentication(first);
    await kc.applySecurityAuthentication(second);
    assert.ok(first.getDispatcher());
    assert.equal(second.getDispatcher(), first.getDispatcher());
    assert.equal(second.getHeaders().Authorization, "Bearer t");
  });

  it("keeps separate pools for separate KubeConfigs", async () => {
    const a = new PooledKubeConfig();
    const b = new PooledKubeConfig();
    a.loadFromOptions(config("https://127.0.0.1:6443"));
    b.loadFromOptions(config("https://127.0.0.1:6443"));
    const ca = new RequestContext("https://127.0.0.1:6443/api", "GET" as never);
    const cb = new RequestContext("https://127.0.0.1:6443/api", "GET" as never);
    await a.applySecurityAuthentication(ca);
    await b.applySecurityAuthentication(cb);
    assert.notEqual(ca.getDispatcher(), cb.getDispatcher());
  });

  it("fails an API call the server never answers after callTimeoutMs, but leaves watches open", async () => {
    // A server that accepts every request and answers none, except that watches get their headers
    // and then stay silent, as a quiet watch does.
    const open: ServerResponse[] = [];
    const server = createServer((req, res) => {
      open.push(res);
      if (req.url?.includes("watch=true")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.flushHeaders();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const kc = new PooledKubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
        users: [{ name: "u", token: "t" }],
        contexts: [{ name: "ctx", cluster: "c", user: "u" }],
        currentContext: "ctx",
      });
      kc.callTimeoutMs = 300;
      const watchEnded = Promise.withResolvers<unknown>();
      const watch = await new Watch(kc).watch("/api/v1/namespaces", {}, () => {}, watchEnded.resolve);
      const started = Date.now();
      await assert.rejects(kc.makeApiClient(CoreV1Api).listNamespace(), { name: "TimeoutError" });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 5_000, `failed after ${elapsed} ms`);
      // The watch outlived the call timeout: ending it now is the first time it ends.
      let ended = false;
      void watchEnded.promise.then(() => {
        ended = true;
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(ended, false, "the watch is still open");
      watch.abort();
      await watchEnded.promise;
    } finally {
      for (const res of open) res.destroy();
      server.close();
    }
  });
});
