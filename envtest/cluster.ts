// Helpers tests use on a running plane: install CRDs, create namespaces, mint restricted identities.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1PolicyRule,
  Watch,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { kubeconfigYaml, type Plane } from "./controlplane.ts";

export const tektonVersion = "v1.15.0";
const fieldManager = "isc-test-harness";
const repoRoot = fileURLToPath(new URL("../", import.meta.url));

export function adminKubeConfig(plane: Plane): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  return kc;
}

/** A DNS-1123 name unique to this run: tests share planes, so each uses its own namespaces. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

export async function readYamlObjects(file: string): Promise<KubernetesObject[]> {
  const docs = parseAllDocuments(await readFile(file, "utf8"));
  return docs
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);
}

/** Server-side applies objects (idempotent, so test files sharing a plane may all call it). */
export async function applyObjects(kc: KubeConfig, objects: KubernetesObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  for (const obj of objects) {
    await client.patch(obj, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
  }
}

/**
 * Applies CRDs and waits until the API server serves them (condition Established). Not through
 * KubernetesObjectApi: client-node's typed serializer drops schema keys whose wire names differ from
 * its property names (x-kubernetes-validations, x-kubernetes-preserve-unknown-fields, ...).
 */
export async function applyCrds(kc: KubeConfig, crds: V1CustomResourceDefinition[]): Promise<void> {
  const raw = kc.makeApiClient(CustomObjectsApi);
  const apply = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
  for (const crd of crds) {
    await raw.patchClusterCustomObject(
      {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        name: crd.metadata?.name as string,
        body: crd,
        fieldManager,
        force: true,
      },
      apply,
    );
  }
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + 30_000;
  for (const crd of crds) {
    const name = crd.metadata?.name as string;
    while (!(await api.readCustomResourceDefinition({ name })).status?.conditions?.some(isEstablished)) {
      if (Date.now() > deadline) throw new Error(`CRD ${name} not established within 30s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // A new resource answers watches with 429 until its watch cache is initialized.
    const version = crd.spec.versions.find((v) => v.storage)?.name as string;
    const path = `/apis/${crd.spec.group}/${version}/${crd.spec.names.plural}`;
    while (!(await canWatch(kc, path))) {
      if (Date.now() > deadline) throw new Error(`CRD ${name} not watchable within 30s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const isEstablished = (c: { type: string; status: string }) =>
  c.type === "Established" && c.status === "True";

async function canWatch(kc: KubeConfig, path: string): Promise<boolean> {
  try {
    const req = await new Watch(kc).watch(
      path,
      { timeoutSeconds: 1 },
      () => {},
      () => {},
    );
    req.abort();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 429) return false;
    throw err;
  }
}

/** This project's CRDs, from crds/. */
export async function projectCrds(): Promise<V1CustomResourceDefinition[]> {
  const dir = join(repoRoot, "crds");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml")).sort();
  const objects = (await Promise.all(files.map((f) => readYamlObjects(join(dir, f))))).flat();
  return objects as V1CustomResourceDefinition[];
}

/**
 * Tekton's CRDs, read from the github.com/tektoncd/pipeline Go module (config/300-crds) in the module
 * cache. No conversion webhook runs here, so conversion is set to None: clients must use the storage
 * version of multi-version kinds (v1 for Pipeline, PipelineRun, Task, TaskRun).
 */
export async function tektonCrds(): Promise<V1CustomResourceDefinition[]> {
  const dir = join(await goModuleDir(`github.com/tektoncd/pipeline@${tektonVersion}`), "config", "300-crds");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml")).sort();
  const objects = (await Promise.all(files.map((f) => readYamlObjects(join(dir, f))))).flat();
  return (objects as V1CustomResourceDefinition[]).map((crd) => ({
    ...crd,
    spec: { ...crd.spec, conversion: { strategy: "None" } },
  }));
}

export async function goModuleDir(moduleAtVersion: string): Promise<string> {
  const { stdout } = await promisify(execFile)("go", ["mod", "download", "-json", moduleAtVersion], {
    cwd: repoRoot,
    env: { ...process.env, GOFLAGS: "-mod=mod", GO111MODULE: "on" },
  });
  const dir = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download ${moduleAtVersion} gave no directory:\n${stdout}`);
  return dir;
}

export async function createNamespace(kc: KubeConfig, name: string, labels: Record<string, string> = {}) {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

export interface IdentityRequest {
  /** Namespace of the ServiceAccount (created if missing). */
  namespace: string;
  name: string;
  /** Rules for a new Role in `namespace`, or a new ClusterRole when `clusterWide`. */
  rules?: V1PolicyRule[];
  clusterWide?: boolean;
  /** Bind an existing ClusterRole (e.g. one shipped in deploy/) instead of creating one. */
  clusterRoleName?: string;
  /** With clusterRoleName: bind it only in these namespaces (RoleBindings) rather than cluster-wide. */
  bindInNamespaces?: string[];
}

export interface Identity {
  user: string;
  kubeConfig: KubeConfig;
  kubeconfigPath: string;
}

/**
 * A ServiceAccount with only the given permissions, and a kubeconfig that authenticates as it with a
 * TokenRequest token: the same shape a remote identity has in production.
 */
export async function mintIdentity(plane: Plane, kc: KubeConfig, req: IdentityRequest): Promise<Identity> {
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const subject = { kind: "ServiceAccount", name: req.name, namespace: req.namespace };
  await core
    .createNamespacedServiceAccount({ namespace: req.namespace, body: { metadata: { name: req.name } } })
    .catch(ignoreConflict);

  const bindingName = `${req.namespace}-${req.name}`;
  if (req.clusterRoleName) {
    const roleRef = { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: req.clusterRoleName };
    if (req.bindInNamespaces) {
      for (const ns of req.bindInNamespaces) {
        await rbac.createNamespacedRoleBinding({
          namespace: ns,
          body: { metadata: { name: bindingName }, roleRef, subjects: [subject] },
        });
      }
    } else {
      await rbac.createClusterRoleBinding({
        body: { metadata: { name: bindingName }, roleRef, subjects: [subject] },
      });
    }
  } else if (req.clusterWide) {
    await rbac.createClusterRole({ body: { metadata: { name: bindingName }, rules: req.rules ?? [] } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: bindingName },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: bindingName },
        subjects: [subject],
      },
    });
  } else {
    await rbac.createNamespacedRole({
      namespace: req.namespace,
      body: { metadata: { name: req.name }, rules: req.rules ?? [] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: req.namespace,
      body: {
        metadata: { name: req.name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: req.name },
        subjects: [subject],
      },
    });
  }

  const tokenRequest = await core.createNamespacedServiceAccountToken({
    name: req.name,
    namespace: req.namespace,
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  const token = tokenRequest.status?.token;
  if (!token) throw new Error(`TokenRequest for ${req.namespace}/${req.name} returned no token`);
  const yaml = kubeconfigYaml(plane.name, plane.server, plane.caPem, { token }, req.namespace);
  const kubeconfigPath = join(plane.kubeconfigPath, "..", `${bindingName}.kubeconfig`);
  await writeFile(kubeconfigPath, yaml, { mode: 0o600 });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(yaml);
  return { user: `system:serviceaccount:${req.namespace}:${req.name}`, kubeConfig, kubeconfigPath };
}

function ignoreConflict(err: unknown): void {
  if ((err as { code?: number }).code !== 409) throw err;
}
