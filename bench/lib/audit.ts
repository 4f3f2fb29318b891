// API writes, counted on the API side: each kube-apiserver writes an audit event (Metadata level, only
// create/update/patch/delete/deletecollection, stage ResponseComplete) to stdout, which the control-plane
// harness sends to that plane's kube-apiserver.log. The log backend is blocking, so an event is written
// before its response is sent: once a client has its answer, the write is in the file.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { PlaneName } from "../../envtest/controlplane.ts";

export const auditPolicyYaml = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
`;

/** Flags for both planes; "-" sends the events to stdout, i.e. each plane's own log file. */
export const auditArgs = (policyFile: string) => [
  `--audit-policy-file=${policyFile}`,
  "--audit-log-path=-",
  "--audit-log-maxsize=0",
  "--audit-log-mode=blocking",
];

interface AuditEvent {
  kind?: string;
  stage?: string;
  verb?: string;
  user?: { username?: string };
  impersonatedUser?: { username?: string; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
}

export interface WriteCounts {
  total: number;
  /** Answered with an HTTP error (409 conflicts, 404s, ...): still load on the API. */
  failed: number;
  /** "<plane> <verb> <resource>[/<subresource>]" → count. */
  byKind: Record<string, number>;
  failedByKind: Record<string, number>;
}

export interface AuditWindow {
  controller: WriteCounts;
  bench: WriteCounts;
  other: WriteCounts;
  /**
   * Writes the server made on the controller's behalf, impersonating it (kcp's virtual workspace
   * forwards each write to the shard that way: a second, internal request). Also counted in `other`.
   */
  forwarded: WriteCounts;
  /**
   * kcp: the warrants those forwarded requests carried (the `authorization.kcp.io/warrant` values of
   * the impersonated user), summed and the most on one.
   */
  forwardedWarrants: { sum: number; max: number };
}

const warrantKey = "authorization.kcp.io/warrant";

export type AuditMark = Record<PlaneName, number>;

const emptyCounts = (): WriteCounts => ({ total: 0, failed: 0, byKind: {}, failedByKind: {} });

/** A user name, the same on both planes, or one per plane. */
export type PlaneUser = string | Record<PlaneName, string>;

export class AuditLog {
  readonly #files: Record<PlaneName, string>;
  readonly #controllerUser: Record<PlaneName, string>;
  readonly #benchUser: Record<PlaneName, string>;

  /**
   * `files`: each plane's audit log ("public" is the remote side the requests live on: a
   * kube-apiserver, or kcp).
   */
  constructor(files: Record<PlaneName, string>, controllerUser: PlaneUser, benchUser: PlaneUser) {
    const perPlane = (u: PlaneUser) => (typeof u === "string" ? { public: u, private: u } : u);
    this.#files = files;
    this.#controllerUser = perPlane(controllerUser);
    this.#benchUser = perPlane(benchUser);
  }

  async mark(): Promise<AuditMark> {
    const [pub, priv] = await Promise.all([stat(this.#files.public), stat(this.#files.private)]);
    return { public: pub.size, private: priv.size };
  }

  /** Writes since `mark`, by who made them and what they were. */
  async since(mark: AuditMark): Promise<AuditWindow> {
    const window: AuditWindow = {
      controller: emptyCounts(),
      bench: emptyCounts(),
      other: emptyCounts(),
      forwarded: emptyCounts(),
      forwardedWarrants: { sum: 0, max: 0 },
    };
    for (const plane of ["public", "private"] as const) {
      await this.#read(plane, mark[plane], (event) => {
        if (event.kind !== "Event" || event.stage !== "ResponseComplete") return;
        const user = event.user?.username;
        const counts =
          user === this.#controllerUser[plane]
            ? window.controller
            : user === this.#benchUser[plane]
              ? window.bench
              : window.other;
        const ref = event.objectRef ?? {};
        const kind = `${plane} ${event.verb} ${ref.resource ?? "?"}${ref.subresource ? `/${ref.subresource}` : ""}`;
        const failed = (event.responseStatus?.code ?? 0) >= 400;
        const add = (c: WriteCounts) => {
          c.total++;
          c.byKind[kind] = (c.byKind[kind] ?? 0) + 1;
          if (failed) {
            c.failed++;
            c.failedByKind[kind] = (c.failedByKind[kind] ?? 0) + 1;
          }
        };
        add(counts);
        if (counts === window.other && event.impersonatedUser?.username === this.#controllerUser[plane]) {
          add(window.forwarded);
          const warrants = event.impersonatedUser.extra?.[warrantKey]?.length ?? 0;
          window.forwardedWarrants.sum += warrants;
          window.forwardedWarrants.max = Math.max(window.forwardedWarrants.max, warrants);
        }
      });
    }
    return window;
  }

  /**
   * The events written since `from`, line by line (kcp's can be tens of kilobytes each: the window is
   * never read into one string). A line still being written at the end is skipped.
   */
  async #read(plane: PlaneName, from: number, onEvent: (event: AuditEvent) => void): Promise<void> {
    const size = (await stat(this.#files[plane])).size;
    // Smaller than at the mark: rotated or truncated, and the counts would be short.
    if (size < from) throw new Error(`${this.#files[plane]} shrank since the mark: rotated or truncated?`);
    if (size === from) return;
    const lines = createInterface({
      input: createReadStream(this.#files[plane], { start: from, end: size - 1 }),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    for await (const line of lines) {
      if (!line.startsWith('{"kind":"Event"')) continue; // klog lines share the file
      try {
        onEvent(JSON.parse(line) as AuditEvent);
      } catch {
        // a line still being written at the end of the file
      }
    }
  }
}
