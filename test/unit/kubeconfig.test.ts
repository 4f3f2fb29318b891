// PooledKubeConfig: every API call of one context gets the same connection pool (dispatcher).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestContext } from "@kubernetes/client-node";
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
});
