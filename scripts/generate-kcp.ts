// Generates deploy/kcp/ (run with `npm run generate`): the objects a kcp provider workspace needs to
// serve InternalRequests to tenant workspaces through an APIExport, made from
// crds/appstudio.redhat.com_internalrequests.yaml:
//  - apiresourceschema.yaml: the CRD's spec as an apis.kcp.io/v1alpha1 APIResourceSchema, named
//    `v<hash>.internalrequests.appstudio.redhat.com`, the hash being of the schema's spec: kcp keeps
//    an APIResourceSchema's spec immutable, so a changed CRD becomes a new schema (and the APIExport
//    switches to it) rather than an update kcp refuses;
//  - apiexport.yaml: the apis.kcp.io/v1alpha2 APIExport with its permission claims (Events, Namespaces,
//    the tenant's LogicalCluster);
//  - rbac.yaml, namespace.yaml, serviceaccount.yaml: the controller's least-privilege identity in the
//    provider workspace (the export's virtual workspace content and its endpoint slices, nothing else);
//  - kustomization.yaml listing them, and apibinding-tenant.yaml: a tenant's APIBinding accepting the
//    claims (not part of the kustomization; applied in each tenant workspace).
// `renderKcpObjects()` is what test/unit/kcp-objects.test.ts compares the files with.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

const REPO = join(import.meta.dirname, "..");
export const KCP_CRD = "crds/appstudio.redhat.com_internalrequests.yaml";
export const KCP_DIR = "deploy/kcp";

/** Names the objects share; the tenant's binding refers to the export by its provider's path and name. */
export const kcpNames = {
  export: "internal-services",
  /** Where docs and the tenant example expect the provider workspace; tenants edit it if it differs. */
  providerPath: "root:internal-services",
  namespace: "internal-services-remote",
  serviceAccount: "internal-service-controller-remote",
  clusterRole: "internal-service-controller-remote",
};

interface PermissionClaim {
  group: string;
  resource: string;
  verbs: string[];
}

/**
 * What the controller needs in tenant workspaces besides InternalRequests, as the APIExport asks for it.
 * Through the virtual workspace only the export's own resources and accepted claims are reachable.
 */
export const permissionClaims: PermissionClaim[] = [
  // Events on requests (the controller only creates them; patch as deploy/public grants).
  { group: "", resource: "events", verbs: ["create", "patch"] },
  // Which namespaces exist and their labels (--workspace-selector).
  { group: "", resource: "namespaces", verbs: ["get", "list", "watch"] },
  // The workspace's LogicalCluster ("cluster"), whose kcp.io/path annotation says which workspace path
  // a logical cluster id (the kcp.io/cluster annotation of every object) stands for.
  { group: "core.kcp.io", resource: "logicalclusters", verbs: ["get", "list", "watch"] },
];

const labels = { "app.kubernetes.io/name": "internal-service-controller" };

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  deprecated?: boolean;
  deprecationWarning?: string;
  schema?: { openAPIV3Schema?: unknown };
  subresources?: unknown;
  additionalPrinterColumns?: unknown[];
}
interface Crd {
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    names: { plural: string; kind: string };
    scope: string;
    versions: CrdVersion[];
    conversion?: { strategy?: string };
  };
}

function readCrd(text: string): Crd {
  const docs = parseAllDocuments(text)
    .map((d) => d.toJS() as Crd | null)
    .filter((d): d is Crd => d !== null);
  if (docs.length !== 1) throw new Error(`${KCP_CRD}: expected one CRD, found ${docs.length} documents`);
  return docs[0] as Crd;
}

function apiResourceSchema(crd: Crd) {
  const { group, names, scope, versions, conversion } = crd.spec;
  if (conversion?.strategy && conversion.strategy !== "None") {
    throw new Error(
      `${crd.metadata.name}: conversion strategy ${conversion.strategy} has no kcp equivalent here`,
    );
  }
  const spec = {
    group,
    names,
    scope,
    versions: versions.map((v) => ({
      name: v.name,
      served: v.served,
      storage: v.storage,
      ...(v.deprecated ? { deprecated: true } : {}),
      ...(v.deprecationWarning ? { deprecationWarning: v.deprecationWarning } : {}),
      schema: v.schema?.openAPIV3Schema ?? { type: "object", "x-kubernetes-preserve-unknown-fields": true },
      ...(v.subresources ? { subresources: v.subresources } : {}),
      ...(v.additionalPrinterColumns ? { additionalPrinterColumns: v.additionalPrinterColumns } : {}),
    })),
  };
  const hash = createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 10);
  return {
    apiVersion: "apis.kcp.io/v1alpha1",
    kind: "APIResourceSchema",
    metadata: { name: `v${hash}.${names.plural}.${group}`, labels: { ...crd.metadata.labels } },
    spec,
  };
}

const header = (lines: string[]) => `${lines.map((l) => `# ${l}`.trimEnd()).join("\n")}\n`;
const generated = `Generated by scripts/generate-kcp.ts from ${KCP_CRD} (npm run generate): do not edit.`;
const doc = (comment: string[], objects: unknown[]) =>
  header(comment) + objects.map((o) => stringify(o, { lineWidth: 0 })).join("---\n");

