// requestRetention's pure parts: which keepFinished a workspace gets, and the pace of deletions.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DeletionPace, keepFinishedMs } from "../../src/requests/retention.ts";

describe("request retention", () => {
  const config = {
    allowList: [],
    requestRetention: {
      keepFinished: "24h",
      workspaces: [
        { workspace: "prod", keepFinished: "1h" },
        { workspace: "root:audit:*" },
        { workspace: "prod" },
      ],
    },
  };
  const cases: [string, number | undefined][] = [
    ["public", 24 * 3_600_000],
    ["prod", 3_600_000], // the first match wins
    ["root:audit:team", undefined], // an exception without keepFinished keeps them
    ["root:other", 24 * 3_600_000],
  ];
  for (const [workspace, expected] of cases)
    test(`${workspace}: ${expected ?? "kept"}`, () =>
      assert.equal(keepFinishedMs(config, workspace), expected));

  test("without requestRetention nothing is ever deleted", () => {
    assert.equal(keepFinishedMs({ allowList: [] }, "public"), undefined);
    assert.equal(keepFinishedMs(undefined, "public"), undefined);
  });

  test("deletions keep an even pace: each one its own moment, at most maxDeletionsPerMinute", () => {
    const pace = new DeletionPace();
    const cfg = { allowList: [], requestRetention: { keepFinished: "1h", maxDeletionsPerMinute: 120 } };
    const moments = Array.from({ length: 5 }, () => pace.reserve(1_000, cfg));
    assert.deepEqual(moments, [1_000, 1_500, 2_000, 2_500, 3_000]);
    // Idle for a while: the next one may go at once, not at a moment owed from before.
    assert.equal(pace.reserve(60_000, cfg), 60_000);
    // The default pace: 300 a minute.
    const fresh = new DeletionPace();
    assert.deepEqual([fresh.reserve(0, undefined), fresh.reserve(0, undefined)], [0, 200]);
  });
});
