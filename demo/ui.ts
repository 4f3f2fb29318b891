// What the demos print, and how they wait for a stage: shared by `npm run demo` and its --kcp variant.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

const stageTimeoutMs = 120_000;

export const say = (line = "") => process.stdout.write(`${line}\n`);
export const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

export function step(n: number, text: string, of = 5) {
  say(bold(`[${n}/${of}] ${text}`));
}

export function done(since: number) {
  say(`      ready in ${((Date.now() - since) / 1000).toFixed(1)}s`);
}

export function event(text: string) {
  say(`      → ${text}`);
}

export const short = (s: string) => (s.length > 24 ? `${s.slice(0, 24)}…` : s);

/** Waits for a stage (poll with a deadline), then prints it. */
export async function until<T>(
  probe: () => Promise<T | undefined>,
  describe: (value: T) => string,
): Promise<T> {
  const deadline = Date.now() + stageTimeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) {
      event(describe(value));
      return value;
    }
    if (Date.now() > deadline) throw new Error(`a stage did not happen within ${stageTimeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs one of the harness's CLIs (kubectl, tkn) and prints the command and its output as is. */
export async function show(
  toolsDir: string,
  cli: string,
  args: string[],
  env: Record<string, string>,
  shown: string[] = args,
) {
  say();
  say(bold(`$ ${cli} ${shown.join(" ")}`));
  const { stdout, stderr } = await promisify(execFile)(join(toolsDir, cli), args, {
    env: { ...process.env, ...env },
    timeout: 30_000,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`${cli} ${shown.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
  });
  for (const line of `${stdout}${stderr}`.trimEnd().split("\n")) say(`  ${line}`);
}
