// InternalService specs shared by test files.
import type { InternalServiceSpec } from "../../src/generated/crds.ts";

/** A signing service: a cluster-resolver pipeline, a params schema with a default, a pinned account. */
export const signService: InternalServiceSpec = {
  pipeline: { pipelineRef: { resolver: "cluster", params: [{ name: "name", value: "sign" }] } },
  paramsSchema: {
    type: "object",
    required: ["digest"],
    properties: {
      digest: { type: "string", pattern: "^sha256:[a-f0-9]{8,64}$" },
      keyId: { type: "string", default: "release-key-1" },
    },
  },
  serviceAccount: "signer",
};
