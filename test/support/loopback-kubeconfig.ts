// A kubeconfig for a plain-HTTP test server on loopback (unit tests of the client paths).
import { PooledKubeConfig } from "../../src/config/kubeconfig.ts";

export function loopbackKubeConfig(port: number, token = "t"): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u", token }],
    contexts: [{ name: "ctx", cluster: "c", user: "u" }],
    currentContext: "ctx",
  });
  return kc;
}
