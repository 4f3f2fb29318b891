// `node bench/matchers.ts`: worst-case times of the allow-list matchers (globMatch, checkPipelineSource) on
// adversarial tenant values, next to the backtracking RegExp translation they replaced. Bounded: the old
// matcher only runs on value sizes its predicted time allows, and says where it was capped.
import type { InternalServicesConfigSpec } from "../src/generated/crds.ts";
import { globMatch } from "../src/policy/glob.ts";
import { checkPipelineSource } from "../src/policy/sources.ts";
import { regexpGlobMatch } from "../test/support/regexp-glob.ts";

const SIZES = [4096, 65536];
const STARS = [1, 2, 4, 8, 16];
const OLD_BUDGET_MS = 400; // predicted time of one old match above which its input is not grown
/** Value sizes the old matcher is tried at, growing by ~1.25 so that the prediction stays close. */
const OLD_SIZES = [...Array.from({ length: 28 }, (_, i) => Math.round(8 * 1.25 ** i)), 4096];

/** Max ms of one call over `reps` calls, after a few unmeasured ones (so the JIT has compiled it). */
function maxMs(reps: number, run: () => unknown): number {
  for (let i = 0; i < 3; i++) run();
  let max = 0;
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    run();
    max = Math.max(max, performance.now() - start);
  }
  return max;
}

interface Family {
  name: string;
  glob: (stars: number) => string;
  /** A value of about `size` characters that the glob almost matches everywhere, and does not match. */
  value: (size: number) => string;
}

const fill = (unit: string, size: number) => unit.repeat(Math.max(1, Math.floor(size / unit.length)));
const mixed = (stars: number, literal: string) =>
  Array.from({ length: stars }, (_, i) => (i % 2 === 0 ? `*${literal}` : `**${literal}`)).join("");

const families: Family[] = [
  {
    name: "*a*a…*b on aaa… (every a a candidate, no b)",
    glob: (k) => `${"*a".repeat(k - 1)}*b`,
    value: (n) => fill("a", n),
  },
  {
    name: "*a**a*a…b on aaaaaaa/aaaaaaa/… (mixed * and **)",
    glob: (k) => `${mixed(k, "a")}b`,
    value: (n) => fill("aaaaaaa/", n),
  },
  {
    name: "*ab*ab…*abc on abab… (near-miss literals)",
    glob: (k) => `${"*ab".repeat(k - 1)}*abc`,
    value: (n) => fill("ab", n),
  },
  {
    name: "https://h/*/**/…/*.git on https://h/a/a/….gi",
    glob: (k) => `https://h/${Array.from({ length: k }, (_, i) => (i % 2 ? "**/" : "*/")).join("")}*.git`,
    value: (n) => `https://h/${fill("a/", n - 14)}x.gi`,
  },
];

/** The old matcher's time on the largest value its predicted time allows (O(n^(stars+1)) at worst). */
function oldTime(family: Family, stars: number): { ms: number; size: number } {
  const glob = family.glob(stars);
  let result = { ms: 0, size: 0 };
  for (const size of OLD_SIZES) {
    const value = family.value(size);
    if (value.length <= result.size) continue;
    const predicted = Math.max(result.ms, 0.01) * (value.length / Math.max(result.size, 1)) ** (stars + 1);
    if (result.size > 0 && predicted > OLD_BUDGET_MS) break;
    result = { ms: maxMs(1, () => regexpGlobMatch(glob, value)), size: value.length };
  }
  return result;
}

const fmt = (ms: number) => (ms < 0.01 ? "<0.01" : ms.toFixed(ms < 10 ? 2 : 0));
const started = performance.now();
const rows: string[][] = [];
for (const family of families) {
  for (const stars of STARS) {
    const glob = family.glob(stars);
    const news = SIZES.map((size) => {
      const value = family.value(size);
      if (globMatch(glob, value)) throw new Error(`${glob} unexpectedly matches`);
      return fmt(maxMs(size > 4096 ? 3 : 20, () => globMatch(glob, value)));
    });
    const old = oldTime(family, stars);
    const capped = old.size < 4000 ? ` (capped at ${old.size} chars)` : ` (${old.size} chars)`;
    const sameInput = family.value(old.size);
    const newSame = fmt(maxMs(20, () => globMatch(glob, sameInput)));
    rows.push([family.name, String(stars), ...news, `${fmt(old.ms)}${capped}`, newSame]);
  }
}

// checkPipelineSource at the CRD's limits: 64 rules of 3 adversarial 16-star globs, 4 KiB values (the
// CRD maximum; 64 KiB beyond it) that pass url and revision and fail pathInRepo at the very end, so
// every rule does all the work.
const sourceRows: string[][] = [];
for (const size of SIZES) {
  const config: InternalServicesConfigSpec = {
    allowedPipelineSources: Array.from({ length: 64 }, (_, i) => ({
      resolver: "git" as const,
      params: {
        url: `https://*.internal.example.com/releng/${mixed(16, "a")}b`,
        revision: `refs/tags/${"*a".repeat(15)}*b`,
        pathInRepo: `pipelines/${mixed(16, "a")}b${i}`,
      },
    })),
  };
  const ref = {
    resolver: "git",
    params: [
      { name: "url", value: `https://git.internal.example.com/releng/${fill("a", size - 40)}b` },
      { name: "revision", value: `refs/tags/${fill("a", size - 11)}b` },
      { name: "pathInRepo", value: `pipelines/${fill("a/", size - 12)}b` },
    ],
  };
  if (checkPipelineSource(ref, config).ok) throw new Error("the adversarial request was accepted");
  const ms = maxMs(size > 4096 ? 2 : 5, () => checkPipelineSource(ref, config));
  sourceRows.push([`64 rules x 3 params of 16 stars, values of ${size} chars`, fmt(ms), fmt(ms / (64 * 3))]);
}

function print(header: string[], body: string[][]) {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of body) console.log(line(r));
  console.log();
}

console.log("globMatch: max ms per match (none of these values match)\n");
print(["glob family", "stars", "new 4 KiB", "new 64 KiB", "old (RegExp)", "new, same input"], rows);
console.log("checkPipelineSource: max ms per call (the request is rejected by every rule)\n");
print(["config and request", "ms per call", "ms per param check"], sourceRows);
console.log(
  `Old times are capped where the RegExp's predicted time for the next size exceeded ${OLD_BUDGET_MS} ms. Total ${fmt((performance.now() - started) / 1000)} s.`,
);
