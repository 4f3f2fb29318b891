// The foundation every other test stands on: real API servers with CRDs, /status, watches, RBAC,
// and two planes that do not share state.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { createNamespace, mintIdentity, uniqueName } from "../../envtest/cluster.ts";
import { testPlanes } from "../support/planes.ts";

const group = "appstudio.redhat.com";
const version = "v1alpha1";
const plural = "internalrequests";

describe("test control planes", () => {
  const planes = testPlanes();

  it("serves our CRD: create, patch /status, and watch the events", async () => {
    const kc = planes.publicAdmin;
    const namespace = await createNamespace(kc, uniqueName("cp-watch"));
    const objects = kc.makeApiClient(CustomObjectsApi);
    const events: { type: string; obj: KubernetesObject & { status?: { pipelineRun?: string } } }[] = [];
    const sawStatus = Promise.withResolvers<void>();
    const watch = await new Watch(kc).watch(
      `/apis/${group}/${version}/namespaces/${namespace}/${plural}`,
      {},
      (type, obj) => {
        events.push({ type, obj });
        if (type === "MODIFIED" && obj.status?.pipelineRun) sawStatus.resolve();
      },
      (err) => {
        if (err) sawStatus.reject(err);
      },
    );
    try {
      const created = (await objects.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        body: {
          apiVersion: `${group}/${version}`,
          kind: "InternalRequest",
          metadata: { name: "first" },
          spec: { service: "sign-artifact", params: { digest: "sha256:abc" } },
        },
      })) as KubernetesObject;
      assert.equal(created.metadata?.name, "first");

      await objects.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          plural,
          namespace,
          name: "first",
          body: { status: { pipelineRun: "internal/first-run", results: { signature: "s" } } },
        },
        mergePatch,
      );
      await withDeadline(sawStatus.promise, 10_000, "the watch never delivered the status update");
      assert.deepEqual(
        events.map((e) => e.type),
        ["ADDED", "MODIFIED"],
      );
      const read = (await objects.getNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        name: "first",
      })) as {
        spec: { params: Record<string, string> };
        status: { results: Record<string, string> };
      };
      assert.deepEqual(read.status.results, { signature: "s" });
      assert.deepEqual(read.spec.params, { digest: "sha256:abc" });
    } finally {
      watch.abort();
    }
  });

  it("rejects an object its CRD schema forbids, with the reason", async () => {
    const kc = planes.publicAdmin;
    const namespace = await createNamespace(kc, uniqueName("cp-schema"));
    const objects = kc.makeApiClient(CustomObjectsApi);
    await assert.rejects(
      objects.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        body: {
          apiVersion: `${group}/${version}`,
          kind: "InternalRequest",
          metadata: { name: "both" },
          spec: {},
        },
      }),
      (err: { code?: number; body?: unknown }) => {
        assert.equal(err.code, 422);
        assert.match(String(err.body), /exactly one of/);
        return true;
      },
    );
  });

  it("denies a restricted identity what its Role does not grant", async () => {
    const kc = planes.publicAdmin;
    const namespace = await createNamespace(kc, uniqueName("cp-rbac"));
    const reader = await mintIdentity(planes.public, kc, {
      namespace,
      name: "reader",
      rules: [{ apiGroups: [group], resources: [plural], verbs: ["get", "list", "watch"] }],
    });
    const asReader = reader.kubeConfig.makeApiClient(CustomObjectsApi);
    const list = (await asReader.listNamespacedCustomObject({ group, version, plural, namespace })) as {
      items: unknown[];
    };
    assert.deepEqual(list.items, []);
    await assert.rejects(
      asReader.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        body: {
          apiVersion: `${group}/${version}`,
          kind: "InternalRequest",
          metadata: { name: "nope" },
          spec: { service: "x" },
        },
      }),
      (err: { code?: number; body?: unknown }) => {
        assert.equal(err.code, 403);
        const status = JSON.parse(String(err.body)) as { message: string };
        assert.match(status.message, new RegExp(`"${reader.user}" cannot create resource "${plural}"`));
        return true;
      },
    );
    await assert.rejects(reader.kubeConfig.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace }), {
      code: 403,
    });
  });

  it("keeps the public and private planes independent", async () => {
    const name = uniqueName("cp-only-public");
    await createNamespace(planes.publicAdmin, name);
    const publicCore = planes.publicAdmin.makeApiClient(CoreV1Api);
    const privateCore = planes.privateAdmin.makeApiClient(CoreV1Api);
    assert.equal((await publicCore.readNamespace({ name })).metadata?.name, name);
    await assert.rejects(privateCore.readNamespace({ name }), { code: 404 });
    assert.notEqual(planes.public.server, planes.private.server);
  });
});

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

async function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
