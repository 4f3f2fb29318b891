// /metrics as the private cluster sees it: plain metrics only on loopback, secure metrics over HTTPS
// where every scrape's token is reviewed by the real API server (TokenReview, SubjectAccessReview),
// with the controller holding exactly the shipped roles.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type KubernetesObject, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { applyObjects, mintIdentity, readYamlObjects } from "../../envtest/cluster.ts";
import { freePort } from "../../envtest/controlplane.ts";
import { newCertificateAuthority, newServingCertificate } from "../../envtest/pki.ts";
import { eventually } from "../../envtest/wait.ts";
import { Fixture } from "../support/fixture.ts";
import { shippedIdentities } from "../support/identities.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const metricsAuth = fileURLToPath(new URL("../../deploy/private/metrics-auth.yaml", import.meta.url));

describe("metrics", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  after(() => Promise.all(fixtures.map((f) => f.stop())));

  it("plain on loopback; over HTTPS only for a token the API server authenticates and RBAC allows", async () => {
    const f = await Fixture.create({ startController: false, config: (ns) => ({ allowList: ns }) });
    fixtures.push(f);
    const { remote } = await shippedIdentities(planes, f);
    await applyObjects(planes.privateAdmin, (await readYamlObjects(metricsAuth)) as KubernetesObject[]);
    // The controller: the shipped Role in its namespace (above), plus the reviews role.
    const controllerIdentity = await mintIdentity(planes.private, planes.privateAdmin, {
      namespace: f.privateNs,
      name: "isc-controller",
      clusterRoleName: "internal-service-controller-metrics-auth",
    });
    const scraper = await mintIdentity(planes.private, planes.privateAdmin, {
      namespace: f.privateNs,
      name: "prometheus",
      clusterRoleName: "internal-service-controller-metrics-reader",
    });
    const stranger = await mintIdentity(planes.private, planes.privateAdmin, {
      namespace: f.privateNs,
      name: "stranger",
      rules: [],
    });
    const ca = await newCertificateAuthority("metrics-ca");
    const serving = await newServingCertificate(ca);
    const certDir = await mkdtemp(join(tmpdir(), "isc-metrics-cert-"));
    await writeFile(join(certDir, "tls.crt"), serving.certPem);
    await writeFile(join(certDir, "tls.key"), serving.keyPem);

    const securePort = await freePort();
    const controller = await ControllerProcess.start({
      remoteKubeconfig: remote.kubeconfigPath,
      workspaces: [`public=${f.namespaces[0]}`],
      privateKubeconfig: controllerIdentity.kubeconfigPath,
      namespace: f.privateNs,
      extraArgs: [`--metrics-secure-address=127.0.0.1:${securePort}`, `--metrics-cert-dir=${certDir}`],
    });
    after(() => controller.kill());
    await controller.waitForReady();

    const scrape = (token?: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = request(
          {
            host: "127.0.0.1",
            port: securePort,
            path: "/metrics",
            ca: ca.certPem,
            headers: token ? { authorization: `Bearer ${token}` } : {},
          },
          (res) => {
            let text = "";
            res.on("data", (b: Buffer) => {
              text += b.toString();
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on("error", reject);
        req.end();
      });
    const token = (id: { kubeConfig: { getCurrentUser(): { token?: string } | null } }) =>
      id.kubeConfig.getCurrentUser()?.token as string;

    const matrix = {
      "no token": await scrape(),
      "a made-up token": await scrape("not-a-token"),
      "a ServiceAccount without the reader role": await scrape(token(stranger)),
      "the scraper (metrics-reader role)": await scrape(token(scraper)),
    };
    console.log(
      Object.entries(matrix)
        .map(([who, r]) => `${who}: ${r.status}`)
        .join("\n"),
    );
    assert.equal(matrix["no token"].status, 401);
    assert.equal(matrix["a made-up token"].status, 401);
    assert.equal(matrix["a ServiceAccount without the reader role"].status, 403);
    assert.equal(matrix["the scraper (metrics-reader role)"].status, 200);
    assert.match(
      matrix["the scraper (metrics-reader role)"].text,
      /^leader_election_master_status\{.*\} 1$/m,
    );
    for (const refused of Object.values(matrix).slice(0, 3))
      assert.doesNotMatch(refused.text, /controller_runtime/);

    // A decision is kept 10 s per token, then asked again: a revoked binding ends access by then.
    await planes.privateAdmin
      .makeApiClient(RbacAuthorizationV1Api)
      .deleteClusterRoleBinding({ name: `${f.privateNs}-prometheus` });
    assert.equal((await scrape(token(scraper))).status, 200, "still the cached decision");
    const revokedAt = Date.now();
    await eventually(async () => (await scrape(token(scraper))).status === 403, "access ends", 20_000);
    console.log(`revoked binding refused after ${Date.now() - revokedAt} ms`);

    // The probes' port says ok and nothing else; plain metrics are not on it.
    assert.deepEqual(await controller.get("/healthz"), { status: 200, text: "ok" });
    assert.equal((await controller.get("/metrics")).status, 404);
    // Plain metrics answer on loopback (where the test put them; loopback is also the default).
    assert.equal((await controller.get("/metrics", controller.metricsPort)).status, 200);
  });
});
