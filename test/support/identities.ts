// Identities bound to exactly the Roles shipped in deploy/: the remote one in a fixture's
// namespaces on the public plane (and the heartbeat Roles in a namespace of their own there, standing
// in for internal-services-remote), the controller's in its namespace on the private plane.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { KubernetesObject, V1ClusterRole, V1Role } from "@kubernetes/client-node";
import {
  applyObjects,
  createNamespace,
  type Identity,
  mintIdentity,
  readYamlObjects,
  uniqueName,
} from "../../envtest/cluster.ts";
import type { Fixture } from "./fixture.ts";
import type { TestPlanes } from "./planes.ts";

const deploy = (path: string) => fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url));

export async function shippedIdentities(
  planes: TestPlanes,
  f: Fixture,
): Promise<{ remote: Identity; priv: Identity; heartbeatNamespace: string }> {
  const [remoteRole] = (await readYamlObjects(deploy("public/rbac.yaml"))) as V1ClusterRole[];
  assert.equal(remoteRole?.kind, "ClusterRole");
  await applyObjects(planes.publicAdmin, [remoteRole as KubernetesObject]);
  const remote = await mintIdentity(planes.public, planes.publicAdmin, {
    namespace: f.namespaces[0] as string,
    name: "isc-remote",
    clusterRoleName: remoteRole?.metadata?.name as string,
    bindInNamespaces: f.namespaces,
  });
  // deploy/public/heartbeat.yaml as shipped, moved to a namespace of this test's and bound to `remote`.
  const heartbeatNamespace = await createNamespace(planes.publicAdmin, uniqueName("heartbeat"));
  const heartbeat = (await readYamlObjects(deploy("public/heartbeat.yaml"))) as (KubernetesObject & {
    subjects?: { kind: string; name: string; namespace?: string }[];
  })[];
  assert.deepEqual(
    heartbeat.map((o) => o.kind),
    ["Role", "RoleBinding", "Role", "RoleBinding"],
  );
  const [remoteName, remoteNs] = [remote.user.split(":")[3], remote.user.split(":")[2]];
  await applyObjects(
    planes.publicAdmin,
    heartbeat.map((o) => ({
      ...o,
      metadata: { ...o.metadata, namespace: heartbeatNamespace },
      ...(o.subjects?.[0]?.kind === "ServiceAccount"
        ? { subjects: [{ kind: "ServiceAccount", name: remoteName, namespace: remoteNs }] }
        : {}),
    })),
  );
  const [privateRole] = (await readYamlObjects(deploy("private/rbac.yaml"))) as V1Role[];
  assert.equal(privateRole?.kind, "Role");
  const priv = await mintIdentity(planes.private, planes.privateAdmin, {
    namespace: f.privateNs,
    name: "isc-controller",
    rules: privateRole?.rules,
  });
  return { remote, priv, heartbeatNamespace };
}
