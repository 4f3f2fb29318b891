// The remote credential rotating under load, on the real planes. The controller runs as a process
// whose kubeconfig names a token file (tokenFile), which the test updates the way kubelet updates a
// mounted Secret (a new directory, then a symlink swap). Each token comes from the TokenRequest API,
// bound to a Secret of its own: deleting that Secret revokes it. A proxy between the controller and
// the public API server records every answer and which token the request carried. Checked: no
// request is lost and every one finishes, a rotation costs no failed call, a credential revoked
// before its successor arrives fails calls only until the successor is in place (then each refused
// call is refused at most once more, and its next try succeeds), progress never stalls for long, and
// the process is never restarted.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1ClusterRole,
} from "@kubernetes/client-node";
import { stringify } from "yaml";
import { applyObjects, createNamespace, readYamlObjects, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import { internalRequests } from "../../src/api/resources.ts";
import type { InternalRequest, InternalServiceSpec } from "../../src/generated/crds.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { Reflector } from "../../src/runtime/reflector.ts";
import { writeLikeKubelet } from "../support/atomic-writer.ts";
import { FaultProxy, type ProxiedAnswer } from "../support/fault-proxy.ts";
import { Fixture } from "../support/fixture.ts";
import { testPlanes } from "../support/planes.ts";
import { ControllerProcess } from "../support/process.ts";

const service: InternalServiceSpec = { pipeline: { pipelineName: "advise" } };
/** Requests kept in flight: a new one is created whenever one finishes. */
const inFlight = 4;
/** Requests finished per phase, besides those finished while waiting on a revocation. */
const perPhase = 25;
/** The shortest lifetime TokenRequest grants. */
const tokenSeconds = 600;

interface Token {
  label: string;
  token: string;
  anchor: string;
  lifetimeSeconds: number;
}

/** An answer as recorded: which of the test's tokens the request carried, not the token itself. */
type Answer = Omit<ProxiedAnswer, "authorization"> & { token: string };

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** The longest gap between consecutive times in [from, to] (the window's ends count as times). */
function longestGap(times: number[], from: number, to: number): number {
  const inside = [from, ...times.filter((t) => t >= from && t <= to), to];
  let gap = 0;
  for (let i = 1; i < inside.length; i++)
    gap = Math.max(gap, (inside[i] as number) - (inside[i - 1] as number));
  return gap;
}

describe("rotating the remote credential", { timeout: 300_000 }, () => {
  const planes = testPlanes();
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it("a token swapped in as kubelet does and the old one revoked, under load: nothing lost, no restart", async (t) => {
    const f = await Fixture.create({
      config: (ns) => ({ allowList: ns }),
      services: { advise: service },
      startController: false,
    });
    cleanups.push(() => f.stop());
    const ns = f.namespaces[0] as string;

    // The remote identity: a ServiceAccount bound to the shipped ClusterRole in the tenant namespace.
    const [role] = (await readYamlObjects(
      fileURLToPath(new URL("../../deploy/public/rbac.yaml", import.meta.url)),
    )) as V1ClusterRole[];
    await applyObjects(planes.publicAdmin, [role as V1ClusterRole]);
    const core = planes.publicAdmin.makeApiClient(CoreV1Api);
    const saNs = await createNamespace(planes.publicAdmin, uniqueName("isc-remote"));
    const sa = "isc-remote";
    await core.createNamespacedServiceAccount({ namespace: saNs, body: { metadata: { name: sa } } });
    await planes.publicAdmin.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: sa },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: role?.metadata?.name as string,
        },
        subjects: [{ kind: "ServiceAccount", name: sa, namespace: saNs }],
      },
    });

    const tokens: Token[] = [];
    /** A TokenRequest token bound to a new Secret, which is deleted to revoke it. */
    const mint = async (label: string): Promise<Token> => {
      const anchor = `${sa}-${label.toLowerCase()}`;
      const secret = await core.createNamespacedSecret({
        namespace: saNs,
        body: { metadata: { name: anchor }, type: "Opaque" },
      });
      const request = await core.createNamespacedServiceAccountToken({
        name: sa,
        namespace: saNs,
        body: {
          spec: {
            audiences: [],
            expirationSeconds: tokenSeconds,
            boundObjectRef: { apiVersion: "v1", kind: "Secret", name: anchor, uid: secret.metadata?.uid },
          },
        },
      });
      const token = request.status?.token as string;
      const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as {
        iat: number;
        exp: number;
      };
      const minted = { label, token, anchor, lifetimeSeconds: claims.exp - claims.iat };
      tokens.push(minted);
      return minted;
    };
    const labelOf = (authorization: string) =>
      tokens.find((k) => authorization === `Bearer ${k.token}`)?.label ?? (authorization ? "other" : "none");
    /** Who the API server takes a token for, asked directly (not through the proxy): a name, or 401. */
    const whoAmI = (token: Token) => {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [
          { name: "c", server: planes.public.server, caData: b64(planes.public.caPem), skipTLSVerify: false },
        ],
        users: [{ name: "u", token: token.token }],
        contexts: [{ name: "c", cluster: "c", user: "u" }],
        currentContext: "c",
      });
      return kc
        .makeApiClient(AuthenticationV1Api)
        .createSelfSubjectReview({ body: {} })
        .then(
          (r) => r.status?.userInfo?.username,
          (err: { code?: number }) => err.code,
        );
    };

    const proxy = await FaultProxy.start(planes.public);
    cleanups.push(() => proxy.stop());
    const answers: Answer[] = [];
    proxy.onAnswer = ({ authorization, ...answer }) =>
      answers.push({ ...answer, token: labelOf(authorization) });

    // The Secret volume: the kubeconfig (through the proxy) names the token file beside it.
    const dir = await mkdtemp(join(tmpdir(), "isc-rotation-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const mount = join(dir, "remote");
    const kubeconfig = stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "public", cluster: { server: proxy.url, "certificate-authority-data": b64(proxy.caPem) } },
      ],
      users: [{ name: sa, user: { tokenFile: "token" } }],
      contexts: [{ name: "public", context: { cluster: "public", user: sa } }],
      "current-context": "public",
    });
    /** Puts a token in place as kubelet does; the times it started and was done. */
    const mountToken = async (token: Token) => {
      const begun = Date.now();
      await writeLikeKubelet(mount, { kubeconfig, token: `${token.token}\n` });
      return { begun, done: Date.now() };
    };

    const a = await mint("A");
    await mountToken(a);
    const executor = f.tekton.autoComplete(20);
    cleanups.push(() => executor.stop());
    const controller = await ControllerProcess.start({
      remoteKubeconfig: join(mount, "kubeconfig"),
      workspaces: [`public=${ns}`],
      privateKubeconfig: planes.private.kubeconfigPath,
      namespace: f.privateNs,
      extraArgs: ["--leader-elect=false"],
    });
    cleanups.push(() => controller.kill());
    const pid = controller.child.pid;
    await controller.waitForReady(60_000);

    // Progress: every write the controller makes to a request, seen on a watch of its own (directly
    // on the API server). Load: `inFlight` requests at all times until the end.
    const progress: number[] = [];
    const versions = new Map<string, string | undefined>();
    const finished = new Map<string, string>();
    let created = 0;
    let loading = true;
    const createErrors: unknown[] = [];
    const createNext = () => {
      if (!loading) return;
      f.createRequest(`r-${created++}`, { service: "advise" }).catch((err: unknown) =>
        createErrors.push(err),
      );
    };
    const watcher = new Reflector<InternalRequest>({
      kubeConfig: planes.publicAdmin,
      type: internalRequests,
      namespace: ns,
      log: silentLogger,
    });
    watcher.subscribe((key, r) => {
      const version = r.metadata?.resourceVersion;
      if (versions.has(key) && versions.get(key) !== version) progress.push(Date.now());
      versions.set(key, version);
      const condition = r.status?.conditions?.[0];
      if (condition && condition.status !== "Unknown" && !finished.has(key)) {
        finished.set(key, condition.reason);
        createNext();
      }
    });
    await watcher.start();
    cleanups.push(async () => watcher.stop());
    const started = Date.now();
    for (let i = 0; i < inFlight; i++) createNext();
    const finishMore = (n: number, what: string) => {
      const target = finished.size + n;
      return eventually(() => finished.size >= target, `${n} more requests finished (${what})`, 60_000);
    };

    await finishMore(perPhase, "with token A");
    const baselineEnd = Date.now();

    // 1. The usual order: B is put in place, then A is revoked.
    const b = await mint("B");
    const { begun: swappingB, done: swappedB } = await mountToken(b);
    const firstOk = (token: string) => answers.find((x) => x.token === token && x.status < 400)?.at;
    const firstB = await eventually(
      () => firstOk("B"),
      "the controller's first successful call with token B",
    );
    await core.deleteNamespacedSecret({ name: a.anchor, namespace: saNs });
    const revokedA = Date.now();
    await eventually(async () => (await whoAmI(a)) === 401, "token A rejected", 30_000, 100);
    const rejectedA = Date.now();
    // Watches opened with A outlive it: cut every connection, so they open again, with B.
    proxy.dropAll();
    await finishMore(perPhase, "after every connection was cut");
    const phase1End = Date.now();

    // 2. Revoked before its successor is there: B is revoked, and calls fail with 401 and back off,
    // watches too (every connection is cut, so they must open again), until C is put in place.
    const c = await mint("C");
    await core.deleteNamespacedSecret({ name: b.anchor, namespace: saNs });
    const revokedB = Date.now();
    const refused = () => answers.filter((x) => x.status === 401 && x.at >= revokedB);
    const first401 = await eventually(
      () => refused()[0]?.at,
      "the controller's first 401 with token B revoked",
      30_000,
    );
    proxy.dropAll();
    await eventually(
      () => refused().length >= 20 && refused().some((x) => x.watch),
      "20 calls refused with 401, a watch among them",
      30_000,
    );
    const { begun: swappingC, done: swappedC } = await mountToken(c);
    await finishMore(perPhase, "with token C");

    loading = false;
    await eventually(() => finished.size === created, "every request created finished", 60_000);
    const end = Date.now();
    assert.deepEqual(createErrors, []);

    // Nothing lost: every request there is finished, Succeeded, once.
    const all = (await f.requests.list(ns)).items;
    assert.equal(all.length, created, "no request lost or added");
    const reasons = new Map<string, number>();
    for (const r of all) {
      const reason = r.status?.conditions?.[0]?.reason ?? "(none)";
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(reasons), { Succeeded: created });

    // The same process throughout.
    assert.equal(controller.child.pid, pid);
    assert.equal(controller.child.exitCode, null, `the controller exited:\n${controller.logs}`);
    assert.equal(controller.child.signalCode, null);
    assert.equal(controller.logs.match(/"msg":"starting"/g)?.length, 1, "started once");
    assert.equal((await controller.get("/readyz")).status, 200);

    // Credentials: which token each call carried, and the 401s.
    const unauthorized = answers.filter((x) => x.status === 401);
    assert.equal(
      unauthorized.filter((x) => x.at < revokedB).length,
      0,
      "a rotation in the usual order fails no call",
    );
    assert.deepEqual(
      [...new Set(unauthorized.map((x) => x.token))],
      unauthorized.length ? ["B"] : [],
      "only the revoked token was refused",
    );
    assert.ok(
      answers.every((x) => ["A", "B", "C"].includes(x.token)),
      "every call carried one of the tokens",
    );
    // After each swap, the old token only on calls made before it (arriving within a moment).
    const late = (token: string, swapped: number) =>
      answers.filter((x) => x.token === token && x.at > swapped);
    for (const [token, swapped] of [
      ["A", swappedB],
      ["B", swappedC],
    ] as const) {
      const stragglers = late(token, swapped);
      assert.ok(
        stragglers.every((x) => x.at - swapped < 1_000),
        `token ${token} used ${stragglers.length} times after its successor was mounted`,
      );
    }
    // Once C is in place, a call refused with 401 is refused at most once more (a try already under
    // way with B), and its next try carries C and succeeds: no stretch of 401s beyond one retry.
    // Counted from when the swap began: the controller reads the file on every call, so a retry may
    // carry C (and be answered) before the swap's last write returns.
    const refusedCalls = new Set(unauthorized.map((x) => `${x.method} ${x.path}`));
    let refusalsAfterSwap = 0;
    const retries = [...refusedCalls].flatMap((call) => {
      const tries = answers.filter((x) => `${x.method} ${x.path}` === call && x.at >= swappingC);
      const next = tries.findIndex((x) => x.status !== 401);
      // A read need not be made again: the retried reconcile may find what it needs in the cache by
      // then (every request's outcome is checked above). A refused write is always made again.
      if (next < 0 && call.startsWith("GET ") && tries.length === 0) return [];
      assert.ok(next >= 0, `${call}, refused with 401, was retried`);
      assert.ok(next <= 1, `${call}: refused ${next} times after C was mounted`);
      refusalsAfterSwap = Math.max(refusalsAfterSwap, next);
      const retry = tries[next] as Answer;
      assert.ok(
        retry.status < 400 || retry.status === 404 || retry.status === 409,
        `${call}: ${retry.status}`,
      );
      assert.equal(retry.token, "C");
      return [retry.at - swappingC];
    });

    // Stalls: the longest time without a write to any request, per phase.
    const baselineGap = longestGap(progress, started, baselineEnd);
    const phase1Gap = longestGap(progress, swappedB, phase1End);
    const recoveryGap = longestGap(progress, swappedC, end);
    const firstProgressAfterC = (progress.find((p) => p >= swappedC) ?? end) - swappedC;
    // No longer than the load stalls anyway (its own longest gap), or 2 s.
    assert.ok(
      phase1Gap < Math.max(2_000, 2 * baselineGap),
      `longest stall during the rotation: ${phase1Gap} ms (baseline ${baselineGap} ms)`,
    );
    // Bounded by the backoff the refused calls had reached (watches: 200 ms, doubling per failure).
    assert.ok(recoveryGap < 5_000, `longest stall once C was in place: ${recoveryGap} ms`);
    assert.ok(Math.max(0, ...retries) < 5_000, "every refused call succeeded within 5 s of the swap");

    const counts = (from: number, to: number) => answers.filter((x) => x.at >= from && x.at < to).length;
    const logged401 = controller.logs
      .split("\n")
      .filter((l) => /retry/.test(l) && /401|Unauthorized/.test(l)).length;
    const figures = {
      requests: created,
      apiCalls: {
        total: answers.length,
        withA: answers.filter((x) => x.token === "A").length,
        withB: answers.filter((x) => x.token === "B").length,
        withC: answers.filter((x) => x.token === "C").length,
        rotation: counts(swappedB, phase1End),
        revokedFirst: counts(revokedB, end),
      },
      unauthorized: {
        total: unauthorized.length,
        watches: unauthorized.filter((x) => x.watch).length,
        calls: refusedCalls.size,
        loggedRetries: logged401,
        firstAfterRevocationMs: first401 - revokedB,
        untilSwapMs: swappedC - first401,
        mostPerCallAfterSwap: refusalsAfterSwap,
      },
      oldTokenAfterSwap: { A: late("A", swappedB).length, B: late("B", swappedC).length },
      firstOkCallWithBAfterSwapMs: firstB - swappingB,
      firstOkCallWithCAfterSwapMs: (firstOk("C") ?? end) - swappingC,
      revocationTakesEffectMs: rejectedA - revokedA,
      longestStallMs: {
        baseline: baselineGap,
        rotation: phase1Gap,
        revokedFirstUntilSwap: longestGap(progress, revokedB, swappedC),
        afterSwap: recoveryGap,
      },
      firstProgressAfterSwapMs: firstProgressAfterC,
      slowestRetryAfterSwapMs: Math.max(0, ...retries),
      tokenLifetimesSeconds: tokens.map((k) => k.lifetimeSeconds),
      durationSeconds: Math.round((end - started) / 1000),
    };
    t.diagnostic(JSON.stringify(figures));
    for (const k of tokens) assert.equal(k.lifetimeSeconds, tokenSeconds, `token ${k.label} lifetime`);
  });
});
