// `npm run demo` as a user runs it: a process of its own that starts its own planes and stops them; and
// `npm run demo -- --kcp`, which starts its own kcp too.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const demo = fileURLToPath(new URL("../../demo/main.ts", import.meta.url));

/** Runs the demo with `args`; resolves with its exit code and everything it printed. */
async function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [demo, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 240_000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearTimeout(timer);
  return { code, out };
}

describe("npm run demo", { timeout: 600_000 }, () => {
  it("signs in the private side, verifies downstream, rejects the outsider, and cleans up", {
    timeout: 300_000,
  }, async () => {
    const { code, out } = await runDemo([]);
    assert.equal(code, 0, out);
    assert.match(out, /local executor/);
    assert.match(out, /request accepted; internal PipelineRun internal-services\//);
    assert.match(out, /request Succeeded: results .*signature/);
    assert.match(out, /verified with the public key: true/);
    assert.match(out, /verifies with the private side's public key: true/);
    assert.match(out, /PipelineRun Succeeded/);
    // The real kubectl, with the CRD's printer columns, and the real tkn.
    assert.match(
      out,
      /\$ kubectl get internalrequests -n releng-tenant\n\s+NAME\s+SUCCEEDED\s+REASON\s+SERVICE\s+AGE\n/,
    );
    assert.match(out, /\n\s+release-\S+-sign-0\s+True\s+Succeeded\s+sign-artifact\s+\S+\n/);
    assert.match(
      out,
      /\$ tkn customrun describe release-\S+-sign -n releng-tenant\n\s+Name:\s+release-\S+-sign\n/,
    );
    assert.match(out, /Custom Ref:\s+sign-artifact/);
    assert.match(out, /STARTED\s+DURATION\s+STATUS\n.*\s+Succeeded\n/);
    assert.match(out, /\n\s+signature\s+[A-Za-z0-9+/]{86}==\n/);
    assert.match(
      out,
      /Rejected: namespace "intruder" in workspace "public" is not in the InternalServicesConfig allowList/,
    );
    assert.match(out, /PipelineRuns ever created in the private cluster: 1 /);
    // Everything it started is gone: its planes' directory names appear in the output.
    const dir = /kubeconfig (\/\S+)\/public\/kubeconfig/.exec(out)?.[1];
    assert.ok(dir, "the demo prints its kubeconfig paths");
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync(dir), false, "the demo removed its temporary control planes");
  });

  it("--kcp: one request in each of three kcp workspaces, through the export, as the least-privilege identity", {
    timeout: 300_000,
  }, async () => {
    const { code, out } = await runDemo(["--kcp"]);
    assert.equal(code, 0, out);
    assert.match(out, /apiexport\.apis\.kcp\.io\/internal-services serverside-applied/);
    for (const ws of ["root:team-a", "root:team-b", "root:team-c"]) {
      assert.match(out, new RegExp(`${ws}: APIBinding internal-services Bound`));
      assert.match(out, new RegExp(`${ws}: accepted; internal PipelineRun internal-services/release-1-`));
      assert.match(out, new RegExp(`signed the digest in internal-services/release-1-\\S+ \\(for ${ws}\\)`));
      assert.match(out, new RegExp(`${ws}: request Succeeded: results .*signature`));
      // The result table: the private run carries the request's workspace path; the signature verifies.
      assert.match(
        out,
        new RegExp(
          `\\n\\s+${ws}\\s+default/release-1\\s+Succeeded\\s+internal-services/release-1-\\S+\\s+${ws}\\s+true\\n`,
        ),
      );
    }
    assert.match(
      out,
      /\$ isc controller --kubeconfig \S+\/provider\.kubeconfig --kcp-export internal-services/,
    );
    assert.match(out, /PipelineRuns in the private cluster: 3,/);
    // The tenant's view with the real kubectl.
    assert.match(out, /\n\s+release-1\s+True\s+Succeeded\s+sign-artifact\s+\S+\n/);
    // Everything it started is gone: kcp's root directory, the planes', the demo's own.
    const { existsSync } = await import("node:fs");
    const dirs = [
      /admin kubeconfig (\/\S+)\/root\/admin\.kubeconfig/.exec(out)?.[1],
      /kubeconfig (\/\S+)\/private\/kubeconfig/.exec(out)?.[1],
      /--kubeconfig (\/\S+)\/provider\.kubeconfig/.exec(out)?.[1],
    ];
    for (const dir of dirs) {
      assert.ok(dir, "the demo prints where its kcp, planes and files are");
      assert.equal(existsSync(dir), false, `the demo removed ${dir}`);
    }
  });
});
