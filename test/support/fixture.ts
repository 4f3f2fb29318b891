// One isolated controller setup per test: its own private controller namespace and remote request
// namespaces on the shared planes, with an in-process controller watching only those.
import type { KubeConfig } from "@kubernetes/client-node";
import { createNamespace, uniqueName } from "../../envtest/cluster.ts";
import { eventually } from "../../envtest/wait.ts";
import {
  internalRequests,
  internalServices,
  internalServicesConfigs,
  ResourceClient,
} from "../../src/api/resources.ts";
import type {
  InternalRequest,
  InternalRequestSpec,
  InternalService,
  InternalServiceSpec,
  InternalServicesConfig,
  InternalServicesConfigSpec,
} from "../../src/generated/crds.ts";
import { type Manager, type ManagerOptions, startManager, type WorkspaceConfig } from "../../src/manager.ts";
import { newLogger, silentLogger } from "../../src/runtime/log.ts";
import { Metrics } from "../../src/runtime/metrics.ts";
import { type TestPlanes, testPlanes } from "./planes.ts";
import { FakeTekton } from "./tekton.ts";

export interface FixtureOptions {
  /** Number of remote request namespaces to create (named ns[0..]). */
  namespaces?: number;
  /** Spec of the InternalServicesConfig "config"; undefined: none (deny everything). */
  config?: (namespaces: string[]) => InternalServicesConfigSpec;
  services?: Record<string, InternalServiceSpec>;
  startController?: boolean;
  /** Planes other than the shared ones (fault tests start their own). */
  planes?: TestPlanes;
}

export class Fixture {
  readonly privateNs: string;
  readonly namespaces: string[];
  readonly publicKc: KubeConfig;
  readonly privateKc: KubeConfig;
  readonly requests: ResourceClient<InternalRequest>;
  readonly services: ResourceClient<InternalService>;
  readonly configs: ResourceClient<InternalServicesConfig>;
  readonly tekton: FakeTekton;
  manager: Manager | undefined;

  constructor(privateNs: string, namespaces: string[], publicKc: KubeConfig, privateKc: KubeConfig) {
    this.privateNs = privateNs;
    this.namespaces = namespaces;
    this.publicKc = publicKc;
    this.privateKc = privateKc;
    this.requests = new ResourceClient<InternalRequest>(publicKc, internalRequests, "test");
    this.services = new ResourceClient<InternalService>(privateKc, internalServices, "test");
    this.configs = new ResourceClient<InternalServicesConfig>(privateKc, internalServicesConfigs, "test");
    this.tekton = new FakeTekton(privateKc, privateNs);
  }

  static async create(opts: FixtureOptions = {}): Promise<Fixture> {
    const planes = opts.planes ?? testPlanes();
    const privateNs = await createNamespace(planes.privateAdmin, uniqueName("isc-private"));
    const namespaces = await Promise.all(
      Array.from({ length: opts.namespaces ?? 1 }, () =>
        createNamespace(planes.publicAdmin, uniqueName("team")),
      ),
    );
    const f = new Fixture(privateNs, namespaces, planes.publicAdmin, planes.privateAdmin);
    if (opts.config) await f.setConfig(opts.config(namespaces));
    for (const [name, spec] of Object.entries(opts.services ?? {})) await f.addService(name, spec);
    if (opts.startController ?? true) await f.startController();
    return f;
  }

  async setConfig(spec: InternalServicesConfigSpec): Promise<void> {
    await this.configs.create(this.privateNs, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalServicesConfig",
      metadata: { name: "config" },
      spec,
    });
  }

  async addService(name: string, spec: InternalServiceSpec): Promise<InternalService> {
    return this.services.create(this.privateNs, {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalService",
      metadata: { name },
      spec,
    });
  }

  async startController(
    extra: {
      workspaces?: WorkspaceConfig[];
      privateKubeConfig?: KubeConfig;
      afterCreate?: () => void;
      queuedRecheckMs?: number;
      serveRequests?: boolean;
      serveCustomTasks?: boolean;
      heartbeat?: ManagerOptions["heartbeat"];
      kcp?: ManagerOptions["kcp"];
      /** Where the controller logs (default: nowhere, or at debug with FIXTURE_LOG set). */
      log?: ManagerOptions["log"];
    } = {},
  ): Promise<Manager> {
    this.manager = startManager({
      workspaces: extra.workspaces ?? [
        { name: "public", kubeConfig: this.publicKc, namespaces: this.namespaces },
      ],
      privateKubeConfig: extra.privateKubeConfig ?? this.privateKc,
      controllerNamespace: this.privateNs,
      log: extra.log ?? (process.env.FIXTURE_LOG ? newLogger("debug") : silentLogger),
      metrics: new Metrics({ processMetrics: false }),
      afterCreate: extra.afterCreate,
      queuedRecheckMs: extra.queuedRecheckMs,
      serveRequests: extra.serveRequests,
      serveCustomTasks: extra.serveCustomTasks,
      heartbeat: extra.heartbeat,
      kcp: extra.kcp,
    });
    const ready = this.manager.ready;
    await eventually(
      () => this.manager?.isReady(),
      "controller caches synced (a permission error keeps them from syncing)",
      30_000,
    );
    await ready;
    return this.manager;
  }

  async stop(): Promise<void> {
    await this.manager?.stop();
  }

  async createRequest(
    name: string,
    spec: InternalRequestSpec,
    opts: { namespace?: string; labels?: Record<string, string> } = {},
  ): Promise<InternalRequest> {
    return this.requests.create(opts.namespace ?? (this.namespaces[0] as string), {
      apiVersion: "appstudio.redhat.com/v1alpha1",
      kind: "InternalRequest",
      metadata: { name, labels: opts.labels },
      spec,
    });
  }

  async waitForRequest(
    name: string,
    predicate: (r: InternalRequest) => boolean,
    what: string,
    namespace = this.namespaces[0] as string,
  ): Promise<InternalRequest> {
    let last: InternalRequest | undefined;
    try {
      return await eventually(async () => {
        last = await this.requests.get(namespace, name);
        return predicate(last) ? last : undefined;
      }, `request ${name}: ${what}`);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlast seen status: ${JSON.stringify(last?.status)}`);
    }
  }

  /** Waits for a terminal Succeeded condition and returns the request. */
  waitForReason(name: string, reason: string, namespace?: string): Promise<InternalRequest> {
    return this.waitForRequest(
      name,
      (r) => r.status?.conditions?.[0]?.reason === reason,
      `reason ${reason}`,
      namespace,
    );
  }
}
