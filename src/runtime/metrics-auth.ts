// Who may read /metrics on the secure listener, as controller-runtime's secure metrics decide it: the
// bearer token is authenticated by the API server (TokenReview), and its user must be allowed `get` on
// the non-resource URL /metrics (SubjectAccessReview), the RBAC Prometheus is usually given. Decisions
// are kept briefly per token, and reviews run a few at a time, so a flood of made-up tokens costs the
// API server a bounded number of calls.
import { createHash } from "node:crypto";
import type { V1SubjectAccessReview, V1TokenReview } from "@kubernetes/client-node";
import { call } from "../api/http.ts";
import type { KubeConfig } from "../config/kubeconfig.ts";

/** 200 allowed, 401 no valid token, 403 valid but not allowed, 429 too many reviews at once,
 *  503 the API server could not be asked. */
export type Decision = 200 | 401 | 403 | 429 | 503;

const ttlMs = 10_000;
const maxCached = 256;
const maxReviewsInFlight = 4;

export class MetricsAuthorizer {
  readonly #kc: KubeConfig;
  readonly #now: () => number;
  /** By token digest, oldest first. */
  readonly #decided = new Map<string, { decision: Decision; until: number }>();
  #inFlight = 0;

  constructor(kubeConfig: KubeConfig, now: () => number = Date.now) {
    this.#kc = kubeConfig;
    this.#now = now;
  }

  async decide(authorization: string | undefined): Promise<Decision> {
    const token = /^Bearer (\S+)$/i.exec(authorization ?? "")?.[1];
    if (!token) return 401;
    const digest = createHash("sha256").update(token).digest("hex");
    const known = this.#decided.get(digest);
    if (known && known.until > this.#now()) return known.decision;
    if (this.#inFlight >= maxReviewsInFlight) return 429;
    this.#inFlight++;
    let decision: Decision;
    try {
      decision = await this.#review(token);
    } catch {
      return 503; // not remembered: the next scrape asks again
    } finally {
      this.#inFlight--;
    }
    this.#decided.delete(digest);
    this.#decided.set(digest, { decision, until: this.#now() + ttlMs });
    if (this.#decided.size > maxCached) this.#decided.delete(this.#decided.keys().next().value as string);
    return decision;
  }

  async #review(token: string): Promise<Decision> {
    const review = await call<V1TokenReview>(
      this.#kc,
      "POST",
      "/apis/authentication.k8s.io/v1/tokenreviews",
      {
        body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } },
      },
    );
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username) return 401;
    const access = await call<V1SubjectAccessReview>(
      this.#kc,
      "POST",
      "/apis/authorization.k8s.io/v1/subjectaccessreviews",
      {
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            nonResourceAttributes: { path: "/metrics", verb: "get" },
          },
        },
      },
    );
    return access.status?.allowed ? 200 : 403;
  }
}
