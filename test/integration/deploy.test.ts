// Keeps deploy/ and the Dockerfile honest: both kustomize bases are rendered with kubectl (built from Go
// modules) and applied to the real planes with a server-side dry run (Pod Security "restricted" admission
// included); the Deployment, the RBAC and the default policy are checked against what the docs
// promise; and deploy/README.md's commands are run as written: they build the kubeconfig the Deployment
// mounts and its first bound, expiring token, which the controller then starts with, and rotate that
// token with deploy/refresh-remote-token.sh, revoking the old one.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  RbacAuthorizationV1Api,
  type V1ClusterRole,
  type V1Deployment,
  type V1PolicyRule,
  type V1Role,
  type V1RoleBinding,
} from "@kubernetes/client-node";
import { parse, parseAllDocuments, stringify } from "yaml";
import { ensureTools } from "../../envtest/binaries.ts";
import { createNamespace, readYamlObjects, uniqueName } from "../../envtest/cluster.ts";
import type { Plane } from "../../envtest/controlplane.ts";
import { type CommandOptions, type CommandResult, runCommand } from "../../envtest/run-command.ts";
import { eventually } from "../../envtest/wait.ts";
import type { InternalServicesConfig } from "../../src/generated/crds.ts";
import { writeLikeKubelet } from "../support/atomic-writer.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const privateNs = "internal-services";
const remoteNs = "internal-services-remote";
const remoteSa = "internal-service-controller-remote";
const anchorSelector = "app.kubernetes.io/component=remote-token";

/** The public ClusterRole's verbs per resource, as docs/policy-and-security.md lists them. */
const documentedPublicVerbs: Record<string, string[]> = {
  "appstudio.redhat.com/internalrequests": ["get", "list", "watch", "patch", "create"],
  "appstudio.redhat.com/internalrequests/status": ["get", "patch"],
  "appstudio.redhat.com/internalrequests/finalizers": ["update"],
  "tekton.dev/customruns": ["get", "list", "watch"],
  "tekton.dev/customruns/status": ["get", "patch"],
  "/events": ["create", "patch"],
};

const run = (cmd: string, args: string[], opts: CommandOptions) =>
  runCommand(cmd, args, { timeoutMs: 120_000, ...opts });

const parseObjects = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);

const find = <T extends KubernetesObject>(objects: KubernetesObject[], kind: string, name: string) => {
  const obj = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  assert.ok(obj, `${kind} ${name} is rendered`);
  return obj as T;
};

const ids = (objects: KubernetesObject[]) =>
  objects.map(
    (o) => `${o.kind}/${o.metadata?.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata?.name}`,
  );

/** A shell block of deploy/README.md: the first ```sh fence after the marker comment. */
function readmeBlock(readme: string, marker: string): string {
  const at = readme.indexOf(`<!-- deploy.test.ts runs this block against ${marker} -->`);
  assert.ok(at >= 0, `deploy/README.md marks the block run against ${marker}`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(match?.[1], `a sh block follows the ${marker} marker`);
  return match[1];
}

/** A JWT's claims (not verified: the API server does that). */
function jwtClaims(token: string): {
  sub: string;
  iat: number;
  exp: number;
  "kubernetes.io"?: { secret?: { name: string } };
} {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString());
}

function assertNoSecrets(rules: V1PolicyRule[], what: string): void {
  for (const rule of rules) {
    for (const resource of rule.resources ?? []) {
      assert.ok(!/^(secrets|\*)(\/|$)/.test(resource), `${what} grants ${resource}`);
    }
    assert.ok(!rule.verbs.includes("*"), `${what} grants verb *`);
    assert.ok(!(rule.apiGroups ?? []).includes("*"), `${what} grants apiGroup *`);
    assert.equal(rule.resourceNames, undefined, `${what}: unexpected resourceNames`);
    assert.equal(rule.nonResourceURLs, undefined, `${what}: unexpected nonResourceURLs`);
  }
}

