// The project's kubeconfig loader: what it applies to a call matches client-node's KubeConfig, what
// it cannot do itself is handed to client-node, no call can hang, bearer tokens follow their files as
// they rotate, and loading it does not load client-node's generated API. (Pools: http.test.ts, watch.test.ts.)
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { KubeConfig as ClientNodeKubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { call } from "../../src/api/http.ts";
import { FollowedFile, tokenText, tokenUsers } from "../../src/config/credentials.ts";
import {
  ConfigError,
  forContext,
  type KubeConfig,
  loadKubeConfig,
  withServer,
} from "../../src/config/kubeconfig.ts";
import { writeLikeKubelet } from "../support/atomic-writer.ts";

/** What a call gets from a kubeconfig: headers, basic auth, TLS material, and whether a proxy agent. */
async function applied(kc: KubeConfig) {
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const { auth, ca, cert, key, rejectUnauthorized, servername, agent } = opts;
  const headers = opts.headers as Record<string, unknown> | undefined;
  return { headers, auth, ca, cert, key, rejectUnauthorized, servername, proxied: agent !== undefined };
}

describe("loadKubeConfig", () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const write = async (doc: unknown, files: Record<string, string> = {}) => {
    const dir = await mkdtemp(join(tmpdir(), "isc-kubeconfig-"));
    dirs.push(dir);
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await writeFile(join(dir, "kubeconfig"), stringify(doc));
    return join(dir, "kubeconfig");
  };
  const b64 = (text: string) => Buffer.from(text).toString("base64");

  it("applies every context as client-node's KubeConfig does", async () => {
    const path = await write(
      {
        clusters: [
          {
            name: "ca-file",
            cluster: { server: "https://a.example:6443/", "certificate-authority": "ca.crt" },
          },
          {
            name: "ca-data",
            cluster: {
              server: "https://b.example",
              "certificate-authority-data": b64("CA"),
              "tls-server-name": "sni",
            },
          },
          { name: "insecure", cluster: { server: "https://c.example", "insecure-skip-tls-verify": true } },
        ],
        users: [
          { name: "token", user: { token: "t0k", as: "someone" } },
          {
            name: "files",
            user: {
              "client-certificate": "tls.crt",
              "client-key": "/abs/ignored-if-data.key",
              "client-key-data": b64("KEY"),
            },
          },
          { name: "data", user: { "client-certificate-data": b64("CERT"), "client-key-data": b64("KEY") } },
          { name: "basic", user: { username: "me", password: "secret" } },
          { name: "none", user: {} },
        ],
        contexts: [
          { name: "a", context: { cluster: "ca-file", user: "token", namespace: "ns" } },
          { name: "b", context: { cluster: "ca-data", user: "data" } },
          { name: "c", context: { cluster: "insecure", user: "basic" } },
          { name: "d", context: { cluster: "ca-file", user: "none" } },
        ],
        "current-context": "a",
      },
      { "ca.crt": "CA FILE", "tls.crt": "CERT FILE" },
    );
    const ours = loadKubeConfig(path, "--kubeconfig");
    const theirs = new ClientNodeKubeConfig();
    theirs.loadFromFile(path);
    assert.deepEqual(ours.getClusters(), theirs.getClusters());
    assert.deepEqual(ours.getUsers(), theirs.getUsers());
    assert.deepEqual(ours.getContexts(), theirs.getContexts());
    assert.equal(ours.getCurrentCluster()?.server, "https://a.example:6443");
    for (const context of ["a", "b", "c", "d"]) {
      theirs.setCurrentContext(context);
      const mine = forContext(ours, context, "test");
      assert.deepEqual(mine.getCurrentUser(), theirs.getCurrentUser(), context);
      assert.deepEqual(await applied(mine), { ...(await applied(theirs)), proxied: false }, context);
    }
    // The same context's credentials, another URL (kcp's virtual workspaces).
    const vw = withServer(ours, "https://a.example:6443/services/apiexport/x");
    assert.equal(vw.getCurrentCluster()?.server, "https://a.example:6443/services/apiexport/x");
    assert.deepEqual(await applied(vw), await applied(ours));
  });

  it("hands auth providers and proxies to client-node, loaded only then", async () => {
    // An unexpired OIDC id-token: client-node's oidc provider sends it as it is.
    const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const idToken = `${part({ alg: "none" })}.${part({ exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`;
    const path = await write({
      clusters: [
        { name: "direct", cluster: { server: "https://a.example" } },
        { name: "proxied", cluster: { server: "https://a.example", "proxy-url": "http://127.0.0.1:3128" } },
      ],
      users: [
        {
          name: "oidc",
          user: {
            "auth-provider": {
              name: "oidc",
              config: { "id-token": idToken, "client-id": "x", "idp-issuer-url": "https://idp.example" },
            },
          },
        },
        { name: "token", user: { token: "t" } },
      ],
      contexts: [
        { name: "oidc", context: { cluster: "direct", user: "oidc" } },
        { name: "proxy", context: { cluster: "proxied", user: "token" } },
      ],
      "current-context": "oidc",
    });
    const kc = loadKubeConfig(path, "--kubeconfig");
    assert.equal((await applied(kc)).headers?.Authorization, `Bearer ${idToken}`);
    const proxy = await applied(forContext(kc, "proxy", "test"));
    assert.equal(proxy.proxied, true, "client-node's proxy agent");
    assert.equal(proxy.headers?.Authorization, "Bearer t");
  });

  it("says which file and entry is wrong", async () => {
    assert.throws(() => loadKubeConfig("/nonexistent/kubeconfig", "--kubeconfig"), {
      message: "--kubeconfig: kubeconfig file /nonexistent/kubeconfig does not exist",
    });
    const bad = await write({ clusters: [{ name: "c", cluster: {} }] });
    assert.throws(
      () => loadKubeConfig(bad, "--kubeconfig"),
      (err: Error) =>
        err instanceof ConfigError &&
        err.message === `--kubeconfig: kubeconfig ${bad}: clusters[0].cluster.server is missing`,
    );
    const noContext = await write({ clusters: [{ name: "c", cluster: { server: "https://a.example" } }] });
    assert.throws(() => loadKubeConfig(noContext, "--kubeconfig"), /has no current cluster/);
    const kc = loadKubeConfig(
      await write({
        clusters: [{ name: "c", cluster: { server: "https://x" } }],
        users: [{ name: "u", user: {} }],
        contexts: [{ name: "ctx", context: { cluster: "c", user: "u" } }],
        "current-context": "ctx",
      }),
      "--kubeconfig",
    );
    assert.throws(() => forContext(kc, "other", "--workspace other"), {
      message: '--workspace other: context "other" is not in the kubeconfig (contexts: ctx)',
    });
  });

  it("reads the pod's service account in a cluster", async () => {
    const env = { ...process.env, KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" };
    const script = `import { loadKubeConfig } from ${JSON.stringify(new URL("../../src/config/kubeconfig.ts", import.meta.url).href)};
const kc = loadKubeConfig(undefined, "in-cluster");
console.log(JSON.stringify({ server: kc.getCurrentCluster().server, ca: kc.getCurrentCluster().caFile, user: kc.getCurrentUser() }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
      env,
    });
    assert.deepEqual(JSON.parse(stdout), {
      server: "https://[fd00::1]:443",
      ca: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
      user: {
        name: "inClusterUser",
        authProvider: {
          name: "tokenFile",
          config: { tokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token" },
        },
      },
    });
  });

  it("leaves client-node's generated API, its KubeConfig and both undicis unloaded in the controller and the CLI", async () => {
    // Every module of the controller and the CLI, as the processes import them: none may pull in those
    // (about 80 MB of RSS between them, docs/performance.md). The first ones loaded name who loaded them.
    const script = `import { registerHooks } from "node:module";
const heavyModules = ["client-node/dist/index.js", "client-node/dist/config.js", "client-node/dist/gen/index.js", "/node_modules/undici/"];
const heavy = [];
registerHooks({ resolve(specifier, context, next) {
  const r = next(specifier, context);
  if (heavyModules.some((m) => r.url.includes(m))) heavy.push(r.url + " from " + context.parentURL);
  return r;
} });
await import(${JSON.stringify(new URL("../../src/cli/controller.ts", import.meta.url).href)});
await import(${JSON.stringify(new URL("../../src/cli/request.ts", import.meta.url).href)});
// Node's own bundled undici (node:http imported as an ES module loads it: api/node-http.ts).
if (process.moduleLoadList.some((m) => m.includes("internal/deps/undici"))) heavy.push("node's internal undici");
console.log(JSON.stringify(heavy.slice(0, 3)));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
    assert.deepEqual(JSON.parse(stdout), []);
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
  /** The token calls (api/http.ts) and watches (api/watch.ts) carry now. */
  const authorization = async (kc: KubeConfig) => {
    return (await applied(kc)).headers?.Authorization;
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

  it("runs exec credential plugins (client-node's runner) again once their credential expired", async () => {
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
    assert.equal(kc.tokens.size, 0, "not followed here");
    assert.equal(await authorization(kc), "Bearer exec-1");
    assert.equal(await authorization(kc), "Bearer exec-2");
  });
});
