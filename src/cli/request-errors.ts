// What went wrong for `isc request …`, as one line a user can act on, and the exit code: 2 for usage
// and configuration errors, 1 for API and connection errors.
import { type ApiStatus, apiStatus } from "../api/errors.ts";
import { ConfigError } from "../config/kubeconfig.ts";

/** A wrong flag or argument: exit 2, like any configuration error (every command reports it so). */
export class UsageError extends ConfigError {}

/** An error already explained in user terms (exit 1). */
export class CommandError extends Error {}

export interface ErrorContext {
  /** The API server's URL. */
  server: string;
  context?: string;
  namespace?: string;
}

export interface ExplainedError {
  message: string;
  exitCode: number;
}

/** The HTTP status code of a failed API call; undefined for transport errors. */
export const httpCode = (err: unknown) => apiStatus(err)?.code;

/** The innermost cause of a transport failure (undici's "fetch failed" wraps the socket error). */
function transportCause(err: unknown): { code?: string; message: string } | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.name === "TimeoutError") return { message: "the request timed out" };
  const ownCode = (err as { code?: unknown }).code;
  if (err.message !== "fetch failed" && !(typeof ownCode === "string" && ownCode in unreachableHints))
    return undefined;
  let cause: unknown = err;
  for (let i = 0; i < 5 && cause instanceof Error && cause.cause !== undefined; i++) cause = cause.cause;
  if (cause instanceof AggregateError && cause.errors.length > 0) cause = cause.errors[0];
  const c = cause as { code?: unknown; message?: unknown };
  return {
    code: typeof c.code === "string" ? c.code : undefined,
    message: typeof c.message === "string" && c.message ? c.message : String(cause),
  };
}

const unreachableHints: Record<string, string> = {
  ECONNREFUSED: "nothing is listening there",
  ENOTFOUND: "the host name does not resolve",
  EAI_AGAIN: "the host name could not be resolved",
  ETIMEDOUT: "the connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "the connection timed out",
  EHOSTUNREACH: "the host is unreachable",
  ENETUNREACH: "the network is unreachable",
  ECONNRESET: "the connection was reset",
};

/** Maps any error of a request command to one line (without the "isc: " prefix) and an exit code. */
export function explainError(err: unknown, ctx: ErrorContext): ExplainedError {
  if (err instanceof UsageError || err instanceof ConfigError) return { message: err.message, exitCode: 2 };
  if ((err as { code?: unknown })?.code?.toString().startsWith("ERR_PARSE_ARGS"))
    return { message: (err as Error).message, exitCode: 2 };
  if (err instanceof CommandError) return { message: err.message, exitCode: 1 };
  const failure = apiStatus(err);
  if (failure) return { message: explainHttp(failure, ctx), exitCode: 1 };
  const cause = transportCause(err);
  if (cause) {
    const hint =
      cause.message === "bad port"
        ? "fetch refuses to connect to this port"
        : cause.code
          ? unreachableHints[cause.code]
          : undefined;
    const what = hint ? `${cause.message} (${hint})` : cause.message;
    return {
      message: `cannot reach the API server ${ctx.server}${contextNote(ctx)}: ${what}; check --kubeconfig/--context and that the cluster is up and reachable`,
      exitCode: 1,
    };
  }
  return { message: err instanceof Error ? err.message : String(err), exitCode: 1 };
}

const contextNote = (ctx: ErrorContext) => (ctx.context ? ` (context "${ctx.context}")` : "");

function explainHttp(status: ApiStatus, ctx: ErrorContext): string {
  const { code, message } = status;
  switch (code) {
    case 404: {
      const details = status.details;
      if (details?.kind === "namespaces" && details.name)
        return `namespace "${details.name}" does not exist on ${ctx.server}`;
      if (details?.name) {
        const ns = ctx.namespace ? ` in namespace "${ctx.namespace}"` : "";
        return `InternalRequest "${details.name}" not found${ns}`;
      }
      // No object named: the path itself is unknown, i.e. the API group or resource is not served.
      return `the InternalRequest CRD is not installed on ${ctx.server}: kubectl apply -f crds/`;
    }
    case 401:
      return `the API server ${ctx.server} did not accept the credentials${contextNote(ctx)} (401 Unauthorized): log in again or fix the kubeconfig's user`;
    case 403:
      return `permission denied: ${message}`;
    case 409:
      return `conflict: ${message}`;
    case 422:
      return `invalid request: ${message}`;
    default:
      return `the API server ${ctx.server} answered ${code}${status.reason ? ` ${status.reason}` : ""}: ${message}`;
  }
}
