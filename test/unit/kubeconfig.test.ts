// PooledKubeConfig: every watch of one context gets the same connection pool (dispatcher), no call
// can hang, and bearer tokens follow their files as they rotate. (API calls' pools: http.test.ts.)
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CoreV1Api, type KubeConfig, RequestContext, Watch } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { call } from "../../src/api/http.ts";
import { FollowedFile, tokenText, tokenUsers } from "../../src/config/credentials.ts";
import { ConfigError, forContext, loadKubeConfig, PooledKubeConfig } from "../../src/config/kubeconfig.ts";
import { writeLikeKubelet } from "../support/atomic-writer.ts";
import { loopbackKubeConfig } from "../support/loopback-kubeconfig.ts";

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
      const kc = loopbackKubeConfig(port);
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

// Tokens that rotate under a running process: the kubeconfig, and the token file it names, are read
// again when they change, as kubelet changes a mounted Secret (a symlink swap), with no reload.
describe("rotating bearer tokens", () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "isc-kubeconfig-"));
    dirs.push(dir);
    return dir;
  };
  const kubeconfig = (server: string, user: Record<string, unknown>) =>
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server, "insecure-skip-tls-verify": true } }],
      users: [{ name: "u", user }],
      contexts: [
        { name: "ctx", context: { cluster: "c", user: "u" } },
        { name: "other", context: { cluster: "c", user: "u" } },
      ],
      "current-context": "ctx",
    });
  /** The token API calls (api/http.ts) carry now. */
  const callAuthorization = async (kc: KubeConfig) => {
    const opts: { headers?: Record<string, unknown> } = {};
    await kc.applyToHTTPSOptions(opts);
    return opts.headers?.Authorization;
  };
  /** The token calls carry now: API calls and watches (client-node's) alike. */
  const authorization = async (kc: KubeConfig) => {
    const context = new RequestContext("https://127.0.0.1:6443/api", "GET" as never);
    await kc.applySecurityAuthentication(context);
    assert.equal(await callAuthorization(kc), context.getHeaders().Authorization, "both paths agree");
    return context.getHeaders().Authorization;
  };

  it("finds the users with a token of their own, resolving tokenFile against the kubeconfig's directory", () => {
    const text = stringify({
      users: [
        { name: "inline", user: { token: "t" } },
        { name: "file", user: { tokenFile: "secrets/token" } },
        { name: "absolute", user: { tokenFile: "/run/token" } },
        { name: "client-node-spelling", user: { "token-file": "token" } },
        { name: "both", user: { token: "t", tokenFile: "token" } },
        { name: "exec", user: { exec: { command: "plugin" }, token: "ignored" } },
        { name: "provider", user: { "auth-provider": { name: "oidc" } } },
        { name: "certificate", user: { "client-certificate-data": "x" } },
        { user: { token: "nameless" } },
      ],
    });
    assert.deepEqual(Object.fromEntries(tokenUsers(text, "/etc/isc/remote")), {
      inline: { token: "t" },
      file: { tokenFile: "/etc/isc/remote/secrets/token" },
      absolute: { tokenFile: "/run/token" },
      "client-node-spelling": { tokenFile: "/etc/isc/remote/token" },
      both: { tokenFile: "/etc/isc/remote/token" },
    });
    assert.deepEqual(tokenUsers("", "/"), new Map());
  });

  it("takes a token file's token without the newline around it, and refuses an empty one", () => {
    assert.equal(tokenText("eyJhbGc.x.y\n"), "eyJhbGc.x.y");
    assert.throws(() => tokenText(" \n"), /empty/);
  });

  it("reads a followed file again only when kubelet swapped it, or it was rewritten", async () => {
    const dir = await tempDir();
    await writeLikeKubelet(dir, { token: "one" });
    let reads = 0;
    const file = new FollowedFile(join(dir, "token"), (text) => {
      reads++;
      return text;
    });
    assert.equal(file.get(), "one");
    assert.equal(file.get(), "one");
    assert.equal(reads, 1, "unchanged: not read again");
    await writeLikeKubelet(dir, { token: "two" });
    assert.equal(file.get(), "two");
    await writeFile(join(dir, "plain"), "a");
    const plain = new FollowedFile(join(dir, "plain"), (text) => text);
    assert.equal(plain.get(), "a");
    await writeFile(join(dir, "plain"), "bb");
    assert.equal(plain.get(), "bb", "rewritten in place");
  });

  it("sends the token file's newest token on the next call, in every context, without a reload", async () => {
    const dir = await tempDir();
    await writeLikeKubelet(dir, {
      kubeconfig: kubeconfig("https://127.0.0.1:6443", { tokenFile: "token" }),
      token: "first\n",
    });
    const kc = loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig");
    const other = forContext(kc, "other", "--workspace other");
    assert.equal(await authorization(kc), "Bearer first");
    assert.equal(await authorization(other), "Bearer first");
    await writeLikeKubelet(dir, {
      kubeconfig: kubeconfig("https://127.0.0.1:6443", { tokenFile: "token" }),
      token: "second\n",
    });
    assert.equal(await authorization(kc), "Bearer second");
    assert.equal(await authorization(other), "Bearer second");
  });

  it("follows an inline token when the kubeconfig itself is replaced", async () => {
    const dir = await tempDir();
    await writeLikeKubelet(dir, { kubeconfig: kubeconfig("https://127.0.0.1:6443", { token: "old" }) });
    const kc = forContext(loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig"), "ctx", "ctx");
    assert.equal(await authorization(kc), "Bearer old");
    await writeLikeKubelet(dir, { kubeconfig: kubeconfig("https://127.0.0.1:6443", { token: "new" }) });
    assert.equal(await authorization(kc), "Bearer new");
    // Switched to a token file: followed from then on.
    await writeLikeKubelet(dir, {
      kubeconfig: kubeconfig("https://127.0.0.1:6443", { tokenFile: "token" }),
      token: "from-file",
    });
    assert.equal(await authorization(kc), "Bearer from-file");
  });

  it("refuses a token file that is missing at start, and keeps the last token while one is unreadable", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "kubeconfig"), kubeconfig("https://127.0.0.1:6443", { tokenFile: "token" }));
    assert.throws(
      () => loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig"),
      (err: Error) =>
        err instanceof ConfigError && err.message.includes('user "u"') && err.message.includes("ENOENT"),
    );
    await writeFile(join(dir, "token"), "kept");
    const kc = loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig");
    assert.equal(await authorization(kc), "Bearer kept");
    await writeFile(join(dir, "token"), ""); // a writer half done
    assert.equal(await authorization(kc), "Bearer kept");
    await rm(join(dir, "token"));
    assert.equal(await authorization(kc), "Bearer kept");
    await writeFile(join(dir, "token"), "back");
    assert.equal(await authorization(kc), "Bearer back");
  });

  it("after a 401, the retry carries the token written since", async () => {
    let valid = "old";
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization ?? "");
      const ok = req.headers.authorization === `Bearer ${valid}`;
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          ok
            ? { kind: "NamespaceList", apiVersion: "v1", metadata: {}, items: [] }
            : { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Unauthorized", code: 401 },
        ),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const dir = await tempDir();
      const files = (token: string) => ({
        kubeconfig: kubeconfig(`http://127.0.0.1:${port}`, { tokenFile: "token" }),
        token,
      });
      await writeLikeKubelet(dir, files("old"));
      const kc = loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig");
      const listNamespaces = () => call(kc, "GET", "/api/v1/namespaces");
      await listNamespaces();
      valid = "new"; // the old token is revoked before its successor is in place
      await assert.rejects(listNamespaces(), { code: 401 });
      await writeLikeKubelet(dir, files("new"));
      await listNamespaces();
      assert.deepEqual(seen, ["Bearer old", "Bearer old", "Bearer new"]);
    } finally {
      server.close();
    }
  });

  it("leaves exec credential plugins to client-node, which runs them again once expired", async () => {
    const dir = await tempDir();
    const counter = join(dir, "runs");
    await writeFile(counter, "0");
    // A plugin that hands out a new, already expired token on every run.
    const plugin = `const fs = require("node:fs"); const n = Number(fs.readFileSync(${JSON.stringify(counter)}, "utf8")) + 1;
fs.writeFileSync(${JSON.stringify(counter)}, String(n));
console.log(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential",
  status: { token: "exec-" + n, expirationTimestamp: new Date(Date.now() - 1000).toISOString() } }));`;
    await writeFile(
      join(dir, "kubeconfig"),
      kubeconfig("https://127.0.0.1:6443", {
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: process.execPath,
          args: ["-e", plugin],
          interactiveMode: "Never",
        },
      }),
    );
    const kc = loadKubeConfig(join(dir, "kubeconfig"), "--kubeconfig");
    assert.equal((kc as PooledKubeConfig).tokens.size, 0, "not followed here");
    assert.equal(await callAuthorization(kc), "Bearer exec-1");
    assert.equal(await callAuthorization(kc), "Bearer exec-2");
  });
});
