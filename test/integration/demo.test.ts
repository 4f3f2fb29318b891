// `npm run demo` as a user runs it: a process of its own that starts its own planes and stops them.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const demo = fileURLToPath(new URL("../../demo/main.ts", import.meta.url));

describe("npm run demo", { timeout: 300_000 }, () => {
  it("signs in the private side, verifies downstream, rejects the outsider, and cleans up", async () => {
    const child = spawn(process.execPath, [demo], { stdio: ["ignore", "pipe", "pipe"] });
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
});
