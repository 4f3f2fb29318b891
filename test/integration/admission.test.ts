// The ValidatingAdmissionPolicies of deploy/admission/, on the real planes: the kustomizations are
// rendered with kubectl and applied as an operator would (through overlays that only set the namespace:
// the controller's, and each run namespace's), then every write the policies forbid is attempted for
// real as the controller's own identities and refused by the API server with the policy's message,
// every write the controller makes still succeeds, and the controller itself (the real CLI process) is
// told to make forbidden writes (a ServiceAccount its namespace does not list, a run namespace without
// the policies' ConfigMap, the Go controller's run with the switch off, a non-InternalRequest
// CustomRun's status) and is refused, while its other requests and a CustomRun run to the end. Each
// row also carries a SubjectAccessReview of the same identity, verb and resource (what RBAC alone
// allows), checked against the real write. The measured matrix is printed and must equal the one in
// docs/policy-and-security.md.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1ClusterRole,
  type V1PolicyRule,
  type V1ResourceAttributes,
  type V1Role,
  type V1RoleBinding,
  type V1UserInfo,
} from "@kubernetes/client-node";
import { parse, parseAllDocuments, stringify } from "yaml";
import { ensureTools } from "../../envtest/binaries.ts";
import {
  applyObjects,
  createNamespace,
  type Identity,
  mintIdentity,
  readYamlObjects,
  uniqueName,
} from "../../envtest/cluster.ts";
import type { Plane } from "../../envtest/controlplane.ts";
import { runCommand } from "../../envtest/run-command.ts";
import { eventually } from "../../envtest/wait.ts";
import { apiStatus } from "../../src/api/errors.ts";
import { customRuns, pipelineRuns, ResourceClient, type ResourceType } from "../../src/api/resources.ts";
import type { InternalRequest, InternalRequestStatus } from "../../src/generated/crds.ts";
import type { V1beta1CustomRun, V1PipelineRun } from "../../src/generated/tekton.ts";
import {
  legacyFinalizer,
  managedByLabel,
  managedByValue,
  requestNameLabel,
  requestNamespaceLabel,
} from "../../src/requests/naming.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";
import { FakeTekton } from "../support/tekton.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const controllerSa = "internal-service-controller";
const remoteSa = "internal-service-controller-remote";
const paramsName = "internal-service-controller-admission";
const policy = {
  runs: "internal-service-controller-pipelineruns",
  serviceAccounts: "internal-service-controller-pipelinerun-serviceaccounts",
  goRuns: "internal-service-controller-go-controller-runs",
  remote: "internal-service-controller-remote-customruns",
} as const;
type PolicyName = (typeof policy)[keyof typeof policy];
/** The HTTP code each policy refuses with: its validations' reason (none: Invalid, 422). */
const policyCode: Record<PolicyName, number> = {
  [policy.runs]: 403,
  [policy.serviceAccounts]: 422,
  [policy.goRuns]: 403,
  [policy.remote]: 403,
};
const managed = { [managedByLabel]: managedByValue };
const irRef = { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "InternalRequest" };
const goLabels = (request: string, namespace: string) => ({
  [requestNameLabel]: request,
  [requestNamespaceLabel]: namespace,
});

const parseObjects = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);

type Binding = KubernetesObject & {
  spec: {
    paramRef?: { name?: string; namespace?: string; parameterNotFoundAction?: string };
    matchResources?: Record<string, unknown>;
  };
};

/** A write as the API server answered it: done, or refused by whom (a policy's name, or RBAC). */
type Outcome = { allowed: true } | { allowed: false; code: number; by: string; message: string };

async function attempt(call: () => Promise<unknown>): Promise<Outcome> {
  try {
    await call();
    return { allowed: true };
  } catch (err) {
    const status = apiStatus(err);
    if (!status) throw err;
    const vap =
      /ValidatingAdmissionPolicy '([^']+)'(?: with binding '[^']+')? denied request: ([\s\S]*)$/.exec(
        status.message,
      );
    if (vap) return { allowed: false, code: status.code, by: vap[1] as string, message: vap[2] as string };
    if (status.code === 403 && /cannot/.test(status.message))
      return { allowed: false, code: 403, by: "RBAC", message: status.message };
    throw err;
  }
}

const pipelineRun = (name: string, labels: Record<string, string>, spec: Record<string, unknown> = {}) =>
  ({
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name, labels },
    spec: { pipelineRef: { name: "sign" }, ...spec },
  }) as V1PipelineRun;
const runAs = (serviceAccountName: string) => ({ taskRunTemplate: { serviceAccountName } });

const customRun = (name: string, spec: Record<string, unknown>) =>
  ({
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: { name },
    spec,
  }) as V1beta1CustomRun;

const running = { conditions: [{ type: "Succeeded", status: "Unknown", reason: "Running", message: "" }] };

/** Who a row is about: its name in the matrix, the plane, and the kubeconfig its writes go through. */
interface Actor {
  label: string;
  plane: "private" | "public";
  kc: KubeConfig;
}