describe("deploy/ kustomize bases, README commands and Dockerfile", () => {
  const planes = testPlanes();
  let kubectlPath: string;
  let toolsDir: string;
  let dir: string;
  let privateYaml: string;
  let publicYaml: string;
  let privateObjects: KubernetesObject[];
  let publicObjects: KubernetesObject[];

  const kubectl = (plane: Plane | undefined, args: string[], stdin?: string) =>
    run(kubectlPath, plane ? [`--kubeconfig=${plane.kubeconfigPath}`, ...args] : args, {
      env: { ...process.env, HOME: dir, NO_COLOR: "1" },
      stdin,
    });
  const ok = async (r: Promise<CommandResult>, what: string) => {
    const res = await r;
    assert.equal(res.code, 0, `${what} failed:\n${res.stderr}${res.stdout}`);
    return res;
  };
  /** Server-side apply for real, as an operator would (idempotent). */
  const apply = (plane: Plane, objects: KubernetesObject[]) =>
    ok(
      kubectl(
        plane,
        ["apply", "--server-side", "--field-manager=isc-deploy-test", "-f", "-"],
        objects.map((o) => stringify(o)).join("---\n"),
      ),
      `applying ${ids(objects).join(", ")}`,
    );
  const dryRun = (plane: Plane, yaml: string, extra: string[] = []) =>
    kubectl(
      plane,
      ["apply", "--server-side", "--dry-run=server", "--force-conflicts", "--field-manager=isc-deploy-test"]
        .concat(extra)
        .concat(["-f", "-"]),
      yaml,
    );

  before(async () => {
    toolsDir = await ensureTools();
    kubectlPath = join(toolsDir, "kubectl");
    dir = await mkdtemp(join(tmpdir(), "isc-deploy-"));
    privateYaml = (
      await ok(kubectl(undefined, ["kustomize", join(repoRoot, "deploy/private")]), "kustomize private")
    ).stdout;
    publicYaml = (
      await ok(
        kubectl(undefined, [
          "kustomize",
          "--load-restrictor",
          "LoadRestrictionsNone",
          join(repoRoot, "deploy/public"),
        ]),
        "kustomize public",
      )
    ).stdout;
    privateObjects = parseObjects(privateYaml);
    publicObjects = parseObjects(publicYaml);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the private base holds the controller's objects, all in its namespace", () => {
    assert.deepEqual(ids(privateObjects).sort(), [
      "Deployment/internal-services/internal-service-controller",
      "InternalServicesConfig/internal-services/config",
      `Namespace/${privateNs}`,
      "Role/internal-services/internal-service-controller",
      "RoleBinding/internal-services/internal-service-controller",
      "ServiceAccount/internal-services/internal-service-controller",
    ]);
    const binding = find<V1RoleBinding>(privateObjects, "RoleBinding", "internal-service-controller");
    assert.deepEqual(binding.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "internal-service-controller",
    });
    assert.deepEqual(binding.subjects, [
      { kind: "ServiceAccount", name: "internal-service-controller", namespace: privateNs },
    ]);
  });

  it("the Deployment runs isc controller hardened, with probes, resources and the remote kubeconfig", () => {
    const d = find<V1Deployment>(privateObjects, "Deployment", "internal-service-controller");
    const spec = d.spec?.template.spec;
    assert.equal(d.spec?.replicas, 2);
    assert.equal(spec?.serviceAccountName, "internal-service-controller");
    assert.equal(spec?.containers.length, 1);
    const c = spec?.containers[0];
    assert.ok(c);
    assert.equal(c.image, "internal-service-controller:latest");
    assert.equal(c.command, undefined, "the image's entrypoint (the isc CLI) is used");
    assert.deepEqual(c.args, ["controller"]);

    const env = new Map((c.env ?? []).map((e) => [e.name, e]));
    assert.equal(env.get("ISC_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath, "metadata.namespace");
    assert.equal(env.get("ISC_KUBECONFIG")?.value, "/etc/isc/remote/kubeconfig");
    assert.match(env.get("ISC_WORKSPACES")?.value ?? "", /^\S+/);
    assert.equal(env.get("ISC_LEADER_ELECT")?.value, "true");
    assert.equal(env.has("ISC_PRIVATE_KUBECONFIG"), false, "in-cluster config for the private side");

    // Unauthenticated metrics stay on loopback; only the probes' port is exposed.
    assert.equal(env.get("ISC_METRICS_ADDRESS")?.value, "127.0.0.1:8080");
    assert.deepEqual(
      (c.ports ?? []).map((p) => [p.name, p.containerPort]),
      [["health", 8081]],
    );
    assert.equal(c.livenessProbe?.httpGet?.path, "/healthz");
    assert.equal(c.livenessProbe?.httpGet?.port, 8081);
    assert.equal(c.readinessProbe?.httpGet?.path, "/readyz");
    assert.equal(c.readinessProbe?.httpGet?.port, 8081);
    assert.deepEqual(c.resources, {
      requests: { cpu: "100m", memory: "128Mi" },
      limits: { cpu: "500m", memory: "256Mi" },
    });

    const sc = c.securityContext;
    assert.equal(sc?.runAsNonRoot, true);
    assert.equal(sc?.readOnlyRootFilesystem, true);
    assert.equal(sc?.allowPrivilegeEscalation, false);
    assert.deepEqual(sc?.capabilities, { drop: ["ALL"] });
    assert.equal(sc?.seccompProfile?.type, "RuntimeDefault");
    assert.equal(sc?.privileged, undefined);
    assert.equal(spec?.securityContext?.runAsNonRoot, true);
    assert.equal(spec?.hostNetwork, undefined);

    const mounts = new Map((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    const remote = mounts.get("/etc/isc/remote");
    assert.equal(remote?.readOnly, true);
    const volumes = new Map((spec?.volumes ?? []).map((v) => [v.name, v]));
    // The whole volume, no subPath (kubelet would never update the token in a subPath mount).
    assert.equal(remote?.subPath, undefined);
    assert.deepEqual(volumes.get(remote?.name ?? "")?.secret, {
      secretName: "isc-remote-kubeconfig",
      items: [
        { key: "kubeconfig", path: "kubeconfig" },
        { key: "token", path: "token" },
      ],
    });
    assert.ok(volumes.get(mounts.get("/tmp")?.name ?? "")?.emptyDir, "an emptyDir at /tmp");
  });

  it("the private Role is the documented one, in the controller's namespace only, with no secrets", async () => {
    const role = find<V1Role>(privateObjects, "Role", "internal-service-controller");
    const [source] = (await readYamlObjects(join(repoRoot, "deploy/private/rbac.yaml"))) as V1Role[];
    assert.deepEqual(role.rules, source?.rules);
    assertNoSecrets(role.rules ?? [], "private Role");
    assert.equal(privateObjects.filter((o) => o.kind?.startsWith("Cluster")).length, 0);
  });

  it("the public ClusterRole grants only the documented verbs, and no secrets", async () => {
    const role = find<V1ClusterRole>(publicObjects, "ClusterRole", remoteSa);
    assertNoSecrets(role.rules ?? [], "public ClusterRole");
    const granted: Record<string, string[]> = {};
    for (const rule of role.rules ?? []) {
      for (const group of rule.apiGroups ?? []) {
        for (const resource of rule.resources ?? []) {
          const key = `${group}/${resource}`;
          const allowed = documentedPublicVerbs[key];
          assert.ok(allowed, `the public ClusterRole grants undocumented ${key}`);
          for (const verb of rule.verbs)
            assert.ok(allowed.includes(verb), `${key}: undocumented verb ${verb}`);
          granted[key] = [...(granted[key] ?? []), ...rule.verbs];
        }
      }
    }
    for (const [key, verbs] of Object.entries(documentedPublicVerbs)) {
      assert.deepEqual(new Set(granted[key]), new Set(verbs), `${key} verbs`);
    }

    const [selectorRole, selectorBinding] = (await readYamlObjects(
      join(repoRoot, "deploy/public/workspace-selector.yaml"),
    )) as [V1ClusterRole, V1RoleBinding];
    assert.deepEqual(selectorRole.rules, [
      { apiGroups: [""], resources: ["namespaces"], verbs: ["list", "watch"] },
    ]);
    assert.deepEqual(selectorBinding.subjects, [
      { kind: "ServiceAccount", name: remoteSa, namespace: remoteNs },
    ]);
  });

  it("the public base holds the CRD from crds/ and the remote identity, and no token", async () => {
    assert.deepEqual(ids(publicObjects).sort(), [
      "ClusterRole/internal-service-controller-remote",
      "CustomResourceDefinition/internalrequests.appstudio.redhat.com",
      `Namespace/${remoteNs}`,
      `Role/${remoteNs}/internal-service-controller-heartbeat`,
      `Role/${remoteNs}/internal-service-controller-heartbeat-reader`,
      `RoleBinding/${remoteNs}/internal-service-controller-heartbeat`,
      `RoleBinding/${remoteNs}/internal-service-controller-heartbeat-reader`,
      `ServiceAccount/${remoteNs}/${remoteSa}`,
    ]);
    const [crd] = await readYamlObjects(join(repoRoot, "crds/appstudio.redhat.com_internalrequests.yaml"));
    assert.deepEqual(find(publicObjects, "CustomResourceDefinition", crd?.metadata?.name as string), crd);
    const [tenantBinding] = (await readYamlObjects(
      join(repoRoot, "deploy/public/rolebinding-tenant.yaml"),
    )) as V1RoleBinding[];
    assert.equal(tenantBinding?.metadata?.namespace, undefined, "applied with -n <tenant>");
    assert.deepEqual(tenantBinding?.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: remoteSa,
    });
    assert.deepEqual(tenantBinding?.subjects, [
      { kind: "ServiceAccount", name: remoteSa, namespace: remoteNs },
    ]);
  });

  it("the shipped InternalServicesConfig denies everything", () => {
    const config = find<InternalServicesConfig>(privateObjects, "InternalServicesConfig", "config");
    assert.deepEqual(config.spec?.allowList ?? [], []);
    assert.deepEqual(config.spec?.allowedPipelineSources ?? [], []);
    assert.deepEqual(config.spec?.allowedGitResolverURLs ?? [], []);
    assert.deepEqual(config.spec?.allowedServiceAccounts ?? [], []);
  });

  it("the private base is accepted by the private API server, Pod Security restricted included", async () => {
    await apply(
      planes.private,
      privateObjects.filter((o) => o.kind === "Namespace"),
    );
    const res = await ok(dryRun(planes.private, privateYaml), "dry-run apply of deploy/private");
    for (const id of ids(privateObjects)) {
      const [kind, ...rest] = id.split("/");
      const name = rest.at(-1) as string;
      assert.match(
        res.stdout,
        new RegExp(`${name} serverside-applied \\(server dry run\\)`),
        `${kind} ${name}`,
      );
    }
    assert.doesNotMatch(res.stderr, /PodSecurity/, "no Pod Security warnings");

    // The check has teeth: the same Deployment without its securityContext is warned about.
    const d = structuredClone(
      find<V1Deployment>(privateObjects, "Deployment", "internal-service-controller"),
    );
    const container = d.spec?.template.spec?.containers[0];
    if (container) delete container.securityContext;
    const weak = await ok(dryRun(planes.private, stringify(d)), "dry-run apply of a weakened Deployment");
    assert.match(weak.stderr, /would violate PodSecurity "restricted/);
  });

  it("the public base and the per-namespace files are accepted by the public API server", async () => {
    await apply(
      planes.public,
      publicObjects.filter((o) => o.kind === "Namespace"),
    );
    const res = await ok(dryRun(planes.public, publicYaml), "dry-run apply of deploy/public");
    assert.equal(res.stdout.match(/serverside-applied \(server dry run\)/g)?.length, publicObjects.length);
    const tenant = await createNamespace(planes.publicAdmin, uniqueName("deploy-tenant"));
    const tenantBinding = await readFile(join(repoRoot, "deploy/public/rolebinding-tenant.yaml"), "utf8");
    await ok(dryRun(planes.public, tenantBinding, ["-n", tenant]), "dry-run rolebinding-tenant.yaml");
    const selector = await readFile(join(repoRoot, "deploy/public/workspace-selector.yaml"), "utf8");
    await ok(dryRun(planes.public, selector), "dry-run workspace-selector.yaml");
    const retention = await readFile(join(repoRoot, "deploy/public/request-retention.yaml"), "utf8");
    await ok(dryRun(planes.public, retention), "dry-run request-retention.yaml");
  });

  it("deploy/README.md's commands build the kubeconfig and a bound token, and rotate and revoke it", async () => {
    const readme = await readFile(join(repoRoot, "deploy/README.md"), "utf8");
    // Public side for real (not the CRD, which the test harness owns), and one tenant binding.
    await apply(
      planes.public,
      publicObjects.filter((o) => o.kind !== "CustomResourceDefinition"),
    );
    const tenant = await createNamespace(planes.publicAdmin, uniqueName("deploy-tenant"));
    const other = await createNamespace(planes.publicAdmin, uniqueName("deploy-other"));
    await ok(
      kubectl(planes.public, [
        "apply",
        "-n",
        tenant,
        "-f",
        join(repoRoot, "deploy/public/rolebinding-tenant.yaml"),
      ]),
      "apply rolebinding-tenant.yaml",
    );
    // No kube-controller-manager runs here: publish the cluster's CA as its root-ca-cert-publisher would.
    const core = planes.publicAdmin.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({
      namespace: remoteNs,
      body: { metadata: { name: "kube-root-ca.crt" }, data: { "ca.crt": planes.public.caPem } },
    });

    // The README's commands run from the repository's root: deploy/ is there, the rest is scratch.
    const work = await mkdtemp(join(dir, "readme-"));
    await symlink(join(repoRoot, "deploy"), join(work, "deploy"));
    const shell = (plane: Plane | Plane[], script: string, env: Record<string, string> = {}) =>
      ok(
        run("bash", ["-euo", "pipefail", "-c", script], {
          cwd: work,
          env: {
            PATH: `${toolsDir}:${process.env.PATH ?? ""}`,
            HOME: work,
            KUBECONFIG: [plane]
              .flat()
              .map((p) => p.kubeconfigPath)
              .join(":"),
            ...env,
          },
        }),
        `README block for ${[plane].flat().map((p) => p.name)}`,
      );
    await shell(planes.public, readmeBlock(readme, "the public plane"));
    const remoteKubeconfig = join(work, "remote", "kubeconfig");
    assert.deepEqual(await readdir(work).then((f) => f.filter((n) => !n.startsWith(".")).sort()), [
      "deploy",
      "remote",
    ]);
    assert.deepEqual((await readdir(join(work, "remote"))).sort(), ["kubeconfig", "token"]);
    const kc = await readFile(remoteKubeconfig, "utf8");
    assert.doesNotMatch(kc, /certificate-authority:/, "the CA is embedded, not a path");
    const [user] = (parse(kc) as { users: { user: Record<string, unknown> }[] }).users;
    assert.deepEqual(user?.user, { tokenFile: "token" }, "the token is read from the file beside it");
    const tokenFile = await readFile(join(work, "remote", "token"), "utf8");
    const firstToken = tokenFile.trim();
    const claims = jwtClaims(firstToken);
    assert.equal(claims.sub, `system:serviceaccount:${remoteNs}:${remoteSa}`);
    assert.equal(claims.exp - claims.iat, 24 * 3600, "expires in 24 hours");
    const firstAnchor = claims["kubernetes.io"]?.secret?.name as string;
    assert.match(firstAnchor, new RegExp(`^${remoteSa}-`), "bound to an anchor Secret");

    const canI = async (verb: string, resource: string, ns: string) =>
      (
        await run(
          kubectlPath,
          [`--kubeconfig=${remoteKubeconfig}`, "auth", "can-i", verb, resource, "-n", ns],
          {
            env: { ...process.env, HOME: work },
          },
        )
      ).stdout.trim();
    assert.equal(await canI("watch", "internalrequests.appstudio.redhat.com", tenant), "yes");
    assert.equal(await canI("patch", "internalrequests.appstudio.redhat.com/status", tenant), "yes");
    assert.equal(await canI("list", "customruns.tekton.dev", tenant), "yes");
    assert.equal(await canI("get", "secrets", tenant), "no");
    assert.equal(await canI("delete", "internalrequests.appstudio.redhat.com", tenant), "no");
    assert.equal(await canI("list", "internalrequests.appstudio.redhat.com", other), "no");

    // Private side: the Secret the Deployment mounts.
    await apply(
      planes.private,
      privateObjects.filter((o) => o.kind === "Namespace"),
    );
    await shell(planes.private, readmeBlock(readme, "the private plane"));
    const privateCore = planes.privateAdmin.makeApiClient(CoreV1Api);
    const mounted = async () => {
      const stored = await privateCore.readNamespacedSecret({
        name: "isc-remote-kubeconfig",
        namespace: privateNs,
      });
      const data = Object.fromEntries(
        Object.entries(stored.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
      );
      assert.deepEqual(Object.keys(data).sort(), ["kubeconfig", "token"]);
      return data as { kubeconfig: string; token: string };
    };
    assert.deepEqual(await mounted(), { kubeconfig: kc, token: tokenFile });
    const loaded = new KubeConfig();
    loaded.loadFromString(kc);
    assert.equal(loaded.getCurrentContext(), "public");

    // The controller starts and syncs its caches with the Secret as kubelet mounts it.
    const mount = join(work, "mount");
    await writeLikeKubelet(mount, await mounted());
    const controller = await ControllerProcess.start({
      remoteKubeconfig: join(mount, "kubeconfig"),
      workspaces: [`public=${tenant}`],
      privateKubeconfig: planes.private.kubeconfigPath,
      namespace: privateNs,
      extraArgs: ["--leader-elect=false"],
    });
    try {
      await controller.waitForReady(60_000);
    } finally {
      await controller.kill("SIGTERM");
    }

    // Rotation: a new token in the Secret, the kubeconfig untouched, the old token revoked.
    const auth = (token: string) => {
      const k = new KubeConfig();
      k.loadFromOptions({
        clusters: [
          {
            name: "c",
            server: planes.public.server,
            caData: Buffer.from(planes.public.caPem).toString("base64"),
            skipTLSVerify: false,
          },
        ],
        users: [{ name: "u", token }],
        contexts: [{ name: "c", cluster: "c", user: "u" }],
        currentContext: "c",
      });
      return k.makeApiClient(AuthenticationV1Api);
    };
    const whoAmI = (token: string) =>
      auth(token)
        .createSelfSubjectReview({ body: {} })
        .then(
          (r) => r.status?.userInfo?.username,
          (err: { code?: number }) => err.code,
        );
    assert.equal(await whoAmI(firstToken), claims.sub);
    // REVOKE_AFTER=0: there is no kubelet here to wait for (the script's default waits 120 s for it).
    await shell([planes.public, planes.private], readmeBlock(readme, "both planes"), { REVOKE_AFTER: "0" });
    const rotated = await mounted();
    assert.equal(rotated.kubeconfig, kc);
    const secondToken = rotated.token.trim();
    assert.notEqual(secondToken, firstToken);
    const secondAnchor = jwtClaims(secondToken)["kubernetes.io"]?.secret?.name;
    assert.deepEqual(
      (await core.listNamespacedSecret({ namespace: remoteNs, labelSelector: anchorSelector })).items.map(
        (s) => s.metadata?.name,
      ),
      [secondAnchor],
      "only the new token's anchor is left",
    );
    assert.equal(await whoAmI(secondToken), claims.sub);
    // The API server may accept a revoked token for a few seconds more (its authentication cache).
    await eventually(async () => (await whoAmI(firstToken)) === 401, "the old token rejected", 30_000, 200);

    // Again as a rotator with only the permissions deploy/README.md lists, on each plane.
    const rotator = "token-rotator";
    const grant = async (plane: Plane, admin: KubeConfig, namespace: string, rules: V1PolicyRule[]) => {
      const planeCore = admin.makeApiClient(CoreV1Api);
      const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
      const metadata = { name: rotator };
      await planeCore.createNamespacedServiceAccount({ namespace, body: { metadata } });
      await rbac.createNamespacedRole({ namespace, body: { metadata, rules } });
      await rbac.createNamespacedRoleBinding({
        namespace,
        body: {
          metadata,
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: rotator },
          subjects: [{ kind: "ServiceAccount", name: rotator, namespace }],
        },
      });
      const minted = await planeCore.createNamespacedServiceAccountToken({
        name: rotator,
        namespace,
        body: { spec: { audiences: [], expirationSeconds: 3600 } },
      });
      return {
        cluster: {
          name: plane.name,
          cluster: {
            server: plane.server,
            "certificate-authority-data": Buffer.from(plane.caPem).toString("base64"),
          },
        },
        user: { name: plane.name, user: { token: minted.status?.token } },
        context: { name: plane.name, context: { cluster: plane.name, user: plane.name } },
      };
    };
    const sides = [
      await grant(planes.public, planes.publicAdmin, remoteNs, [
        {
          apiGroups: [""],
          resources: ["serviceaccounts/token"],
          resourceNames: [remoteSa],
          verbs: ["create"],
        },
        { apiGroups: [""], resources: ["secrets"], verbs: ["create", "list", "delete"] },
      ]),
      await grant(planes.private, planes.privateAdmin, privateNs, [
        {
          apiGroups: [""],
          resources: ["secrets"],
          resourceNames: ["isc-remote-kubeconfig"],
          verbs: ["get", "patch"],
        },
      ]),
    ];
    const rotatorKubeconfig = join(work, "rotator-kubeconfig");
    await writeFile(
      rotatorKubeconfig,
      stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: sides.map((x) => x.cluster),
        users: sides.map((x) => x.user),
        contexts: sides.map((x) => x.context),
        "current-context": "public",
      }),
    );
    await shell([planes.public, planes.private], readmeBlock(readme, "both planes"), {
      REVOKE_AFTER: "0",
      KUBECONFIG: rotatorKubeconfig,
    });
    const third = (await mounted()).token.trim();
    assert.notEqual(third, secondToken, "the restricted rotator delivered a new token");
    assert.equal(await whoAmI(third), claims.sub);
    assert.deepEqual(
      (await core.listNamespacedSecret({ namespace: remoteNs, labelSelector: anchorSelector })).items.map(
        (s) => s.metadata?.name,
      ),
      [jwtClaims(third)["kubernetes.io"]?.secret?.name],
      "the restricted rotator revoked the older token",
    );
  });

  it("the Dockerfile builds a non-root image with runtime dependencies only", async () => {
    const dockerfile = await readFile(join(repoRoot, "Dockerfile"), "utf8");
    const lines = dockerfile
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    // Two stages: a build stage compiles src/ to dist/; the runtime stage has production dependencies only.
    const from = lines.filter((l) => l.startsWith("FROM "));
    assert.equal(from.length, 2);
    assert.match(from[0] ?? "", /^FROM \$\{NODE_IMAGE\} AS build$/);
    assert.match(from[1] ?? "", /^FROM \$\{NODE_IMAGE\}$/);
    const image = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    assert.match(image ?? "", /^node:24[.-]/, "Node 24, pinned by tag");
    const runtime = lines.slice(lines.indexOf(from[1] as string));
    const build = lines.slice(0, lines.indexOf(from[1] as string));
    assert.ok(build.includes("RUN npm run build"));
    assert.ok(runtime.some((l) => /^RUN npm ci --omit=dev\b/.test(l)));
    assert.ok(runtime.includes("COPY --from=build /build/dist/ dist/"));
    assert.doesNotMatch(dockerfile, /npm (install|i) /);
    const users = runtime.filter((l) => l.startsWith("USER "));
    assert.equal(users.length, 1);
    const uid = users[0]?.slice(5).split(":")[0];
    assert.match(uid ?? "", /^[1-9]\d*$/, "a numeric non-root uid, so runAsNonRoot can be verified");
    assert.ok(runtime.indexOf(users[0] as string) > runtime.findIndex((l) => l.startsWith("RUN ")));
    assert.ok(runtime.includes('ENTRYPOINT ["node", "dist/cli/main.js"]'));
    assert.ok(runtime.includes('CMD ["controller"]'));
    for (const path of ["package.json package-lock.json tsconfig.json tsconfig.build.json", "src/"])
      assert.ok(
        build.some((l) => l.startsWith(`COPY ${path}`)),
        `the build stage copies ${path}`,
      );
    for (const path of ["package.json package-lock.json", "crds/"])
      assert.ok(
        runtime.some((l) => l.startsWith(`COPY ${path}`)),
        `copies ${path}`,
      );
    const ignored = (await readFile(join(repoRoot, ".dockerignore"), "utf8")).split("\n");
    for (const entry of ["node_modules", ".git", "test"]) assert.ok(ignored.includes(entry), entry);
    for (const needed of [
      "src",
      "crds",
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
    ]) {
      assert.ok(!ignored.includes(needed), `${needed} is in the build context`);
    }

    // Everything src/ imports at runtime is a production dependency (npm ci --omit=dev installs it).
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const files = (await readdir(join(repoRoot, "src"), { recursive: true })).filter((f) =>
      f.endsWith(".ts"),
    );
    for (const file of files) {
      const text = await readFile(join(repoRoot, "src", file), "utf8");
      for (const [, spec] of text.matchAll(/^import (?!type )[^;]*?from "([^".][^"]*)"/gm)) {
        if (!spec || spec.startsWith("node:")) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
        assert.ok(pkg.dependencies[name as string], `src/${file} imports ${name}, not in dependencies`);
      }
    }
  });
});