/** The files of deploy/kcp/, by path relative to the repository, from the CRD's text. */
export function renderKcpObjects(crdText: string): Map<string, string> {
  const crd = readCrd(crdText);
  const schema = apiResourceSchema(crd);
  const { group, names } = crd.spec;
  const n = kcpNames;
  const files = new Map<string, string>();
  const put = (name: string, text: string) => files.set(`${KCP_DIR}/${name}`, text);

  put(
    "apiresourceschema.yaml",
    doc(
      [
        generated,
        "The InternalRequest API as kcp serves it to workspaces that bind the APIExport. kcp never changes",
        "an APIResourceSchema's spec: the name's hash changes with the CRD, and the APIExport follows.",
      ],
      [schema],
    ),
  );
  put(
    "apiexport.yaml",
    doc(
      [
        generated,
        "Offers InternalRequests to tenant workspaces; apply in the provider workspace. kcp then creates an",
        `APIExportEndpointSlice named ${n.export}, whose status lists the virtual workspace URL of each`,
        "shard once a workspace binds the export. The permission claims reach a tenant's Events, Namespaces",
        "and LogicalCluster (its workspace path) through that virtual workspace only when its APIBinding",
        "accepts them.",
      ],
      [
        {
          apiVersion: "apis.kcp.io/v1alpha2",
          kind: "APIExport",
          metadata: { name: n.export, labels },
          spec: {
            resources: [{ name: names.plural, group, schema: schema.metadata.name, storage: { crd: {} } }],
            permissionClaims,
          },
        },
      ],
    ),
  );
  put(
    "namespace.yaml",
    doc(
      [generated, "Holds the controller's ServiceAccount in the provider workspace; nothing runs here."],
      [{ apiVersion: "v1", kind: "Namespace", metadata: { name: n.namespace, labels } }],
    ),
  );
  put(
    "serviceaccount.yaml",
    doc(
      [
        generated,
        "The identity the private-side controller uses towards kcp, through a kubeconfig with a bound token",
        `minted in the provider workspace (kubectl create token -n ${n.namespace} ${n.serviceAccount}).`,
      ],
      [
        {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name: n.serviceAccount, namespace: n.namespace, labels },
        },
      ],
    ),
  );
  put(
    "rbac.yaml",
    doc(
      [
        generated,
        "Least privilege in the provider workspace: the content of this one APIExport's virtual workspace",
        "(InternalRequests of every binding workspace, and the claimed Events, Namespaces, LogicalClusters),",
        "with the verbs the controller uses, and reading the endpoint slice that says where that virtual",
        "workspace is. Nothing in any tenant workspace itself, and nothing else here.",
      ],
      [
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRole",
          metadata: { name: n.clusterRole, labels },
          rules: [
            {
              apiGroups: ["apis.kcp.io"],
              resources: ["apiexports/content"],
              resourceNames: [n.export],
              verbs: ["get", "list", "watch", "create", "update", "patch"],
            },
            {
              apiGroups: ["apis.kcp.io"],
              resources: ["apiexportendpointslices"],
              resourceNames: [n.export],
              verbs: ["get", "list", "watch"],
            },
          ],
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRoleBinding",
          metadata: { name: n.clusterRole, labels },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: n.clusterRole },
          subjects: [{ kind: "ServiceAccount", name: n.serviceAccount, namespace: n.namespace }],
        },
      ],
    ),
  );
  put(
    "kustomization.yaml",
    doc(
      [
        generated,
        "The provider workspace's objects (see docs/kcp.md):",
        `  kubectl kustomize ${KCP_DIR} | kubectl --server <kcp>/clusters/${n.providerPath} apply --server-side -f -`,
        "Tenants apply apibinding-tenant.yaml in their own workspaces; it is not part of this base.",
      ],
      [
        {
          apiVersion: "kustomize.config.k8s.io/v1beta1",
          kind: "Kustomization",
          resources: [
            "apiresourceschema.yaml",
            "apiexport.yaml",
            "namespace.yaml",
            "serviceaccount.yaml",
            "rbac.yaml",
          ],
        },
      ],
    ),
  );
  put(
    "apibinding-tenant.yaml",
    doc(
      [
        generated,
        "TENANT workspace (not part of kustomization.yaml): binds the InternalRequest API and accepts the",
        "export's permission claims, which lets the controller create Events, read Namespaces and read this",
        "workspace's LogicalCluster (to know its path) here. Set spec.reference.export.path to the provider",
        `workspace's path if it is not ${n.providerPath}.`,
        `  kubectl --server <kcp>/clusters/<tenant workspace path> apply -f ${KCP_DIR}/apibinding-tenant.yaml`,
      ],
      [
        {
          apiVersion: "apis.kcp.io/v1alpha2",
          kind: "APIBinding",
          metadata: { name: n.export, labels },
          spec: {
            reference: { export: { path: n.providerPath, name: n.export } },
            permissionClaims: permissionClaims.map((c) => ({
              ...c,
              selector: { matchAll: true },
              state: "Accepted",
            })),
          },
        },
      ],
    ),
  );
  return files;
}

/** The files as generated from the CRD in the repository. */
export function expectedKcpFiles(): Map<string, string> {
  return renderKcpObjects(readFileSync(join(REPO, KCP_CRD), "utf8"));
}

if (import.meta.main) {
  for (const [path, text] of expectedKcpFiles()) writeFileSync(join(REPO, path), text);
  console.log(`generate-kcp: wrote ${KCP_DIR}/ from ${KCP_CRD}`);
}
