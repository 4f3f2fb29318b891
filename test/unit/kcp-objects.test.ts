// deploy/kcp/ is generated from crds/ (scripts/generate-kcp.ts): the files in the repository are what
// the generator makes from today's CRD, and the objects agree with the CRD and with each other.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import {
  expectedKcpFiles,
  KCP_CRD,
  KCP_DIR,
  kcpNames,
  permissionClaims,
  renderKcpObjects,
} from "../../scripts/generate-kcp.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => readFileSync(join(root, path), "utf8");
// biome-ignore lint/suspicious/noExplicitAny: the objects are checked field by field below
type Obj = any;
const objects = (path: string): Obj[] =>
  parseAllDocuments(read(path))
    .map((d) => d.toJS())
    .filter((o) => o !== null);

describe("deploy/kcp", () => {
  const expected = expectedKcpFiles();

  it("is what `npm run generate` makes from crds/ (run it after changing the CRD)", () => {
    const present = readdirSync(join(root, KCP_DIR))
      .map((f) => `${KCP_DIR}/${f}`)
      .sort();
    assert.deepEqual(present, [...expected.keys()].sort(), `${KCP_DIR}/ holds exactly the generated files`);
    for (const [path, text] of expected) {
      assert.equal(read(path), text, `${path} is out of step with ${KCP_CRD}: run npm run generate`);
    }
  });

  it("serves the CRD's versions, schemas, subresources and columns", () => {
    const crd = parse(read(KCP_CRD));
    const [schema] = objects(`${KCP_DIR}/apiresourceschema.yaml`);
    assert.equal(schema.kind, "APIResourceSchema");
    assert.equal(
      schema.metadata.name,
      `${schema.metadata.name.split(".")[0]}.${crd.spec.names.plural}.${crd.spec.group}`,
    );
    assert.deepEqual(
      { group: schema.spec.group, names: schema.spec.names, scope: schema.spec.scope },
      { group: crd.spec.group, names: crd.spec.names, scope: crd.spec.scope },
    );
    assert.equal(schema.spec.versions.length, crd.spec.versions.length);
    for (const [i, v] of crd.spec.versions.entries()) {
      const s = schema.spec.versions[i];
      assert.equal(s.name, v.name);
      assert.equal(s.served, v.served);
      assert.equal(s.storage, v.storage);
      assert.deepEqual(s.schema, v.schema.openAPIV3Schema);
      assert.deepEqual(s.subresources, v.subresources);
      assert.deepEqual(s.additionalPrinterColumns, v.additionalPrinterColumns);
    }
  });

  it("exports that schema, and the tenant's binding accepts exactly the export's claims", () => {
    const [schema] = objects(`${KCP_DIR}/apiresourceschema.yaml`);
    const [exp] = objects(`${KCP_DIR}/apiexport.yaml`);
    const [binding] = objects(`${KCP_DIR}/apibinding-tenant.yaml`);
    assert.equal(exp.metadata.name, kcpNames.export);
    assert.deepEqual(exp.spec.resources, [
      {
        name: "internalrequests",
        group: "appstudio.redhat.com",
        schema: schema.metadata.name,
        storage: { crd: {} },
      },
    ]);
    assert.deepEqual(exp.spec.permissionClaims, permissionClaims);
    assert.deepEqual(binding.spec.reference, {
      export: { path: kcpNames.providerPath, name: kcpNames.export },
    });
    assert.deepEqual(
      binding.spec.permissionClaims.map(({ selector, state, ...claim }: Obj) => {
        assert.deepEqual({ selector, state }, { selector: { matchAll: true }, state: "Accepted" });
        return claim;
      }),
      exp.spec.permissionClaims,
    );
  });

  it("gives the ServiceAccount this export's virtual workspace and endpoint slice, nothing else", () => {
    const [role, binding] = objects(`${KCP_DIR}/rbac.yaml`);
    const [sa] = objects(`${KCP_DIR}/serviceaccount.yaml`);
    assert.deepEqual(
      role.rules.map((r: Obj) => [r.apiGroups, r.resources, r.resourceNames]),
      [
        [["apis.kcp.io"], ["apiexports/content"], [kcpNames.export]],
        [["apis.kcp.io"], ["apiexportendpointslices"], [kcpNames.export]],
      ],
    );
    assert.ok(!role.rules.some((r: Obj) => r.verbs.includes("*") || r.verbs.includes("delete")));
    assert.deepEqual(binding.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: role.metadata.name,
    });
    assert.deepEqual(binding.subjects, [
      { kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace },
    ]);
    const kustomization = parse(read(`${KCP_DIR}/kustomization.yaml`));
    assert.ok(
      !kustomization.resources.includes("apibinding-tenant.yaml"),
      "the tenant's binding is not the provider's",
    );
  });

  it("names a changed schema anew (kcp keeps an APIResourceSchema's spec immutable)", () => {
    const crd = read(KCP_CRD);
    const name = (text: string) =>
      (parse(renderKcpObjects(text).get(`${KCP_DIR}/apiresourceschema.yaml`) as string) as Obj).metadata.name;
    const changed = crd.replace(
      "listKind: InternalRequestList",
      "listKind: InternalRequestList\n    # a comment",
    );
    assert.equal(name(changed), name(crd), "comments and formatting do not rename it");
    const widened = crd.replace("shortNames:\n      - ir", "shortNames:\n      - ir\n      - irq");
    assert.notEqual(widened, crd);
    assert.notEqual(name(widened), name(crd));
  });
});
