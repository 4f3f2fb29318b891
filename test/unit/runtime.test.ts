import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { ApiException } from "@kubernetes/client-node";
import { Counter, Registry } from "prom-client";
import { apiStatus, describeError, isConflict, isNotFound } from "../../src/api/errors.ts";
import { microTime } from "../../src/runtime/leader.ts";
import { isNewerVersion, trimForCache } from "../../src/runtime/reflector.ts";
import { parseAddress, startProbeServer } from "../../src/runtime/server.ts";

describe("parseAddress", () => {
  const valid: [string, { host: string; port: number }][] = [
    [":8080", { host: "0.0.0.0", port: 8080 }],
    ["127.0.0.1:0", { host: "127.0.0.1", port: 0 }],
    ["[::1]:9090", { host: "::1", port: 9090 }],
    ["localhost:65535", { host: "localhost", port: 65535 }],
  ];
  for (const [address, want] of valid)
    test(`parses ${JSON.stringify(address)}`, () => assert.deepEqual(parseAddress(address), want));

  for (const address of ["localhost", "127.0.0.1:http", ":65536", ":-1", ":80.5", "[::1]", "host:8080x"])
    test(`rejects ${JSON.stringify(address)}`, () =>
      assert.throws(() => parseAddress(address), /invalid address .*want host:port/));

  for (const address of ["", ":", "127.0.0.1:"])
    test(`rejects ${JSON.stringify(address)} (no port)`, () =>
      assert.throws(() => parseAddress(address), /invalid address/));
});

describe("startProbeServer", () => {
  test("serves /healthz, /readyz, /metrics and 404s unknown paths", async () => {
    let ready = false;
    const registry = new Registry();
    const counter = new Counter({ name: "isc_test_total", help: "a test counter", registers: [registry] });
    counter.inc(3);
    const server = await startProbeServer({ address: "127.0.0.1:0", isReady: () => ready, registry });
    try {
      const { address, port } = server.address() as AddressInfo;
      assert.equal(address, "127.0.0.1");
      assert.ok(port > 0);
      const get = async (path: string) => {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
      };

      assert.deepEqual(await get("/healthz"), { status: 200, body: "ok", type: "text/plain" });
      assert.equal((await get("/readyz")).status, 503);
      ready = true;
      assert.deepEqual(await get("/readyz?verbose"), { status: 200, body: "ok", type: "text/plain" });

      const metrics = await get("/metrics");
      assert.equal(metrics.status, 200);
      assert.equal(metrics.type, registry.contentType);
      assert.equal(metrics.body, await registry.metrics());
      assert.match(metrics.body, /^isc_test_total 3$/m);

      assert.equal((await get("/nope")).status, 404);
      assert.equal((await get("/")).status, 404);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    }
  });

  test("without a registry /metrics is 404", async () => {
    const server = await startProbeServer({ address: "127.0.0.1:0", isReady: () => true });
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      await res.text();
      assert.equal(res.status, 404);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    }
  });
});

describe("microTime", () => {
  const MICRO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

  test("has exactly six fractional digits and a Z", () => {
    assert.equal(microTime(new Date("2024-02-03T04:05:06.789Z")), "2024-02-03T04:05:06.789000Z");
    assert.equal(microTime(new Date("2024-02-03T04:05:06Z")), "2024-02-03T04:05:06.000000Z");
    assert.match(microTime(), MICRO);
  });

  test("parses back to the same instant", () => {
    const d = new Date("2031-12-31T23:59:59.001Z");
    assert.equal(new Date(microTime(d)).getTime(), d.getTime());
  });
});

