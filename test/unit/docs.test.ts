// The docs agree with the code and with themselves: the flag table in docs/operations.md is the
// controller's flag declaration (which also makes `isc controller --help`), and every relative link in
// README.md and docs/*.md reaches a file, and a heading there when it names one.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type ControllerFlag, controllerFlags, controllerHelp } from "../../src/cli/controller.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => readFileSync(join(root, path), "utf8");
const flags = controllerFlags as readonly ControllerFlag[];
const docs = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

/** The table's cells for a flag, as docs/operations.md must have them. */
function expectedRow(flag: ControllerFlag): string[] {
  const code = (s: string) => `\`${s}\``;
  return [
    code(`--${flag.name} ${flag.value}`),
    flag.env.map(code).join(", ") + (flag.list ? " (space-separated)" : ""),
    flag.default !== undefined ? code(flag.default) : flag.required ? "required" : (flag.unset ?? "—"),
    flag.meaning,
  ];
}

const header = ["flag", "env", "default", "meaning"];
const cells = (line: string) =>
  line
    .trim()
    .replace(/^\||\|$/g, "")
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());

/** The rows of the table whose header is `header`, without its delimiter row. */
function tableRows(markdown: string): string[][] | undefined {
  const lines = markdown.split("\n");
  const at = lines.findIndex((l) => l.trim().startsWith("|") && cells(l).join() === header.join());
  if (at < 0) return undefined;
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.trim().startsWith("|")) break;
    rows.push(cells(line));
  }
  return rows;
}

const withoutFences = (markdown: string) => markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
/** Markdown without code, fenced or inline (neither holds links). */
const prose = (markdown: string) => withoutFences(markdown).replace(/`[^`\n]*`/g, "");

/** Its headings' anchors as GitHub makes them (duplicates get -1, -2, … in order). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const [, text = ""] of withoutFences(markdown).matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = text
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe("docs", () => {
  describe("the controller's flags", () => {
    const rows = tableRows(read("docs/operations.md"));
    const show = () =>
      `docs/operations.md's table should be:\n| ${header.join(" | ")} |\n| --- | --- | --- | --- |\n${flags
        .map((f) => `| ${expectedRow(f).join(" | ")} |`)
        .join("\n")}`;

    it("docs/operations.md has the flag table", () => {
      assert.ok(rows, `no table with the header | ${header.join(" | ")} |\n${show()}`);
    });

    it("lists every flag with its env vars, default and meaning", () => {
      for (const flag of flags) {
        const want = expectedRow(flag);
        const row = rows?.find((r) => r[0] === want[0]);
        assert.ok(row, `--${flag.name}: no row ${want[0]}\n${show()}`);
        assert.deepEqual(row, want, `--${flag.name}'s row differs from its declaration\n${show()}`);
      }
    });

    it("has no other rows, in the declaration's order", () => {
      assert.deepEqual(
        rows?.map((r) => r[0]),
        flags.map((f) => expectedRow(f)[0]),
        show(),
      );
    });

    it("--help shows every flag with its env vars and default", () => {
      const help = controllerHelp.replace(/\s+/g, " ");
      for (const flag of flags) {
        assert.ok(help.includes(` --${flag.name} ${flag.value} `), `--${flag.name} ${flag.value}`);
        for (const env of flag.env) assert.ok(help.includes(env), `--${flag.name}: ${env}`);
        const unset =
          flag.default !== undefined
            ? `(default ${flag.default})`
            : flag.required
              ? "(required)"
              : `(default: ${flag.unset})`;
        assert.ok(help.includes(unset), `--${flag.name}: ${unset}`);
      }
    });
  });

  describe("relative links", () => {
    it("README.md links every page in docs/", () => {
      const readme = prose(read("README.md"));
      for (const page of docs.slice(1)) assert.ok(readme.includes(`](${page}`), `README.md → ${page}`);
    });

    for (const file of docs) {
      it(`every relative link in ${file} reaches a file, and its heading`, () => {
        const broken: string[] = [];
        for (const [, target = ""] of prose(read(file)).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
          if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
          const [path = "", anchor] = target.split("#", 2);
          const resolved = path ? join(root, dirname(file), decodeURIComponent(path)) : join(root, file);
          if (!existsSync(resolved)) {
            broken.push(`${target}: no ${relative(root, resolved)}`);
          } else if (anchor !== undefined && resolved.endsWith(".md")) {
            if (!anchors(readFileSync(resolved, "utf8")).has(anchor))
              broken.push(`${target}: no heading #${anchor} in ${relative(root, resolved)}`);
          }
        }
        assert.deepEqual(broken, [], `${file}: broken links`);
      });
    }
  });
});
