// API writes, counted on the API side: each kube-apiserver writes an audit event (Metadata level, only
// create/update/patch/delete/deletecollection, stage ResponseComplete) to stdout, which the control-plane
// harness sends to that plane's kube-apiserver.log. The log backend is blocking, so an event is written
// before its response is sent: once a client has its answer, the write is in the file.
import { open, stat } from "node:fs/promises";
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
}

export type AuditMark = Record<PlaneName, number>;

const emptyCounts = (): WriteCounts => ({ total: 0, failed: 0, byKind: {}, failedByKind: {} });

export class AuditLog {
  readonly #files: Record<PlaneName, string>;
  readonly #controllerUser: string;
  readonly #benchUser: string;

  constructor(files: Record<PlaneName, string>, controllerUser: string, benchUser: string) {
    this.#files = files;
    this.#controllerUser = controllerUser;
    this.#benchUser = benchUser;
  }

  async mark(): Promise<AuditMark> {
    const [pub, priv] = await Promise.all([stat(this.#files.public), stat(this.#files.private)]);
    return { public: pub.size, private: priv.size };
  }

  /** Writes since `mark`, by who made them and what they were. */
  async since(mark: AuditMark): Promise<AuditWindow> {
    const window: AuditWindow = { controller: emptyCounts(), bench: emptyCounts(), other: emptyCounts() };
    for (const plane of ["public", "private"] as const) {
      for (const event of await this.#read(plane, mark[plane])) {
        if (event.kind !== "Event" || event.stage !== "ResponseComplete") continue;
        const user = event.user?.username;
        const counts =
          user === this.#controllerUser
            ? window.controller
            : user === this.#benchUser
              ? window.bench
              : window.other;
        const ref = event.objectRef ?? {};
        const kind = `${plane} ${event.verb} ${ref.resource ?? "?"}${ref.subresource ? `/${ref.subresource}` : ""}`;
        counts.total++;
        counts.byKind[kind] = (counts.byKind[kind] ?? 0) + 1;
        if ((event.responseStatus?.code ?? 0) >= 400) {
          counts.failed++;
          counts.failedByKind[kind] = (counts.failedByKind[kind] ?? 0) + 1;
        }
      }
    }
    return window;
  }

  async #read(plane: PlaneName, from: number): Promise<AuditEvent[]> {
    const file = await open(this.#files[plane], "r");
    try {
      const { size } = await file.stat();
      const length = Math.max(0, size - from);
      const buffer = Buffer.alloc(length);
      let read = 0;
      while (read < length) {
        const { bytesRead } = await file.read(buffer, read, length - read, from + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      const events: AuditEvent[] = [];
      for (const line of buffer.subarray(0, read).toString().split("\n")) {
        if (!line.startsWith('{"kind":"Event"')) continue; // klog lines share the file
        try {
          events.push(JSON.parse(line) as AuditEvent);
        } catch {
          // a line still being written at the end of the file
        }
      }
      return events;
    } finally {
      await file.close();
    }
  }
}
