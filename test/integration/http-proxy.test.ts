// The public API server reached through an HTTP proxy (a kubeconfig's proxy-url), on the real planes:
// the controller's calls and watches go through the proxy's CONNECT tunnels (HTTP/1.1, one connection
// per watch: a tunnel cannot carry the HTTP/2 sessions used without a proxy), requests are served as
// directly, and when the proxy drops every tunnel the watches and calls come back through it.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { loadKubeConfig } from "../../src/config/kubeconfig.ts";
import type { InternalServiceSpec } from "../../src/generated/crds.ts";
import { ConnectProxy } from "../support/connect-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";

const service: InternalServiceSpec = { pipeline: { pipelineName: "advise" } };

describe("through an HTTP proxy (proxy-url)", { timeout: 120_000 }, () => {
  const planes = testPlanes();
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it("serves requests with every remote call and watch tunnelled, and again after the tunnels drop", async () => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { advise: service },
      startController: false,
    });
    cleanups.push(() => f.stop());
    const proxy = await ConnectProxy.start();
    cleanups.push(() => proxy.stop());

    // The public plane's admin kubeconfig, with the proxy named.
    const dir = await mkdtemp(join(tmpdir(), "isc-proxy-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const doc = parse(await readFile(planes.public.kubeconfigPath, "utf8")) as {
      clusters: { cluster: Record<string, string> }[];
    };
    for (const c of doc.clusters) c.cluster["proxy-url"] = proxy.url;
    const path = join(dir, "kubeconfig");
    await writeFile(path, stringify(doc), { mode: 0o600 });
    const server = new URL(planes.public.server).host;

    const executor = f.tekton.autoComplete();
    cleanups.push(() => executor.stop());
    await f.startController({
      workspaces: [{ name: "public", kubeConfig: loadKubeConfig(path, "test"), namespaces: f.namespaces }],
    });
    // Synced through the proxy: the controller's lists and watches of the namespace went through it.
    assert.ok(
      proxy.tunnels.length >= 2 * f.namespaces.length,
      `one tunnel per watch (requests and CustomRuns per namespace), got ${proxy.tunnels.length}`,
    );
    assert.deepEqual(new Set(proxy.tunnels), new Set([server]), "every tunnel went to the public plane");

    await f.createRequest("first", { service: "advise" });
    const first = await f.waitForReason("first", "Succeeded");
    assert.equal(first.status?.results?.digest, "sha256:0000", "results written back through the proxy");

    // A proxy restart: every tunnel ends. The watches open again, and the calls, through the proxy.
    const before = proxy.tunnels.length;
    proxy.cut();
    await f.createRequest("second", { service: "advise" });
    const second = await f.waitForReason("second", "Succeeded");
    assert.equal(second.status?.results?.digest, "sha256:0000");
    assert.ok(proxy.tunnels.length > before, "new tunnels after the cut");
    assert.deepEqual(new Set(proxy.tunnels), new Set([server]));
  });
});