describe("admission policies (deploy/admission)", () => {
  const planes = testPlanes();
  const fixtures: Fixture[] = [];
  const started = Date.now();
  let kubectlPath: string;
  let dir: string;
  let f: Fixture; // the matrix
  let e2e: Fixture; // the controller end to end
  // Private namespaces besides the fixtures': run namespaces (the run Role and their own ConfigMap), a
  // run namespace without the ConfigMap, and one with neither.
  const runNs = uniqueName("isc-runs");
  const e2eRunNs = uniqueName("isc-e2e-runs");
  const e2eBareNs = uniqueName("isc-e2e-bare");
  const otherNs = uniqueName("isc-elsewhere");
  let privateObjects: KubernetesObject[];
  let runNamespaceObjects: KubernetesObject[];
  let publicObjects: KubernetesObject[];
  let controller: Identity;
  let lookalike: Identity;
  let remote: Identity;
  let privateRole: V1Role;
  let remoteRole: V1ClusterRole;
  /** The measured matrix, one markdown row per attempted write. */
  const matrix: string[] = [];
  const timings: string[] = [];
  const lap = (what: string, since: number) =>
    timings.push(`${what}: ${((Date.now() - since) / 1000).toFixed(1)}s`);

  const kubectl = async (plane: Plane | undefined, args: string[], stdin?: string) => {
    const res = await runCommand(
      kubectlPath,
      plane ? [`--kubeconfig=${plane.kubeconfigPath}`, ...args] : args,
      { env: { ...process.env, HOME: dir, NO_COLOR: "1" }, stdin, timeoutMs: 120_000 },
    );
    assert.equal(res.code, 0, `kubectl ${args.join(" ")} failed:\n${res.stderr}${res.stdout}`);
    return res.stdout;
  };
  const apply = (plane: Plane, objects: KubernetesObject[]) =>
    kubectl(
      plane,
      ["apply", "--server-side", "--field-manager=isc-admission-test", "-f", "-"],
      objects.map((o) => stringify(o)).join("---\n"),
    );

  /** A base of deploy/admission/ installed into `namespace` the way an operator would: an overlay. */
  const render = async (base: "private" | "run-namespace", namespace: string) => {
    const overlay = await mkdtemp(join(dir, "overlay-"));
    await writeFile(
      join(overlay, "kustomization.yaml"),
      stringify({
        apiVersion: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        namespace,
        resources: [relative(overlay, join(repoRoot, "deploy/admission", base))],
      }),
    );
    return parseObjects(await kubectl(undefined, ["kustomize", overlay]));
  };
  /** The namespace a shipped kustomization sets. */
  const shippedNamespace = async (path: string) =>
    (parse(await readFile(join(repoRoot, path, "kustomization.yaml"), "utf8")) as { namespace: string })
      .namespace;

  /**
   * The planes are shared with the other test files, running concurrently: each binding is confined
   * to this file's namespaces (as shipped they cover the whole cluster). Nothing else is changed.
   */
  const confine = (objects: KubernetesObject[], namespaces: Record<string, string[]>) =>
    objects.map((o) => {
      if (o.kind !== "ValidatingAdmissionPolicyBinding") return o;
      const b = structuredClone(o) as Binding;
      const values = namespaces[b.metadata?.name as string];
      assert.ok(values, `namespaces for binding ${b.metadata?.name}`);
      b.spec.matchResources = {
        ...b.spec.matchResources,
        namespaceSelector: {
          matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values }],
        },
      };
      return b;
    });

  const mintController = (namespace: string, name = controllerSa) =>
    mintIdentity(planes.private, planes.privateAdmin, { namespace, name, rules: privateRole.rules });
  const mintRemote = (namespace: string) =>
    mintIdentity(planes.public, planes.publicAdmin, {
      namespace,
      name: remoteSa,
      clusterRoleName: remoteRole.metadata?.name as string,
      bindInNamespaces: [namespace],
    });
  /** deploy/private/run-namespace's Role in `namespace`, bound (as shipped) to the controller's
   *  ServiceAccount, here the one in `controllerNs`; waits until RBAC has it. */
  const bindRunRole = async (namespace: string, sa: Identity, controllerNs: string) => {
    const objects = (await readYamlObjects(join(repoRoot, "deploy/private/run-namespace/role.yaml"))).map(
      (o) => {
        const copy = structuredClone(o);
        copy.metadata = { ...copy.metadata, namespace };
        if (copy.kind === "RoleBinding") {
          const subjects = (copy as V1RoleBinding).subjects ?? [];
          assert.deepEqual(
            subjects.map((s) => s.name),
            [controllerSa],
          );
          (copy as V1RoleBinding).subjects = subjects.map((s) => ({ ...s, namespace: controllerNs }));
        }
        return copy;
      },
    );
    await applyObjects(planes.privateAdmin, objects);
    await untilAllowed(sa, { namespace, group: "tekton.dev", resource: "pipelineruns", verb: "create" });
  };
  /** The authorizer reads RBAC through an informer: until `sa` may do `what`. */
  const untilAllowed = (sa: Identity, what: V1ResourceAttributes) =>
    eventually(
      async () =>
        (
          await sa.kubeConfig
            .makeApiClient(AuthorizationV1Api)
            .createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: what } } })
        ).status?.allowed || undefined,
      `RBAC in effect for ${sa.user}: ${JSON.stringify(what)}`,
    );

  const runsAs = (kc: KubeConfig, type: ResourceType = pipelineRuns) =>
    new ResourceClient<V1PipelineRun>(kc, type, "admission-test");
  const v1beta1Runs: ResourceType = { ...pipelineRuns, version: "v1beta1" };
  const customRunsAs = (kc: KubeConfig) =>
    new ResourceClient<V1beta1CustomRun>(kc, customRuns, "admission-test");
  /** PUT of the whole object, as `kubectl replace` does (the controller itself only patches). */
  const replace = async (
    kc: KubeConfig,
    namespace: string,
    name: string,
    edit: (r: V1PipelineRun) => void,
  ) => {
    const admin = runsAs(planes.privateAdmin);
    const current = await admin.get(namespace, name);
    edit(current);
    await kc.makeApiClient(CustomObjectsApi).replaceNamespacedCustomObject({
      group: pipelineRuns.group,
      version: pipelineRuns.version,
      plural: pipelineRuns.plural,
      namespace,
      name,
      body: current,
    });
  };

  const setParams = async (namespace: string, data: Record<string, string>) => {
    await planes.privateAdmin
      .makeApiClient(CoreV1Api)
      .patchNamespacedConfigMap(
        { name: paramsName, namespace, body: { data } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
  };

  /** Widens a ServiceAccount's RBAC beyond the shipped Role (a mistake, or a Role someone else edits). */
  const grant = async (
    plane: "private" | "public",
    namespace: string,
    sa: Identity,
    rules: V1PolicyRule[],
    until: V1ResourceAttributes,
  ) => {
    const kc = plane === "private" ? planes.privateAdmin : planes.publicAdmin;
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const name = uniqueName("admission-widened");
    const [, , saNs, saName] = sa.user.split(":");
    await rbac.createNamespacedRole({ namespace, body: { metadata: { name }, rules } });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
        subjects: [{ kind: "ServiceAccount", name: saName as string, namespace: saNs as string }],
      },
    });
    await untilAllowed(sa, { namespace, ...until });
  };

  /** Dry runs (nothing is written) of the controller's writes, to wait for a change to take effect. */
  const dryRun = (kc: KubeConfig) => {
    const api = kc.makeApiClient(CustomObjectsApi);
    const base = { group: pipelineRuns.group, version: pipelineRuns.version, plural: pipelineRuns.plural };
    return {
      create: (namespace: string, body: V1PipelineRun) =>
        api.createNamespacedCustomObject({ ...base, namespace, body, dryRun: "All" }),
      patch: (namespace: string, name: string, body: unknown) =>
        api.patchNamespacedCustomObject(
          { ...base, namespace, name, body, dryRun: "All" },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
      delete: (namespace: string, name: string) =>
        api.deleteNamespacedCustomObject({ ...base, namespace, name, dryRun: "All" }),
    };
  };
  /** Until `call` (a dry run) is refused by `by` (or, with by undefined, allowed). */
  const untilOutcome = (
    call: () => Promise<unknown>,
    by: string | undefined,
    what: string,
    message?: RegExp,
  ) =>
    eventually(async () => {
      const got = await attempt(call);
      if (by === undefined) return got.allowed || undefined;
      return (!got.allowed && got.by === by && (!message || message.test(got.message))) || undefined;
    }, what);

  /** Who the API server takes a kubeconfig's caller for (SelfSubjectReview), asked once per kubeconfig. */
  const userInfos = new Map<KubeConfig, Promise<V1UserInfo>>();
  const whoAmI = (kc: KubeConfig) => {
    let info = userInfos.get(kc);
    if (!info) {
      info = kc
        .makeApiClient(AuthenticationV1Api)
        .createSelfSubjectReview({ body: {} })
        .then((r) => r.status?.userInfo ?? {});
      userInfos.set(kc, info);
    }
    return info;
  };
  /** What RBAC alone allows that caller: a SubjectAccessReview, asked by the plane's admin. */
  const accessReview = async (as: Actor, namespace: string, verb: string, resource: string) => {
    const u = await whoAmI(as.kc);
    const [plural, subresource] = resource.split("/");
    const admin = as.plane === "private" ? planes.privateAdmin : planes.publicAdmin;
    const review = await admin.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
      body: {
        spec: {
          user: u.username,
          groups: u.groups,
          uid: u.uid,
          extra: u.extra,
          resourceAttributes: {
            namespace,
            verb,
            group: plural === "configmaps" ? "" : "tekton.dev",
            resource: plural,
            subresource,
          },
        },
      },
    });
    return review.status?.allowed === true;
  };

  interface Row {
    as: Actor;
    namespace: string;
    /** The namespace as the matrix names it. */
    where: string;
    verb: "create" | "patch" | "update" | "delete";
    resource: string;
    what: string;
  }
  interface Case extends Row {
    /** "allowed", "RBAC", or the policy that refuses it. */
    expect: "allowed" | "RBAC" | PolicyName;
    message?: RegExp;
    call: () => Promise<unknown>;
  }
  const push = (r: Row, rbac: boolean, result: string) =>
    matrix.push(
      `| ${r.as.plane} | ${r.as.label} | ${r.where} | ${r.verb} | ${r.resource} | ${r.what} | ${rbac ? "allowed" : "denied"} | ${result} |`,
    );
  /** A row for a write the controller itself made (end to end), once its outcome is asserted. */
  const record = async (r: Row, result: string) => {
    const rbac = await accessReview(r.as, r.namespace, r.verb, r.resource);
    assert.ok(rbac, `${r.as.label} ${r.verb} ${r.resource} in ${r.namespace}: RBAC allows what it did`);
    push(r, rbac, result);
  };
  /** Reviews the access, attempts the write for real, records the row, checks outcome and message. */
  const check = async (c: Case) => {
    const rbac = await accessReview(c.as, c.namespace, c.verb, c.resource);
    const got = await attempt(c.call);
    const result = got.allowed
      ? "allowed"
      : `refused (${got.code}): ${got.by === "RBAC" ? "RBAC" : `\`${got.by}\``}`;
    push(c, rbac, result);
    const label = `${c.as.label} ${c.verb} ${c.resource} in ${c.where}: ${c.what}`;
    // The access review answers as the API server's own authorization of the write did.
    assert.equal(rbac, got.allowed || got.by !== "RBAC", `${label}: SubjectAccessReview allowed=${rbac}`);
    if (c.expect === "allowed") {
      assert.ok(
        got.allowed,
        `${label}: expected allowed, got ${got.allowed ? "" : `${got.by}: ${got.message}`}`,
      );
      return;
    }
    assert.ok(!got.allowed, `${label}: expected refused by ${c.expect}, but it was allowed`);
    assert.equal(got.by, c.expect, `${label}: refused by ${got.by} (${got.message}), expected ${c.expect}`);
    if (c.expect !== "RBAC") assert.equal(got.code, policyCode[c.expect], `${label}: HTTP code`);
    // A policy refuses by its rules, never by an expression failing to evaluate (failurePolicy Fail
    // would refuse then too, but for the wrong reason).
    assert.doesNotMatch(got.message, /resulted in error|compilation|cost budget/, label);
    if (c.message) assert.match(got.message, c.message, label);
  };
  /** Rows of one actor in one namespace. */
  const rows =
    (as: Actor, namespace: string, where: string) =>
    (
      verb: Row["verb"],
      resource: string,
      what: string,
      expect: Case["expect"],
      call: () => Promise<unknown>,
      message?: RegExp,
    ) =>
      check({ as, namespace, where, verb, resource, what, expect, call, message });

  before(async () => {
    const t0 = Date.now();
    kubectlPath = join(await ensureTools(), "kubectl");
    dir = await mkdtemp(join(tmpdir(), "isc-admission-"));
    f = await Fixture.create({ namespaces: 1, startController: false });
    const pipeline = { pipelineName: "sign" };
    e2e = await Fixture.create({
      namespaces: 1,
      config: (ns) => ({ allowList: ns }),
      services: {
        sign: { pipeline, serviceAccount: "signer" },
        rogue: { pipeline, serviceAccount: "cluster-admin-sa" },
        // In a run namespace whose ConfigMap lists runner (and not signer, which the controller's does).
        elsewhere: { pipeline, serviceAccount: "runner", runNamespace: e2eRunNs },
        "elsewhere-signer": { pipeline, serviceAccount: "signer", runNamespace: e2eRunNs },
        // In a run namespace with the run Role but without the ConfigMap.
        bare: { pipeline, serviceAccount: "runner", runNamespace: e2eBareNs },
      },
      startController: false,
    });
    fixtures.push(f, e2e);
    for (const ns of [runNs, e2eRunNs, e2eBareNs, otherNs]) await createNamespace(planes.privateAdmin, ns);

    // The identities, bound to exactly the shipped Roles, under the names deploy/ gives them.
    privateRole = (await readYamlObjects(join(repoRoot, "deploy/private/rbac.yaml")))[0] as V1Role;
    remoteRole = (await readYamlObjects(join(repoRoot, "deploy/public/rbac.yaml")))[0] as V1ClusterRole;
    assert.equal(privateRole?.kind, "Role");
    assert.equal(remoteRole?.kind, "ClusterRole");
    await applyObjects(planes.publicAdmin, [remoteRole as KubernetesObject]);
    controller = await mintController(f.privateNs);
    lookalike = await mintController(f.privateNs, "isc-lookalike");
    remote = await mintRemote(f.namespaces[0] as string);
    await bindRunRole(runNs, controller, f.privateNs);
    lap("namespaces and identities", t0);

    const t1 = Date.now();
    const everyPrivate = [f.privateNs, runNs, otherNs, e2e.privateNs, e2eRunNs, e2eBareNs];
    const scope = {
      [policy.runs]: everyPrivate,
      [policy.serviceAccounts]: everyPrivate,
      [policy.goRuns]: everyPrivate,
      [policy.remote]: [...f.namespaces, ...e2e.namespaces],
    };
    privateObjects = await render("private", f.privateNs);
    runNamespaceObjects = await render("run-namespace", runNs);
    publicObjects = parseObjects(
      await kubectl(undefined, ["kustomize", join(repoRoot, "deploy/admission/public")]),
    );
    await apply(planes.private, confine(privateObjects, scope));
    await apply(planes.private, confine(await render("private", e2e.privateNs), scope));
    await apply(planes.private, runNamespaceObjects);
    await apply(planes.private, await render("run-namespace", e2eRunNs));
    await apply(planes.public, confine(publicObjects, scope));
    lap("kustomize + apply", t1);
  });

  after(async () => {
    await Promise.all(fixtures.map((x) => x.stop()));
    // Cluster-scoped: remove them, so nothing of this file outlives it on the shared planes.
    const names = (objects: KubernetesObject[], kind: string) =>
      objects.filter((o) => o.kind === kind).map((o) => o.metadata?.name as string);
    for (const [plane, objects] of [
      [planes.private, privateObjects],
      [planes.public, publicObjects],
    ] as const) {
      if (!objects) continue;
      for (const kind of ["validatingadmissionpolicybindings", "validatingadmissionpolicies"]) {
        const list = names(
          objects,
          kind === "validatingadmissionpolicies"
            ? "ValidatingAdmissionPolicy"
            : "ValidatingAdmissionPolicyBinding",
        );
        if (list.length) await kubectl(plane, ["delete", "--ignore-not-found", kind, ...list]);
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    console.log(
      `\nadmission.test.ts timings (${((Date.now() - started) / 1000).toFixed(1)}s in all):\n  ${timings.join("\n  ")}`,
    );
  });

  it("ships policies the API server accepts: cluster-wide bindings, a deny-by-default ConfigMap per namespace", async () => {
    const ids = (objects: KubernetesObject[]) => objects.map((o) => `${o.kind}/${o.metadata?.name}`).sort();
    assert.deepEqual(ids(privateObjects), [
      `ConfigMap/${paramsName}`,
      ...[policy.goRuns, policy.serviceAccounts, policy.runs].map((p) => `ValidatingAdmissionPolicy/${p}`),
      ...[policy.goRuns, policy.serviceAccounts, policy.runs].map(
        (p) => `ValidatingAdmissionPolicyBinding/${p}`,
      ),
    ]);
    assert.deepEqual(ids(runNamespaceObjects), [`ConfigMap/${paramsName}`]);
    assert.deepEqual(ids(publicObjects), [
      `ValidatingAdmissionPolicy/${policy.remote}`,
      `ValidatingAdmissionPolicyBinding/${policy.remote}`,
    ]);
    type ConfigMap = KubernetesObject & { data: Record<string, string> };
    const params = privateObjects.find((o) => o.kind === "ConfigMap") as ConfigMap;
    assert.equal(params.metadata?.namespace, f.privateNs, "the ConfigMap follows the overlay's namespace");
    assert.deepEqual(params.data, { allowedServiceAccounts: "", followGoControllerRuns: "false" });
    const runParams = runNamespaceObjects[0] as ConfigMap;
    assert.equal(runParams.metadata?.namespace, runNs);
    assert.deepEqual(runParams.data, { allowedServiceAccounts: "" });
    // As shipped, each base goes where its deploy/ counterpart puts the controller and its runs.
    assert.equal(
      await shippedNamespace("deploy/admission/private"),
      await shippedNamespace("deploy/private"),
    );
    assert.equal(
      await shippedNamespace("deploy/admission/run-namespace"),
      await shippedNamespace("deploy/private/run-namespace"),
    );
    for (const b of [...privateObjects, ...publicObjects].filter(
      (o) => o.kind === "ValidatingAdmissionPolicyBinding",
    ) as Binding[]) {
      assert.equal(
        (b.spec.matchResources as { namespaceSelector?: unknown } | undefined)?.namespaceSelector,
        undefined,
        `${b.metadata?.name}: every namespace, as shipped`,
      );
      // No namespace: looked up in the namespace of the run being written (the controller's, or a run
      // namespace), each with its own list.
      const expected = {
        [policy.serviceAccounts]: { name: paramsName, parameterNotFoundAction: "Deny" },
        [policy.goRuns]: { name: paramsName, parameterNotFoundAction: "Allow" },
      }[b.metadata?.name as string];
      assert.deepEqual(b.spec.paramRef, expected, `${b.metadata?.name} paramRef`);
    }
    // The install commands of both docs name exactly the shipped bases.
    for (const doc of ["deploy/README.md", "docs/policy-and-security.md"]) {
      const text = await readFile(join(repoRoot, doc), "utf8");
      const bases = [...text.matchAll(/kubectl apply --server-side -k deploy\/admission\/([a-z-]+)/g)].map(
        (m) => m[1],
      );
      assert.deepEqual([...new Set(bases)].sort(), ["private", "public", "run-namespace"], doc);
    }
    // Cluster-scoped on the server, whatever namespace kustomize stamped on them.
    const live = JSON.parse(
      await kubectl(planes.private, ["get", "validatingadmissionpolicies", policy.runs, "-o", "json"]),
    ) as KubernetesObject;
    assert.equal(live.metadata?.namespace, undefined);

    // The API server loads new policies asynchronously: wait until each one answers.
    const t = Date.now();
    const probe = dryRun(controller.kubeConfig);
    await untilOutcome(
      () => probe.create(f.privateNs, pipelineRun(uniqueName("probe"), {})),
      policy.runs,
      `${policy.runs} in effect`,
      /creates only PipelineRuns labelled/,
    );
    await untilOutcome(
      () => probe.create(f.privateNs, pipelineRun(uniqueName("probe"), managed, runAs("probe"))),
      policy.serviceAccounts,
      `${policy.serviceAccounts} in effect`,
      /ServiceAccount probe is not in allowedServiceAccounts/,
    );
    lap("policies in effect", t);
  });

  it("private cluster, the controller's namespace: its ServiceAccount writes only its own runs, as it creates them", async () => {
    const ns = f.privateNs;
    const runs = runsAs(controller.kubeConfig);
    const admin = runsAs(planes.privateAdmin);
    const me: Actor = { label: "controller SA", plane: "private", kc: controller.kubeConfig };
    const row = rows(me, ns, "controller's");
    const prs = "pipelineruns";

    // Others' runs in the same namespace: not labelled, labelled for someone else, the Go controller's.
    await admin.create(ns, pipelineRun("foreign", {}));
    await admin.create(ns, pipelineRun("go-run", goLabels("req", "team")));

    await row("create", prs, "labelled managed-by, no ServiceAccount", "allowed", () =>
      runs.create(ns, pipelineRun("own", managed)),
    );
    await row(
      "create",
      prs,
      "no managed-by label",
      policy.runs,
      () => runs.create(ns, pipelineRun("unlabelled", {})),
      /creates only PipelineRuns labelled app\.kubernetes\.io\/managed-by: internal-service-controller/,
    );
    await row(
      "create",
      prs,
      "managed-by: someone-else",
      policy.runs,
      () => runs.create(ns, pipelineRun("relabelled", { [managedByLabel]: "someone-else" })),
      /creates only PipelineRuns labelled/,
    );
    await row(
      "create",
      prs,
      "taskRunTemplate.serviceAccountName signer, allowed list empty",
      policy.serviceAccounts,
      () => runs.create(ns, pipelineRun("sa-none", managed, runAs("signer"))),
      new RegExp(
        `^ServiceAccount signer is not in allowedServiceAccounts of ConfigMap ${ns}/${paramsName} \\(allowed: none;`,
      ),
    );

    await setParams(ns, { allowedServiceAccounts: "signer,\nbuilder" });
    const probe = dryRun(controller.kubeConfig);
    await untilOutcome(
      () => probe.create(ns, pipelineRun("sa-signer", managed, runAs("signer"))),
      undefined,
      "the ConfigMap's new list in effect",
    );
    await row("create", prs, "taskRunTemplate.serviceAccountName signer, listed", "allowed", () =>
      runs.create(ns, pipelineRun("sa-signer", managed, runAs("signer"))),
    );
    await row(
      "create",
      prs,
      "taskRunSpecs[].serviceAccountName cluster-admin-sa, not listed",
      policy.serviceAccounts,
      () =>
        runs.create(
          ns,
          pipelineRun("sa-task", managed, {
            ...runAs("signer"),
            taskRunSpecs: [{ pipelineTaskName: "sign", serviceAccountName: "cluster-admin-sa" }],
          }),
        ),
      /^ServiceAccount cluster-admin-sa is not in allowedServiceAccounts .*\(allowed: signer, builder;/,
    );
    await row(
      "create",
      prs,
      "v1beta1 spec.serviceAccountName cluster-admin-sa, not listed",
      policy.serviceAccounts,
      () =>
        runsAs(controller.kubeConfig, v1beta1Runs).create(ns, {
          ...pipelineRun("sa-v1beta1", managed, { serviceAccountName: "cluster-admin-sa" }),
          apiVersion: "tekton.dev/v1beta1",
        }),
      /^ServiceAccount cluster-admin-sa is not in allowedServiceAccounts/,
    );

    await row("patch", prs, "own run: spec.status Cancelled", "allowed", () =>
      runs.mergePatch(ns, "own", { spec: { status: "Cancelled" } }),
    );
    await row(
      "patch",
      prs,
      "own run: remove its managed-by label",
      policy.runs,
      () => runs.mergePatch(ns, "own", { metadata: { labels: { [managedByLabel]: null } } }),
      /does not change a PipelineRun's managed-by, request-uid, name or namespace labels/,
    );
    await row(
      "patch",
      prs,
      "own run: taskRunTemplate.serviceAccountName to builder (listed)",
      policy.runs,
      () => runs.mergePatch(ns, "sa-signer", { spec: runAs("builder") }),
      /does not change a PipelineRun's taskRunTemplate or taskRunSpecs/,
    );
    await row(
      "patch",
      prs,
      "a run without the label",
      policy.runs,
      () => runs.mergePatch(ns, "foreign", { spec: { status: "Cancelled" } }),
      /changes or deletes only PipelineRuns labelled .* foreign is not one$/,
    );
    await row(
      "delete",
      prs,
      "a run without the label",
      policy.runs,
      () => runs.delete(ns, "foreign"),
      /changes or deletes only PipelineRuns labelled/,
    );
    await row(
      "patch",
      prs,
      "the Go controller's run, followGoControllerRuns false",
      policy.goRuns,
      () => runs.mergePatch(ns, "go-run", { spec: { status: "Cancelled" } }),
      new RegExp(
        `^PipelineRun go-run was created by the original Go controller; .* "true" in ConfigMap ${ns}/${paramsName}$`,
      ),
    );
    await row(
      "delete",
      prs,
      "the Go controller's run, followGoControllerRuns false",
      policy.goRuns,
      () => runs.delete(ns, "go-run"),
      /was created by the original Go controller/,
    );
    await setParams(ns, { followGoControllerRuns: "true" });
    await untilOutcome(
      () => probe.patch(ns, "go-run", { spec: { status: "Cancelled" } }),
      undefined,
      "the switch in effect",
    );
    await row("patch", prs, "the Go controller's run, followGoControllerRuns true", "allowed", () =>
      runs.mergePatch(ns, "go-run", { spec: { status: "CancelledRunFinally" } }),
    );
    await row("delete", prs, "the Go controller's run, followGoControllerRuns true", "allowed", () =>
      runs.delete(ns, "go-run"),
    );
    await setParams(ns, { followGoControllerRuns: "false" });
    await row("delete", prs, "own run", "allowed", () => runs.delete(ns, "own"));

    // What the shipped Role does not grant is refused before admission ...
    await admin.create(ns, pipelineRun("own-2", managed));
    await row("update", prs, "own run (PUT)", "RBAC", () =>
      replace(controller.kubeConfig, ns, "own-2", (r) => {
        r.metadata = { ...r.metadata, annotations: { note: "x" } };
      }),
    );
    await row("patch", "pipelineruns/status", "own run", "RBAC", () =>
      runs.patchStatus(ns, "own-2", running),
    );
    const core = (kc: KubeConfig) => kc.makeApiClient(CoreV1Api);
    await row("patch", "configmaps", `${paramsName}: add cluster-admin-sa`, "RBAC", () =>
      core(controller.kubeConfig).patchNamespacedConfigMap(
        { name: paramsName, namespace: ns, body: { data: { allowedServiceAccounts: "cluster-admin-sa" } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    );
    const elsewhere = rows(me, otherNs, "other (no Role, no ConfigMap)");
    await elsewhere("create", prs, "labelled managed-by", "RBAC", () =>
      runs.create(otherNs, pipelineRun("elsewhere", managed)),
    );
    // ... and with RBAC widened (a mistake, or a Role edited by someone else), admission still holds.
    const tekton = "tekton.dev";
    await grant(
      "private",
      otherNs,
      controller,
      [{ apiGroups: [tekton], resources: [prs], verbs: ["create"] }],
      {
        group: tekton,
        resource: prs,
        verb: "create",
      },
    );
    await grant(
      "private",
      ns,
      controller,
      [{ apiGroups: [tekton], resources: [prs, "pipelineruns/status"], verbs: ["update", "patch"] }],
      { group: tekton, resource: prs, subresource: "status", verb: "patch" },
    );
    const widenedMe: Actor = { ...me, label: "controller SA, RBAC widened" };
    const widened = rows(widenedMe, ns, "controller's");
    // No ConfigMap there: the controller can create no run in a namespace the platform owners did not
    // set up, whatever RBAC grants (fail closed).
    await rows(widenedMe, otherNs, "other (no Role, no ConfigMap)")(
      "create",
      prs,
      "labelled managed-by",
      policy.serviceAccounts,
      () => runs.create(otherNs, pipelineRun("elsewhere", managed)),
      /^failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction$/,
    );
    await widened(
      "patch",
      "pipelineruns/status",
      "own run",
      policy.runs,
      () => runs.patchStatus(ns, "own-2", running),
      /never writes a PipelineRun's status/,
    );
    await widened("update", prs, "own run (PUT), an annotation added", "allowed", () =>
      replace(controller.kubeConfig, ns, "own-2", (r) => {
        r.metadata = { ...r.metadata, annotations: { note: "x" } };
      }),
    );

    // Only the controller's ServiceAccount is held: the namespace's admins, Tekton, and any other
    // ServiceAccount (even with the same Role) are not.
    const clusterAdmin: Actor = { label: "cluster-admin", plane: "private", kc: planes.privateAdmin };
    const asAdmin = rows(clusterAdmin, ns, "controller's");
    await asAdmin(
      "create",
      prs,
      "no label, taskRunTemplate.serviceAccountName cluster-admin-sa",
      "allowed",
      () => admin.create(ns, pipelineRun("admin-run", {}, runAs("cluster-admin-sa"))),
    );
    await asAdmin("delete", prs, "a run without the label", "allowed", () => admin.delete(ns, "foreign"));
    await rows(
      { label: "other SA, same Role", plane: "private", kc: lookalike.kubeConfig },
      ns,
      "controller's",
    )("create", prs, "no managed-by label", "allowed", () =>
      runsAs(lookalike.kubeConfig).create(ns, pipelineRun("lookalike", {})),
    );

    // Fail closed: without its ConfigMap, the controller's runs cannot be created, by anyone; the
    // Go-run switch is then not enforced (Deny there would refuse Tekton's writes to Go runs anywhere).
    await admin.create(ns, pipelineRun("go-run-2", goLabels("req", "team")));
    const saved = await core(planes.privateAdmin).readNamespacedConfigMap({
      name: paramsName,
      namespace: ns,
    });
    await core(planes.privateAdmin).deleteNamespacedConfigMap({ name: paramsName, namespace: ns });
    await untilOutcome(
      () => probe.create(ns, pipelineRun(uniqueName("probe"), managed)),
      policy.serviceAccounts,
      "the ConfigMap's deletion seen",
      /no params found/,
    );
    const noParams =
      /^failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction$/;
    await row(
      "create",
      prs,
      "labelled managed-by, ConfigMap deleted",
      policy.serviceAccounts,
      () => runs.create(ns, pipelineRun("no-params", managed)),
      noParams,
    );
    await asAdmin(
      "create",
      prs,
      "labelled managed-by, ConfigMap deleted",
      policy.serviceAccounts,
      () => admin.create(ns, pipelineRun("no-params", managed)),
      noParams,
    );
    await asAdmin("create", prs, "no label, ConfigMap deleted", "allowed", () =>
      admin.create(ns, pipelineRun("admin-no-params", {})),
    );
    await row("patch", prs, "the Go controller's run, ConfigMap deleted", "allowed", () =>
      runs.mergePatch(ns, "go-run-2", { spec: { status: "Cancelled" } }),
    );
    await core(planes.privateAdmin).createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: paramsName, labels: saved.metadata?.labels }, data: saved.data },
    });
  });

  it("private cluster, a run namespace: the same policies, and the ServiceAccounts its own ConfigMap lists", async () => {
    const ns = runNs;
    const runs = runsAs(controller.kubeConfig);
    const admin = runsAs(planes.privateAdmin);
    const me: Actor = { label: "controller SA", plane: "private", kc: controller.kubeConfig };
    const row = rows(me, ns, "run namespace");
    const prs = "pipelineruns";
    await admin.create(ns, pipelineRun("foreign", {}));
    // The controller's namespace lists signer; this one, runner only.
    await setParams(f.privateNs, { allowedServiceAccounts: "signer" });
    await setParams(ns, { allowedServiceAccounts: "runner" });
    const probe = dryRun(controller.kubeConfig);
    await untilOutcome(
      () => probe.create(ns, pipelineRun(uniqueName("probe"), managed, runAs("runner"))),
      undefined,
      "the run namespace's list in effect",
    );
    await untilOutcome(
      () => probe.create(f.privateNs, pipelineRun(uniqueName("probe"), managed, runAs("signer"))),
      undefined,
      "the controller's namespace's list in effect",
    );

    await row("create", prs, "taskRunTemplate.serviceAccountName runner, listed here", "allowed", () =>
      runs.create(ns, pipelineRun("own", managed, runAs("runner"))),
    );
    await row(
      "create",
      prs,
      "taskRunTemplate.serviceAccountName signer, listed in the controller's namespace only",
      policy.serviceAccounts,
      () => runs.create(ns, pipelineRun("sa-signer", managed, runAs("signer"))),
      new RegExp(
        `^ServiceAccount signer is not in allowedServiceAccounts of ConfigMap ${ns}/${paramsName} \\(allowed: runner;`,
      ),
    );
    await row(
      "create",
      prs,
      "no managed-by label",
      policy.runs,
      () => runs.create(ns, pipelineRun("unlabelled", {})),
      /creates only PipelineRuns labelled/,
    );
    await row("patch", prs, "own run: spec.status Cancelled", "allowed", () =>
      runs.mergePatch(ns, "own", { spec: { status: "Cancelled" } }),
    );
    await row(
      "patch",
      prs,
      "own run: taskRunTemplate.serviceAccountName to signer",
      policy.runs,
      () => runs.mergePatch(ns, "own", { spec: runAs("signer") }),
      /does not change a PipelineRun's taskRunTemplate or taskRunSpecs/,
    );
    await row(
      "patch",
      prs,
      "a run without the label",
      policy.runs,
      () => runs.mergePatch(ns, "foreign", { spec: { status: "Cancelled" } }),
      /foreign is not one$/,
    );
    await row(
      "delete",
      prs,
      "a run without the label",
      policy.runs,
      () => runs.delete(ns, "foreign"),
      /changes or deletes only PipelineRuns labelled/,
    );
    await row("patch", "pipelineruns/status", "own run", "RBAC", () => runs.patchStatus(ns, "own", running));
    await row("patch", "configmaps", `${paramsName}: add cluster-admin-sa`, "RBAC", () =>
      controller.kubeConfig
        .makeApiClient(CoreV1Api)
        .patchNamespacedConfigMap(
          { name: paramsName, namespace: ns, body: { data: { allowedServiceAccounts: "cluster-admin-sa" } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
    );
    await row("delete", prs, "own run", "allowed", () => runs.delete(ns, "own"));
  });

  it("public cluster: the remote identity writes only the status of InternalRequest CustomRuns", async () => {
    const ns = f.namespaces[0] as string;
    const admin = customRunsAs(planes.publicAdmin);
    const runs = customRunsAs(remote.kubeConfig);
    await admin.create(ns, customRun("by-ref", { customRef: { ...irRef, name: "sign" } }));
    await admin.create(ns, customRun("by-spec", { customSpec: { ...irRef, spec: { service: "sign" } } }));
    await admin.create(
      ns,
      customRun("approval", { customRef: { apiVersion: "example.dev/v1", kind: "Approval", name: "x" } }),
    );
    await admin.create(
      ns,
      customRun("ir-v1beta1", {
        customRef: { apiVersion: "appstudio.redhat.com/v1beta1", kind: "InternalRequest", name: "sign" },
      }),
    );
    await admin.create(
      ns,
      customRun("appstudio-gate", {
        customRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "ReleaseGate", name: "g" },
      }),
    );
    const me: Actor = { label: "remote SA", plane: "public", kc: remote.kubeConfig };
    const row = rows(me, ns, "tenant");
    const status = "customruns/status";
    const notOurs = (name: string, apiVersion: string, kind: string) =>
      new RegExp(
        `^the Internal Service Controller writes the status only of CustomRuns whose customRef \\(or customSpec\\) is apiVersion appstudio\\.redhat\\.com/v1alpha1, kind InternalRequest; ${name} refers to apiVersion "${apiVersion.replaceAll(".", "\\.")}", kind "${kind}"$`,
      );
    await untilOutcome(
      () => runs.patchStatus(ns, "approval", running),
      policy.remote,
      `${policy.remote} in effect`,
      /writes the status only/,
    );

    await row("patch", status, "customRef InternalRequest v1alpha1", "allowed", () =>
      runs.patchStatus(ns, "by-ref", running),
    );
    await row("patch", status, "customSpec InternalRequest v1alpha1", "allowed", () =>
      runs.patchStatus(ns, "by-spec", running),
    );
    await row(
      "patch",
      status,
      "customRef example.dev/v1 Approval",
      policy.remote,
      () => runs.patchStatus(ns, "approval", running),
      notOurs("approval", "example.dev/v1", "Approval"),
    );
    await row(
      "patch",
      status,
      "customRef appstudio.redhat.com/v1beta1 InternalRequest",
      policy.remote,
      () => runs.patchStatus(ns, "ir-v1beta1", running),
      notOurs("ir-v1beta1", "appstudio.redhat.com/v1beta1", "InternalRequest"),
    );
    await row(
      "patch",
      status,
      "customRef appstudio.redhat.com/v1alpha1 ReleaseGate",
      policy.remote,
      () => runs.patchStatus(ns, "appstudio-gate", running),
      notOurs("appstudio-gate", "appstudio.redhat.com/v1alpha1", "ReleaseGate"),
    );
    await row("patch", "customruns", "customRef InternalRequest v1alpha1: spec.status", "RBAC", () =>
      runs.mergePatch(ns, "by-ref", { spec: { status: "RunCancelled" } }),
    );
    await row("delete", "customruns", "customRef InternalRequest v1alpha1", "RBAC", () =>
      runs.delete(ns, "by-ref"),
    );
    await grant(
      "public",
      ns,
      remote,
      [{ apiGroups: ["tekton.dev"], resources: ["customruns"], verbs: ["create", "patch", "delete"] }],
      { group: "tekton.dev", resource: "customruns", verb: "delete" },
    );
    const widened = rows({ ...me, label: "remote SA, RBAC widened" }, ns, "tenant");
    const itself = /never creates, changes or deletes a CustomRun itself/;
    await widened(
      "patch",
      "customruns",
      "customRef InternalRequest v1alpha1: spec.status",
      policy.remote,
      () => runs.mergePatch(ns, "by-ref", { spec: { status: "RunCancelled" } }),
      itself,
    );
    await widened(
      "create",
      "customruns",
      "customRef InternalRequest v1alpha1",
      policy.remote,
      () => runs.create(ns, customRun("made-by-remote", { customRef: { ...irRef, name: "sign" } })),
      itself,
    );
    await widened(
      "delete",
      "customruns",
      "customRef example.dev/v1 Approval",
      policy.remote,
      () => runs.delete(ns, "approval"),
      itself,
    );
    await rows({ label: "cluster-admin", plane: "public", kc: planes.publicAdmin }, ns, "tenant")(
      "patch",
      status,
      "customRef example.dev/v1 Approval",
      "allowed",
      () => admin.patchStatus(ns, "approval", running),
    );
  });

  it("the controller (the isc process), told to make forbidden writes, is refused; the rest runs to the end", async () => {
    const t = Date.now();
    const ns = e2e.namespaces[0] as string;
    const home = e2e.privateNs;
    const priv = await mintController(home);
    const pub = await mintRemote(ns);
    await bindRunRole(e2eRunNs, priv, home);
    await bindRunRole(e2eBareNs, priv, home);
    // The controller's namespace lists signer, the run namespace runner; e2eBareNs has no ConfigMap.
    // The Go-run switch starts off: the controller's deletion of that run is refused until it is on.
    await setParams(home, { allowedServiceAccounts: "signer", followGoControllerRuns: "false" });
    await setParams(e2eRunNs, { allowedServiceAccounts: "runner" });
    const probe = dryRun(priv.kubeConfig);
    await untilOutcome(
      () => probe.create(e2eRunNs, pipelineRun(uniqueName("probe"), managed, runAs("runner"))),
      undefined,
      "e2eRunNs's list in effect",
    );
    await untilOutcome(
      () => probe.create(home, pipelineRun(uniqueName("probe"), managed, runAs("signer"))),
      undefined,
      "the controller's namespace's list in effect",
    );

    // The cutover: the Go controller's run for a request it left running.
    const goRun = await e2e.tekton.runs.create(home, {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { generateName: "go-running-", labels: goLabels("go-running", ns) },
      spec: { pipelineRef: { name: "sign" } },
    } as V1PipelineRun);
    const goName = goRun.metadata?.name as string;
    await e2e.tekton.progress(goName, 0, 1);
    const at = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await e2e.requests.create(ns, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name: "go-running", finalizers: [legacyFinalizer] },
      spec: { service: "sign" },
    } as InternalRequest);
    await e2e.requests.patchStatus(ns, "go-running", {
      conditions: [
        { type: "Succeeded", status: "False", reason: "Running", message: "", lastTransitionTime: at },
      ],
      startTime: at,
      pipelineRun: `${home}/${goName}`,
    } satisfies InternalRequestStatus);
    await untilOutcome(
      () => probe.delete(home, goName),
      policy.goRuns,
      "the switch (off) in effect for the e2e namespace",
      /was created by the original Go controller/,
    );

    const proc = await ControllerProcess.start({
      remoteKubeconfig: pub.kubeconfigPath,
      workspaces: [`public=${ns}`],
      privateKubeconfig: priv.kubeconfigPath,
      namespace: home,
      extraArgs: ["--leader-elect=false"],
    });
    const logLine = (what: string, ...parts: string[]) =>
      eventually(
        () => proc.logs.split("\n").find((l) => parts.every((p) => l.includes(p))),
        `the controller's log: ${what}`,
      );
    const runTekton = new FakeTekton(planes.privateAdmin, e2eRunNs);
    try {
      await proc.waitForReady(60_000);

      // The Go controller's run: followed to the end, then deleted, which the switch (off) refuses; the
      // request has its result, the run stays. (The controller does not try again while the request
      // exists: only its deletion, below, takes the cleanup up again.)
      await e2e.tekton.succeed(goName, [{ name: "result", value: "Success" }]);
      assert.deepEqual((await e2e.waitForReason("go-running", "Succeeded")).status?.results, {
        result: "Success",
      });
      const refusals = () =>
        proc.logs.split("\n").filter((l) => l.includes(policy.goRuns) && l.includes(goName));
      await logLine("the Go run's deletion refused", policy.goRuns, goName);
      console.log(`controller log, the refused deletion of the Go controller's run:\n${refusals()[0]}`);
      const goRunKept = async () =>
        assert.equal((await e2e.tekton.runs.get(home, goName)).metadata?.name, goName, "the Go run is kept");
      await goRunKept();
      // The request deleted: its (the Go controller's) finalizer holds it while the controller tries
      // to delete the run, refused each time, until the switch is on.
      const afterFirst = refusals().length;
      await e2e.requests.delete(ns, "go-running");
      await eventually(() => refusals().length >= afterFirst + 2, "the deletion retried and refused again");
      await goRunKept();
      const held = await e2e.requests.get(ns, "go-running");
      assert.ok(held.metadata.deletionTimestamp, "the request is going");
      assert.deepEqual(held.metadata.finalizers, [legacyFinalizer], "held by the Go controller's finalizer");
      await setParams(home, { followGoControllerRuns: "true" });
      // Once the API server has the change, a retry deletes the run (the controller backs off between
      // retries: a longer deadline).
      await eventually(
        async () => {
          const left = (await e2e.tekton.list()).map((x) => x.metadata?.name);
          const request = await e2e.requests.get(ns, "go-running").catch((err) => {
            if (apiStatus(err)?.code === 404) return undefined;
            throw err;
          });
          return (!left.includes(goName) && request === undefined) || undefined;
        },
        "the Go run deleted on a retry, and its request released",
        60_000,
      );

      // Not an InternalRequest, though in the same API group: the controller tries to fail it
      // (UnsupportedKind), and the public policy refuses that write.
      await customRunsAs(planes.publicAdmin).create(
        ns,
        customRun("e2e-gate", {
          customRef: { apiVersion: "appstudio.redhat.com/v1alpha1", kind: "ReleaseGate", name: "g" },
        }),
      );
      const runOf = async (name: string) => {
        const started = await e2e.waitForRequest(name, (x) => x.status?.pipelineRun !== undefined, "started");
        const [runNamespace, runName] = String(started.status?.pipelineRun).split("/") as [string, string];
        return { runNamespace, runName };
      };

      await e2e.createRequest("e2e-ir", { service: "sign", params: {} });
      const ir = await runOf("e2e-ir");
      assert.equal(ir.runNamespace, home);
      const created = await e2e.tekton.runs.get(home, ir.runName);
      assert.equal(created.metadata?.labels?.[managedByLabel], managedByValue);
      assert.equal(created.spec?.taskRunTemplate?.serviceAccountName, "signer");
      await e2e.tekton.succeed(ir.runName, [{ name: "signature", value: "sig-ir" }]);
      assert.deepEqual((await e2e.waitForReason("e2e-ir", "Succeeded")).status?.results, {
        signature: "sig-ir",
      });

      // In the run namespace, as the ServiceAccount its ConfigMap lists.
      await e2e.createRequest("e2e-elsewhere", { service: "elsewhere", params: {} });
      const elsewhere = await runOf("e2e-elsewhere");
      assert.equal(elsewhere.runNamespace, e2eRunNs);
      const elsewhereRun = await runTekton.runs.get(e2eRunNs, elsewhere.runName);
      assert.equal(elsewhereRun.spec?.taskRunTemplate?.serviceAccountName, "runner");
      await runTekton.succeed(elsewhere.runName, [{ name: "signature", value: "sig-elsewhere" }]);
      assert.deepEqual((await e2e.waitForReason("e2e-elsewhere", "Succeeded")).status?.results, {
        signature: "sig-elsewhere",
      });

      await customRunsAs(planes.publicAdmin).create(
        ns,
        customRun("e2e-cr", { customRef: { ...irRef, name: "sign" } }),
      );
      const cr = await runOf("e2e-cr-0");
      await e2e.tekton.succeed(cr.runName, [{ name: "signature", value: "sig-cr" }]);
      const crDone = await eventually(async () => {
        const x = await customRunsAs(planes.publicAdmin).get(ns, "e2e-cr");
        const c = x.status?.conditions?.[0];
        return c && c.status !== "Unknown" ? x : undefined;
      }, "CustomRun e2e-cr done");
      assert.equal(crDone.status?.conditions?.[0]?.status, "True", JSON.stringify(crDone.status));
      assert.deepEqual(crDone.status?.results, [{ name: "signature", value: "sig-cr" }]);

      // Services pinned to a ServiceAccount the namespace's ConfigMap does not list, or run where there
      // is no ConfigMap: refused (422), so the controller fails the request, saying so, and nothing runs.
      const refusedRun = /^the private cluster refused the internal PipelineRun \(422 Invalid\)/;
      const nothingRuns = async (runNamespace: string, request: string) =>
        assert.deepEqual(
          (
            await new FakeTekton(planes.privateAdmin, runNamespace).runs.list(runNamespace, {
              labelSelector: `${requestNameLabel}=${request}`,
            })
          ).items,
          [],
          `nothing of ${request} runs in ${runNamespace}`,
        );
      const failedBy = async (request: string, service: string, runNamespace: string, log: string) => {
        await e2e.createRequest(request, { service, params: {} });
        const failed = await e2e.waitForReason(request, "Failed");
        assert.match(failed.status?.conditions?.[0]?.message ?? "", refusedRun, request);
        await logLine(
          `${request}'s run refused`,
          "internal PipelineRun refused",
          policy.serviceAccounts,
          log,
        );
        await nothingRuns(runNamespace, request);
      };
      await failedBy(
        "e2e-rogue",
        "rogue",
        home,
        `ServiceAccount cluster-admin-sa is not in allowedServiceAccounts of ConfigMap ${home}/${paramsName}`,
      );
      await failedBy(
        "e2e-elsewhere-signer",
        "elsewhere-signer",
        e2eRunNs,
        `ServiceAccount signer is not in allowedServiceAccounts of ConfigMap ${e2eRunNs}/${paramsName}`,
      );
      await failedBy("e2e-bare", "bare", e2eBareNs, "no params found for policy binding");

      // Cancelling: the controller patches its own run's spec.status (had the policy refused it, the
      // request would not end), then deletes the run.
      await e2e.createRequest("e2e-cancel", { service: "sign" });
      const cancel = await runOf("e2e-cancel");
      await e2e.requests.mergePatch(ns, "e2e-cancel", { spec: { status: "Cancelled" } });
      assert.equal(
        (await e2e.waitForReason("e2e-cancel", "Cancelled")).status?.conditions?.[0]?.message,
        "request cancelled (spec.status); internal PipelineRun cancelled",
      );

      // Finished runs deleted, in both namespaces.
      await eventually(async () => {
        const left = [...(await e2e.tekton.list()), ...(await runTekton.list())].map((x) => x.metadata?.name);
        return (
          [ir.runName, cancel.runName, cr.runName, elsewhere.runName].every((n) => !left.includes(n)) ||
          undefined
        );
      }, "finished runs deleted");

      const refused = await logLine("the refused status write on e2e-gate", policy.remote, "e2e-gate");
      console.log(`controller log, the refused write:\n${refused}`);
      await eventually(
        () =>
          proc.logs.split("\n").filter((l) => l.includes(policy.remote) && l.includes("e2e-gate")).length >=
          2,
        "the status write on e2e-gate retried, and refused again",
      );
      const gate = await customRunsAs(planes.publicAdmin).get(ns, "e2e-gate");
      assert.equal(gate.status?.conditions, undefined, "e2e-gate is left as it was");

      const me: Actor = { label: "controller SA (isc process)", plane: "private", kc: priv.kubeConfig };
      const remoteMe: Actor = { label: "remote SA (isc process)", plane: "public", kc: pub.kubeConfig };
      const prs = "pipelineruns";
      const at = (namespace: string, where: string) => ({ as: me, namespace, where, resource: prs });
      const inHome = at(home, "controller's");
      const inRunNs = at(e2eRunNs, "run namespace");
      const sa = `refused (422): \`${policy.serviceAccounts}\`; the request Failed`;
      await record(
        { ...inHome, verb: "create", what: "request for a service run as signer (listed)" },
        "allowed",
      );
      await record({ ...inHome, verb: "create", what: "request for a service run as cluster-admin-sa" }, sa);
      await record(
        { ...inRunNs, verb: "create", what: "request for a service run there as runner (listed there)" },
        "allowed",
      );
      await record(
        {
          ...inRunNs,
          verb: "create",
          what: "request for a service run there as signer (listed in the controller's namespace only)",
        },
        sa,
      );
      await record(
        {
          ...at(e2eBareNs, "run namespace, no ConfigMap"),
          verb: "create",
          what: "request for a service run there as runner",
        },
        sa,
      );
      await record(
        { ...inHome, verb: "patch", what: "own run of a cancelled request: spec.status Cancelled" },
        "allowed",
      );
      await record({ ...inHome, verb: "delete", what: "own runs, finished" }, "allowed");
      await record({ ...inRunNs, verb: "delete", what: "own run, finished" }, "allowed");
      const goRun = "the Go controller's run";
      await record(
        { ...inHome, verb: "delete", what: `${goRun}, its request finished, followGoControllerRuns false` },
        `refused (403): \`${policy.goRuns}\`; the run kept`,
      );
      await record(
        { ...inHome, verb: "delete", what: `${goRun}, its request deleted, followGoControllerRuns false` },
        `refused (403): \`${policy.goRuns}\`; retried, the request held by its finalizer`,
      );
      await record(
        { ...inHome, verb: "delete", what: `${goRun}, a retry after followGoControllerRuns true` },
        "allowed; the request released",
      );
      const status = { as: remoteMe, namespace: ns, where: "tenant", resource: "customruns/status" };
      await record({ ...status, verb: "patch", what: "InternalRequest CustomRun, to Succeeded" }, "allowed");
      await record(
        { ...status, verb: "patch", what: "appstudio.redhat.com/v1alpha1 ReleaseGate" },
        `refused (403): \`${policy.remote}\`; retried, the CustomRun untouched`,
      );
    } finally {
      await proc.kill("SIGTERM");
    }
    lap("controller end to end", t);
  });

  it("the matrix in docs/policy-and-security.md is the one measured", async () => {
    const table = [
      "| cluster | identity | namespace | verb | resource | case | RBAC (SubjectAccessReview) | write (measured) |",
      "| ------- | -------- | --------- | ---- | -------- | ---- | -------------------------- | ---------------- |",
      ...matrix,
    ].join("\n");
    console.log(`\nadmission matrix (access reviews and real writes):\n${table}\n`);
    const docs = await readFile(join(repoRoot, "docs/policy-and-security.md"), "utf8");
    const marker = "<!-- admission.test.ts measures this matrix -->";
    const at = docs.indexOf(marker);
    assert.ok(at >= 0, `docs/policy-and-security.md has the marker ${marker}`);
    const lines = docs
      .slice(at + marker.length)
      .trimStart()
      .split("\n");
    const documented = lines.slice(
      0,
      lines.findIndex((l) => !l.startsWith("|")),
    );
    // Column widths (as a formatter pads them) do not matter: compared cell by cell.
    const cells = (rows: string[]) =>
      rows.map((l) =>
        l
          .split("|")
          .slice(1, -1)
          .map((c) => c.trim())
          .map((c) => (/^-+$/.test(c) ? "-" : c)),
      );
    assert.deepEqual(
      cells(documented),
      cells(table.split("\n")),
      "paste the matrix printed above into the docs",
    );
  });
});