describe("apiStatus / describeError", () => {
  const status = { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 };

  test("body as a JSON string (client-node 2.x)", () => {
    const err = new ApiException(
      404,
      "Not Found",
      JSON.stringify({
        ...status,
        message: 'leases "x" not found',
        details: { name: "x", group: "coordination.k8s.io", kind: "leases" },
      }),
      {},
    );
    assert.deepEqual(apiStatus(err), {
      code: 404,
      reason: "NotFound",
      message: 'leases "x" not found',
      details: { name: "x", group: "coordination.k8s.io", kind: "leases" },
    });
    assert.equal(describeError(err), '404 NotFound: leases "x" not found');
    assert.equal(isNotFound(err), true);
    assert.equal(isConflict(err), false);
  });

  test("a 404 that names no object is an unserved resource, not a missing object", () => {
    // What a starting API server answers before its CRD handlers exist, and what a cluster without
    // the CRDs answers: neither says the object is gone.
    const unserved = new ApiException(
      404,
      "Not Found",
      JSON.stringify({ ...status, message: "the server could not find the requested resource", details: {} }),
      {},
    );
    assert.equal(isNotFound(unserved), false);
    assert.equal(isNotFound(new ApiException(404, "Not Found", "404 page not found", {})), false);
  });

  test("body as an object", () => {
    const err = { code: 409, body: { reason: "Conflict", message: "the object has been modified" } };
    assert.deepEqual(apiStatus(err), {
      code: 409,
      reason: "Conflict",
      message: "the object has been modified",
    });
    assert.equal(describeError(err), "409 Conflict: the object has been modified");
    assert.equal(isConflict(err), true);
    assert.equal(isNotFound(err), false);
  });

  test("statusCode instead of code", () => {
    const err = { statusCode: 410, body: { reason: "Expired", message: "too old resource version" } };
    assert.equal(apiStatus(err)?.code, 410);
  });

  test("body as a non-JSON string becomes the message", () => {
    const err = new ApiException(502, "Bad Gateway", "upstream connect error", {});
    assert.deepEqual(apiStatus(err), { code: 502, reason: "", message: "upstream connect error" });
    assert.match(describeError(err), /^502\b.*upstream connect error$/);
  });

  test("transport errors without a numeric code are not API statuses", () => {
    const err = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" });
    assert.equal(apiStatus(err), undefined);
    assert.equal(isNotFound(err), false);
    assert.equal(describeError(err), "connect ECONNREFUSED 127.0.0.1:6443");
    assert.equal(describeError("plain string"), "plain string");
  });

  test("a thrown undefined or null is described, not a TypeError", () => {
    assert.equal(apiStatus(undefined), undefined);
    assert.equal(describeError(undefined), "undefined");
    assert.equal(describeError(null), "null");
  });

  test("an ApiException without a message in its body is described without its headers", () => {
    const err = new ApiException(503, "Service Unavailable", undefined, { "audit-id": "secret-ish" });
    assert.doesNotMatch(describeError(err), /Headers|audit-id/);
  });
});

describe("trimForCache", () => {
  test("drops managedFields and kubectl's last-applied copy, keeps everything a reconcile reads", () => {
    const obj = {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: {
        name: "r",
        namespace: "ns",
        uid: "u1",
        resourceVersion: "7",
        finalizers: ["f"],
        labels: { a: "1" },
        annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{...}", keep: "yes" },
        managedFields: [{ manager: "kubectl", operation: "Update" as const }],
      },
      spec: { service: "s" },
    };
    const trimmed = trimForCache(structuredClone(obj));
    assert.equal(trimmed.metadata.managedFields, undefined);
    assert.deepEqual(trimmed.metadata.annotations, { keep: "yes" });
    assert.deepEqual(
      { ...trimmed.metadata },
      {
        name: "r",
        namespace: "ns",
        uid: "u1",
        resourceVersion: "7",
        finalizers: ["f"],
        labels: { a: "1" },
        annotations: { keep: "yes" },
      },
    );
    assert.deepEqual(trimmed.spec, obj.spec);
  });

  test("objects without metadata or annotations pass through", () => {
    assert.deepEqual(trimForCache({ kind: "X" }), { kind: "X" });
    assert.deepEqual(trimForCache({ metadata: { name: "n" } }), { metadata: { name: "n" } });
  });
});

describe("isNewerVersion", () => {
  test("compares etcd revisions as integers, not as strings", () => {
    assert.equal(isNewerVersion("10", "9"), true);
    assert.equal(isNewerVersion("9", "10"), false);
    assert.equal(isNewerVersion("123457", "123456"), true);
    assert.equal(isNewerVersion("123456", "123456"), false);
  });

  test("anything that is not an integer, or missing, is never newer", () => {
    assert.equal(isNewerVersion("abc", "1"), false);
    assert.equal(isNewerVersion("2", "x1"), false);
    assert.equal(isNewerVersion(undefined, "1"), false);
    assert.equal(isNewerVersion("2", undefined), false);
  });
});
