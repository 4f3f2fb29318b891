// Experiment, not part of the controller: load with
//   --controller-cmd "node --import ./bench/experiments/pooled-dispatcher.ts src/cli/main.ts controller"
// to measure the fix the profile points to. @kubernetes/client-node 2.0.1 builds a new undici Agent in
// every applySecurityAuthentication(), i.e. for every API call, so no connection is ever reused: each
// call pays a TCP connect, a TLS handshake and a fresh SecureContext (CA and key parsing) on both
// sides, and the abandoned agents keep their sockets until they time out. This keeps the first
// dispatcher of each KubeConfig (one per context: cluster + user) and hands it to every later call.
import { KubeConfig, type RequestContext } from "@kubernetes/client-node";

type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;
const pooled = new WeakMap<KubeConfig, Map<string, Dispatcher>>();
const original = KubeConfig.prototype.applySecurityAuthentication;

KubeConfig.prototype.applySecurityAuthentication = async function (
  this: KubeConfig,
  context: RequestContext,
): Promise<void> {
  await original.call(this, context);
  const key = JSON.stringify([this.getCurrentCluster()?.name, this.getCurrentUser()?.name]);
  let byContext = pooled.get(this);
  if (!byContext) {
    byContext = new Map();
    pooled.set(this, byContext);
  }
  const existing = byContext.get(key);
  const fresh = context.getDispatcher();
  if (existing) context.setDispatcher(existing);
  else if (fresh) byContext.set(key, fresh);
};
