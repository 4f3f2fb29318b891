import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileGlob, globMatch } from "../../src/policy/glob.ts";
import { regexpGlobMatch } from "../support/regexp-glob.ts";

/** A small deterministic PRNG (mulberry32), so a failing case can be reproduced. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("glob", () => {
  const cases: [string, string, boolean][] = [
    ["https://gitlab.internal/releng/*", "https://gitlab.internal/releng/pipelines", true],
    ["https://gitlab.internal/releng/*", "https://gitlab.internal/releng/a/b", false], // * stops at /
    ["https://gitlab.internal/releng/**", "https://gitlab.internal/releng/a/b", true],
    ["https://gitlab.internal/releng/*", "https://gitlab.internal/releng/", true], // * may be empty
    ["refs/tags/*", "refs/tags/v1.2.3", true],
    ["refs/tags/*", "refs/heads/main", false],
    ["pipelines/*.yaml", "pipelines/sign.yaml", true],
    ["pipelines/*.yaml", "pipelines/signxyaml", false], // "." is literal
    ["a+b", "a+b", true],
    ["a+b", "aab", false], // "+" is literal
    ["(x|y)", "x", false],
    ["(x|y)", "(x|y)", true],
    ["[abc]", "a", false],
    ["a?c", "abc", false],
    ["\\d", "5", false],
    ["\\d", "\\d", true],
    ["^$", "^$", true],
    ["main", "xmainx", false], // whole value only
    ["main", "main\n", false],
    ["", "", true],
    ["", "a", false],
    ["*", "", true],
    ["*", "a/b", false],
    ["*", "line1\nline2", true],
    ["**", "", true],
    ["**", "a/b/c", true],
    ["***", "a/b/c", true], // three or more stars cross "/" too
    ["a**z", "a/b/z", true],
    ["a*z", "a/z", false],
    ["*/*", "a/b", true],
    ["*/*", "a/b/c", false],
    ["ü-*", "ü-ñ😀", true],
    // Mixed * and **: the leftmost occurrence of a literal is not always the one that works.
    ["a**b*c", "ab/bc", true],
    ["a**b*c", "ab/b/c", false],
    ["**/x*y", "a/x/x1y", true],
    ["*a**", "b/a", false],
    ["*a**", "ba/x", true],
    // A "*" in the value is an ordinary character.
    ["a*", "a*", true],
    ["x", "*", false],
  ];
  for (const [pattern, value, expected] of cases) {
    test(`${JSON.stringify(pattern)} ${expected ? "matches" : "does not match"} ${JSON.stringify(value)}`, () => {
      assert.equal(globMatch(pattern, value), expected);
      assert.equal(regexpGlobMatch(pattern, value), expected, "the regexpGlobMatch agrees");
    });
  }

  test("agrees with the regexpGlobMatch on random globs and values", () => {
    const next = random(20240611);
    const pick = (alphabet: string, maxLength: number) =>
      Array.from({ length: Math.floor(next() * (maxLength + 1)) }, () =>
        alphabet.charAt(Math.floor(next() * alphabet.length)),
      ).join("");
    // Short globs over a tiny alphabet hit every interplay of *, ** and "/"; long ones (over 32 and 64
    // tokens) the state sets that span several words.
    for (const [rounds, maxPattern, maxValue] of [
      [20_000, 8, 10],
      [3_000, 80, 60],
    ] as const) {
      for (let i = 0; i < rounds; i++) {
        const pattern = pick("ab/*", maxPattern);
        const value = pick("ab/*", maxValue);
        assert.equal(globMatch(pattern, value), regexpGlobMatch(pattern, value), `${pattern} vs ${value}`);
      }
    }
  });

  test("values that match near the end of long globs (state sets over several words)", () => {
    const glob = `${"a*".repeat(40)}/${"b".repeat(30)}**z`;
    assert.equal(globMatch(glob, `${"a".repeat(40)}/${"b".repeat(30)}/q/z`), true);
    assert.equal(globMatch(glob, `${"a".repeat(39)}/${"b".repeat(30)}/q/z`), false);
    assert.equal(globMatch(glob, `${"a".repeat(40)}x/${"b".repeat(30)}z`), true);
    assert.equal(globMatch(glob, `${"a".repeat(40)}/x/${"b".repeat(30)}z`), false); // a * took "/"
  });

  // These blocked the event loop for seconds with the RegExp translation; bench/matchers.ts measures them.
  const adversarial: [string, string, boolean][] = [
    [`${"*a".repeat(8)}*b`, "a".repeat(4096), false],
    [`${"*a".repeat(8)}*b`, `${"a".repeat(4096)}b`, true],
    [`${"**a".repeat(8)}**b`, "a".repeat(4096), false],
    [`${"*a*".repeat(4)}${"**a".repeat(4)}b`, "a/".repeat(2048), false],
    ["*-*-*-*-*-*-*-*-x", "-".repeat(4096), false],
    ["**/**/**/**/**/**/**/x", "/".repeat(4096), false],
    ["https://h/**/*/*/*/*.git", `https://h/${"a/".repeat(2000)}x.git`, true],
  ];
  for (const [pattern, value, expected] of adversarial) {
    test(`adversarial ${JSON.stringify(pattern)} on ${value.length} characters`, () =>
      assert.equal(globMatch(pattern, value), expected));
  }

  test("compiles each pattern once", () => {
    assert.equal(compileGlob("refs/tags/*"), compileGlob("refs/tags/*"));
  });
});
