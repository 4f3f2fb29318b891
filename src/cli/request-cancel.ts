// `isc request cancel NAME...`: sets spec.status "Cancelled" (a merge patch); the controller cancels
// the internal PipelineRun and ends the request with reason Cancelled.
import type { InternalRequest } from "../generated/crds.ts";
import { UsageError } from "./request-errors.ts";
import type { Session, Subcommand, Values } from "./request-flags.ts";
import { isFinished, messageOf, oneLine, reasonOf } from "./request-output.ts";

const help = `Usage: isc request cancel NAME... [flags]

Cancels requests: sets spec.status to "Cancelled". The controller then cancels the request's internal
PipelineRun (or never starts one) and the request ends with reason Cancelled. A request that has
already finished is left as it is (and the command says so).
`;

export type CancelResult = "cancelled" | "already-requested" | "finished";

/** Requests cancellation of one request, unless it has finished or was cancelled already. */
export async function cancelRequest(
  session: Session,
  name: string,
): Promise<{ result: CancelResult; request: InternalRequest }> {
  const request = await session.client.get(session.namespace, name);
  if (isFinished(request)) return { result: "finished", request };
  if (request.spec?.status === "Cancelled") return { result: "already-requested", request };
  const patched = await session.client.mergePatch(session.namespace, name, { spec: { status: "Cancelled" } });
  return { result: "cancelled", request: patched };
}

export const cancelCommand: Subcommand = {
  help,
  options: {},
  async run(session: Session, _values: Values, names: string[]): Promise<number> {
    if (names.length === 0) throw new UsageError("cancel: give the name of at least one request");
    for (const name of names) {
      const { result, request } = await cancelRequest(session, name);
      if (result === "finished") {
        const message = oneLine(messageOf(request));
        process.stdout.write(
          `${name}: already finished (${reasonOf(request)}${message ? `: ${message}` : ""}); not cancelled\n`,
        );
      } else if (result === "already-requested") {
        process.stdout.write(`${name}: cancellation was already requested\n`);
      } else {
        process.stdout.write(`${name}: cancellation requested\n`);
      }
    }
    return 0;
  },
};
