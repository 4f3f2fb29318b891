// Test files reach the control planes that test/run.ts started once for the whole run.
import { readFileSync } from "node:fs";
import type { KubeConfig } from "@kubernetes/client-node";
import { adminKubeConfig } from "../../envtest/cluster.ts";
import type { Plane, PlanesState } from "../../envtest/controlplane.ts";

export type { PlanesState } from "../../envtest/controlplane.ts";

export const planesStateEnv = "ISC_TEST_PLANES";

export interface TestPlanes {
  public: Plane;
  private: Plane;
  publicAdmin: KubeConfig;
  privateAdmin: KubeConfig;
}

export function testPlanes(): TestPlanes {
  const stateFile = process.env[planesStateEnv];
  if (!stateFile) {
    throw new Error(
      `${planesStateEnv} is not set: run tests through the runner, e.g. \`npm test\` or \`node test/run.ts <file>\`, which starts the control planes`,
    );
  }
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as PlanesState;
  return {
    public: state.public,
    private: state.private,
    publicAdmin: adminKubeConfig(state.public),
    privateAdmin: adminKubeConfig(state.private),
  };
}
