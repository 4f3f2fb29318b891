// `isc controller` misconfigured: every wrong flag stops it before it reconciles anything, with exit
// 2 and a one-line message that names the flag (no stack trace). The kubeconfig names a server that
// is never contacted: each case fails before the first API call.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runCommand } from "../../envtest/run-command.ts";

const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

const kubeconfig = (contexts: string[]) => `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [${contexts.map((n) => `{name: ${n}, context: {cluster: c, user: u}}`).join(", ")}]
current-context: ${contexts[0]}
`;

describe("isc controller: misconfiguration", () => {
  let dir = "";
  let kc = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "isc-flags-"));
    kc = join(dir, "kubeconfig");
    await writeFile(kc, kubeconfig(["prod", "stage"]));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const run = (args: string[]) =>
    runCommand(process.execPath, [cli, "controller", ...args], {
      env: { PATH: process.env.PATH, HOME: dir },
      timeoutMs: 30_000,
    });
  const withConfig = () => ["--kubeconfig", kc, "--private-kubeconfig", kc, "--namespace", "isc"];

  const cases: [string, () => string[], RegExp][] = [
    ["no namespace", () => [], /--namespace \(or ISC_NAMESPACE\) is required/],
    [
      "workers not a positive integer",
      () => ["--namespace", "isc", "--workers", "0"],
      /--workers must be a positive integer, got "0"/,
    ],
    [
      "a boolean that is neither",
      () => ["--namespace", "isc", "--leader-elect", "maybe"],
      /--leader-elect must be true or false, got "maybe"/,
    ],
    [
      "nothing to do",
      () => ["--namespace", "isc", "--requests=false", "--custom-tasks=false"],
      /nothing to do/,
    ],
    [
      "an invalid metrics address",
      () => ["--namespace", "isc", "--metrics-address", "nope"],
      /--metrics-address: invalid address "nope"/,
    ],
    [
      "an invalid health address",
      () => ["--namespace", "isc", "--health-address", "1.2.3.4:99999"],
      /--health-address: invalid address/,
    ],
    [
      "an unknown context",
      () => [...withConfig(), "--workspace", "dev"],
      /context "dev" is not in the kubeconfig \(contexts: prod, stage\)/,
    ],
    [
      "a Go workspace not served",
      () => [...withConfig(), "--workspace", "prod", "--go-workspace", "stage"],
      /--go-workspace stage: not a served workspace \(prod\)/,
    ],
    [
      "a duration that is no duration",
      () => [...withConfig(), "--leader-lease-duration", "15"],
      /--leader-lease-duration: /,
    ],
    [
      "a zero duration",
      () => [...withConfig(), "--leader-retry-period", "0s"],
      /--leader-retry-period must be positive/,
    ],
    [
      "a heartbeat faster than a second",
      () => [...withConfig(), "--heartbeat-interval", "500ms"],
      /--heartbeat-interval must be at least 1s, got "500ms"/,
    ],
    ["an unknown flag", () => ["--namespace", "isc", "--wrokers", "2"], /Unknown option '--wrokers'/],
  ];
  for (const [what, args, message] of cases) {
    test(`${what}: exit 2, the flag named, no stack trace`, async () => {
      const r = await run(args());
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    });
  }

  for (const flag of ["--health-address", "--metrics-address"]) {
    test(`${flag} in use: exit 2, naming the flag and the address`, async () => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
      const { port } = taken.address() as { port: number };
      try {
        // The other address is a free one (port 0), so only this one fails.
        const other = flag === "--health-address" ? "--metrics-address" : "--health-address";
        const r = await run([
          ...withConfig(),
          "--leader-elect=false",
          other,
          "127.0.0.1:0",
          flag,
          `127.0.0.1:${port}`,
        ]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, new RegExp(`${flag} 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
      } finally {
        taken.close();
      }
    });
  }
});
