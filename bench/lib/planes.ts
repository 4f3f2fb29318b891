// The benchmark's control planes: the test harness's public and private kube-apiservers (one etcd), with
// audit logging on, the project's and Tekton's CRDs, and a separate identity for the controller (a
// cluster-admin ServiceAccount token on each plane) so its writes can be told apart from the bench's.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { adminKubeConfig, createNamespace, mintIdentity } from "../../envtest/cluster.ts";
import { type ControlPlanes, type PlaneName, startControlPlanes } from "../../envtest/controlplane.ts";
import { installCrds } from "../../envtest/lifecycle.ts";
import { AuditLog, auditArgs, auditPolicyYaml } from "./audit.ts";
import { RawClient } from "./http.ts";

export const benchUser = "isc-admin"; // the harness's admin client certificate
const identityNamespace = "isc-bench";
const identityName = "isc-controller";

export interface BenchPlanes {
  planes: ControlPlanes;
  audit: AuditLog;
  /** Each kube-apiserver's log, with its audit events. */
  auditFiles: Record<PlaneName, string>;
  publicAdmin: KubeConfig;
  privateAdmin: KubeConfig;
  raw: { public: RawClient; private: RawClient };
  /** Kubeconfigs the controller runs with (contexts "public" and "private"). */
  controllerKubeconfig: { public: string; private: string };
  controllerUser: string;
  stop(): Promise<void>;
}

export async function startBenchPlanes(log: (msg: string) => void): Promise<BenchPlanes> {
  const policyDir = await mkdtemp(join(tmpdir(), "isc-bench-audit-"));
  const policyFile = join(policyDir, "audit-policy.yaml");
  await writeFile(policyFile, auditPolicyYaml);
  const started = performance.now();
  // The hostile scenario stores gigabytes of large objects (and their older revisions until compaction):
  // more than etcd's default 2 GiB quota.
  const planes = await startControlPlanes({
    apiserverArgs: auditArgs(policyFile),
    etcdArgs: [`--quota-backend-bytes=${16 * 1024 ** 3}`],
  });
  const stop = async () => {
    await planes.stop();
    await rm(policyDir, { recursive: true, force: true });
  };
  try {
    log(`control planes ready in ${((performance.now() - started) / 1000).toFixed(1)}s`);
    await installCrds({ public: planes.public, private: planes.private });
    const publicAdmin = adminKubeConfig(planes.public);
    const privateAdmin = adminKubeConfig(planes.private);
    const [pub, priv] = await Promise.all(
      [
        [planes.public, publicAdmin],
        [planes.private, privateAdmin],
      ].map(async ([plane, kc]) => {
        const p = plane as ControlPlanes["public"];
        await createNamespace(kc as KubeConfig, identityNamespace);
        return mintIdentity(p, kc as KubeConfig, {
          namespace: identityNamespace,
          name: identityName,
          clusterRoleName: "cluster-admin",
        });
      }),
    );
    if (!pub || !priv) throw new Error("could not mint the controller's identities");
    log("CRDs installed; controller identity minted on both planes");
    const auditFiles = {
      public: join(planes.dir, "public", "kube-apiserver.log"),
      private: join(planes.dir, "private", "kube-apiserver.log"),
    };
    const audit = new AuditLog(auditFiles, pub.user, benchUser);
    const raw = { public: new RawClient(planes.public), private: new RawClient(planes.private) };
    return {
      planes,
      audit,
      auditFiles,
      publicAdmin,
      privateAdmin,
      raw,
      controllerKubeconfig: { public: pub.kubeconfigPath, private: priv.kubeconfigPath },
      controllerUser: pub.user,
      stop: async () => {
        raw.public.close();
        raw.private.close();
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
