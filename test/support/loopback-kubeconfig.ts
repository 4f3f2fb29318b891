// A kubeconfig for a plain-HTTP test server on loopback (unit tests of the client paths).
import { LoadedKubeConfig } from "../../src/config/kubeconfig.ts";

export function loopbackKubeConfig(port: number, token = "t"): LoadedKubeConfig {
  return new LoadedKubeConfig({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u", token }],
    contexts: [{ name: "ctx", cluster: "c", user: "u" }],
    currentContext: "ctx",
  });
}
