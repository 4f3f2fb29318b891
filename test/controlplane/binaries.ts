// Finds (or builds, the first time) kube-apiserver and etcd; see build-binaries.sh.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("build-binaries.sh", import.meta.url));

export interface Binaries {
  etcd: string;
  kubeApiserver: string;
}

/** Build progress goes to stderr; resolves with the binaries' paths. */
export function ensureBinaries(): Promise<Binaries> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const dir = out.trim().split("\n").at(-1);
      if (code !== 0 || !dir) {
        reject(new Error(`building kube-apiserver/etcd failed (exit ${code}); see the messages above`));
        return;
      }
      resolve({ etcd: `${dir}/etcd`, kubeApiserver: `${dir}/kube-apiserver` });
    });
  });
}
