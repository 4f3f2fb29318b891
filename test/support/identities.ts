// Identities bound to exactly the Roles shipped in deploy/: the remote one in a fixture's
// namespaces on the public plane, the controller's in its namespace on the private plane.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { KubernetesObject, V1ClusterRole, V1Role } from "@kubernetes/client-node";
import { applyObjects, type Identity, mintIdentity, readYamlObjects } from "../../envtest/cluster.ts";
import type { Fixture } from "./fixture.ts";
import type { TestPlanes } from "./planes.ts";

const deploy = (path: string) => fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url));

export async function shippedIdentities(
  planes: TestPlanes,
  f: Fixture,
): Promise<{ remote: Identity; priv: Identity }> {
  const [remoteRole] = (await readYamlObjects(deploy("public/rbac.yaml"))) as V1ClusterRole[];
  assert.equal(remoteRole?.kind, "ClusterRole");
  await applyObjects(planes.publicAdmin, [remoteRole as KubernetesObject]);
  const remote = await mintIdentity(planes.public, planes.publicAdmin, {
    namespace: f.namespaces[0] as string,
    name: "isc-remote",
    clusterRoleName: remoteRole?.metadata?.name as string,
    bindInNamespaces: f.namespaces,
  });
  const [privateRole] = (await readYamlObjects(deploy("private/rbac.yaml"))) as V1Role[];
  assert.equal(privateRole?.kind, "Role");
  const priv = await mintIdentity(planes.private, planes.privateAdmin, {
    namespace: f.privateNs,
    name: "isc-controller",
    rules: privateRole?.rules,
  });
  return { remote, priv };
}
