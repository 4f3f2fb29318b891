// Failed API calls carry `.code` and a `.body` that may be a raw JSON string: http.ts's ApiError, and
// client-node 2.x's ApiException (tests' clients).

export interface ApiStatus {
  code: number;
  reason: string;
  message: string;
  /** Which object the failure is about; absent when the path itself is unknown (e.g. a CRD not installed). */
  details?: { name?: string; kind?: string; group?: string };
}

/** The Kubernetes Status carried by a failed API call, or undefined for transport errors. */
export function apiStatus(err: unknown): ApiStatus | undefined {
  if (err === null || typeof err !== "object") return undefined;
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown };
  const code =
    typeof e.code === "number" ? e.code : typeof e.statusCode === "number" ? e.statusCode : undefined;
  if (code === undefined) return undefined;
  let body = e.body;
  if (typeof body === "string") {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text.trim() };
    }
  }
  const status = (body !== null && typeof body === "object" ? body : {}) as Partial<ApiStatus>;
  // Never fall back to the exception's text: it carries the raw response with headers.
  return {
    code,
    reason: status.reason ?? "",
    message: status.message || `HTTP ${code}`,
    ...(status.details ? { details: status.details } : {}),
  };
}

/**
 * The named object does not exist. A 404 that names no object means the resource itself is not
 * served — CRDs not installed, or an API server still starting up after a restart, before its CRD
 * handlers are in place — and must not be taken as "deleted" (that would fail a running request).
 */
export const isNotFound = (err: unknown) => {
  const status = apiStatus(err);
  return status?.code === 404 && Boolean(status.details?.name);
};
export const isConflict = (err: unknown) => apiStatus(err)?.code === 409;

/** The call's result, or undefined when the object it names does not exist. */
export async function ignoreNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** A one-line description for logs and messages, without headers or bodies. */
export function describeError(err: unknown): string {
  const status = apiStatus(err);
  if (status) return `${status.code} ${status.reason}: ${status.message}`.trim();
  return err instanceof Error ? err.message : String(err);
}
