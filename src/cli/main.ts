#!/usr/bin/env node
// The `isc` command line.
import { ConfigError } from "../config/kubeconfig.ts";
import { controllerHelp, runControllerCommand } from "./controller.ts";
import { runRequestCommand } from "./request.ts";

const usage = `Usage: isc <command> [flags]

Commands:
  controller   run the Internal Service Controller (isc controller --help)
  request      create, wait for, inspect and cancel InternalRequests (isc request --help)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "controller":
      return runControllerCommand(rest);
    case "request":
      return runRequestCommand(rest);
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(`${usage}\n${controllerHelp}`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`isc: unknown command "${command}"\n\n${usage}`);
      return 2;
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`isc: ${(err as Error).message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
