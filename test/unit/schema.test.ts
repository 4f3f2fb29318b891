// Adversarial tests of params validation: typed params accept only canonical spellings, service patterns run
// on the linear-time engine with ECMAScript's meaning, and schemas cannot reach outside themselves.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type ParamsResult, re2RegExp, validateParams } from "../../src/policy/schema.ts";
import { quote } from "../../src/policy/text.ts";

function errorsOf(r: ParamsResult): string[] {
  if (r.ok || r.kind !== "params") assert.fail(`expected params errors, got ${JSON.stringify(r)}`);
  return r.errors;
}

function schemaErrorOf(r: ParamsResult): string {
  if (r.ok || r.kind !== "schema") assert.fail(`expected a schema error, got ${JSON.stringify(r)}`);
  return r.error;
}

const INTEGER_RULE =
  "must be an integer written in canonical form (digits, no sign other than '-', no leading zeros, no spaces, e.g. 5)";
const NUMBER_RULE =
  "must be a number written in canonical form (JSON number syntax in its shortest form, no spaces, e.g. 1.5, -2 or 1e-7)";
const BOOLEAN_RULE = 'must be "true" or "false" (lowercase, no spaces)';

describe("typed params: only canonical spellings, passed on as checked", () => {
  const schema = {
    type: "object",
    properties: {
      count: { type: "integer", minimum: -100, maximum: 100 },
      listed: { type: ["integer"] },
      level: { enum: [1, 2, 3] },
      seven: { const: 7 },
      big: { type: "integer" },
      ratio: { type: "number" },
      scale: { enum: [0.5, 1] },
      flag: { type: "boolean" },
      on: { const: true },
      text: { type: "string" },
    },
  };
  const open = { additionalProperties: { type: "integer" } };

  // Every way a lenient parser (Number, parseInt, ajv's coercion, YAML, a shell) might read as 5, or as a
  // number at all, that is not the canonical decimal spelling.
  const notCanonicalIntegers = [
    "0x5",
    "0X5",
    "0o5",
    "0b101",
    "05",
    "005",
    "+5",
    " 5",
    "5 ",
    "\t5",
    "5\n",
    "\n5",
    "5\r",
    "\u00a05",
    "5.0",
    "5.",
    ".5",
    "5e0",
    "0.5e1",
    "1e1",
    "1E1",
    "-0",
    "+0",
    "00",
    "--5",
    "- 5",
    "\u22125", // minus sign
    "Infinity",
    "-Infinity",
    "NaN",
    "",
    " ",
    "５", // fullwidth
    "٥", // Arabic-Indic
    "۵", // extended Arabic-Indic
    "५", // Devanagari
    "5_000",
    "5,000",
    "1 000",
    "5n",
    "0x",
    "true",
    "null",
    "[5]",
    "5\u0000",
  ];

  for (const name of ["count", "listed", "level", "seven"]) {
    test(`integer param ${name} rejects every non-canonical spelling, naming the param`, () => {
      for (const text of notCanonicalIntegers) {
        assert.deepEqual(
          errorsOf(validateParams(schema, { [name]: text })),
          [`param "${name}" ${INTEGER_RULE}, got ${quote(text, 64)}`],
          JSON.stringify(text),
        );
      }
    });
  }

  test("an integer typed by additionalProperties is read the same way", () => {
    for (const text of notCanonicalIntegers) {
      assert.deepEqual(errorsOf(validateParams(open, { extra: text })), [
        `param "extra" ${INTEGER_RULE}, got ${quote(text, 64)}`,
      ]);
    }
    assert.deepEqual(validateParams(open, { extra: "-12" }), { ok: true, params: { extra: "-12" } });
  });

  test("integers beyond the safe range are rejected, the safe limits accepted", () => {
    for (const text of [
      "9007199254740992",
      "-9007199254740992",
      "18446744073709551616",
      `1${"0".repeat(400)}`,
    ]) {
      assert.deepEqual(errorsOf(validateParams(schema, { big: text })), [
        `param "big" must be an integer from -9007199254740991 to 9007199254740991, got ${quote(text, 64)}`,
      ]);
    }
    for (const text of ["9007199254740991", "-9007199254740991"]) {
      assert.deepEqual(validateParams(schema, { big: text }), { ok: true, params: { big: text } });
    }
  });

  test("canonical integers are accepted and come out as sent; the schema then checks the value", () => {
    for (const text of ["0", "5", "-5", "100", "-100", "42"]) {
      assert.deepEqual(validateParams(schema, { count: text }), { ok: true, params: { count: text } });
    }
    assert.deepEqual(validateParams(schema, { level: "2", seven: "7" }), {
      ok: true,
      params: { level: "2", seven: "7" },
    });
    assert.deepEqual(errorsOf(validateParams(schema, { count: "101" })), ['param "count" must be <= 100']);
    assert.deepEqual(errorsOf(validateParams(schema, { level: "4", seven: "8" })), [
      'param "level" must be one of: "1", "2", "3"',
      'param "seven" must be "7"',
    ]);
  });

  test("numbers: a JSON number not in its shortest form gets the spelling to use", () => {
    const cases: [string, string][] = [
      ["1.50", "1.5"],
      ["1.0", "1"],
      ["1e3", "1000"],
      ["1E3", "1000"],
      ["1e+3", "1000"],
      ["100e-2", "1"],
      ["-0", "0"],
      ["0.10", "0.1"],
      ["0.0000001", "1e-7"],
      ["1e21", "1e+21"],
      ["-0.0", "0"],
    ];
    for (const [text, canonical] of cases) {
      assert.deepEqual(errorsOf(validateParams(schema, { ratio: text })), [
        `param "ratio" must be a number written in canonical form (write it as ${canonical}), got ${quote(text)}`,
      ]);
    }
  });

  test("numbers: other spellings, lost digits and overflow are rejected", () => {
    for (const text of [
      "+1",
      ".5",
      "5.",
      "0x10",
      "01",
      "1e",
      "1e+",
      "1_0",
      "１",
      "\u22121",
      " 1",
      "1 ",
      "",
      "NaN",
      "Infinity",
      "-Infinity",
    ]) {
      assert.deepEqual(errorsOf(validateParams(schema, { ratio: text })), [
        `param "ratio" ${NUMBER_RULE}, got ${quote(text)}`,
      ]);
    }
    const lossy: [string, string][] = [
      ["0.1000000000000000000001", "0.1"],
      ["9007199254740993", "9007199254740992"],
      ["1e-400", "0"],
    ];
    for (const [text, nearest] of lossy) {
      assert.deepEqual(errorsOf(validateParams(schema, { ratio: text })), [
        `param "ratio" has more digits than a double-precision number keeps (it would be read as ${nearest}), got ${quote(text)}`,
      ]);
    }
    assert.deepEqual(errorsOf(validateParams(schema, { ratio: "1e400" })), [
      'param "ratio" is beyond the range of double-precision numbers, got "1e400"',
    ]);
    assert.deepEqual(errorsOf(validateParams(schema, { scale: "0.50" })), [
      'param "scale" must be a number written in canonical form (write it as 0.5), got "0.50"',
    ]);
  });

  test("canonical numbers are accepted and come out as sent", () => {
    for (const text of ["0", "1.5", "-2", "0.1", "1e-7", "1e+21", "123.456", "-0.5", "5e-324"]) {
      assert.deepEqual(validateParams(schema, { ratio: text }), { ok: true, params: { ratio: text } });
    }
    assert.deepEqual(validateParams(schema, { scale: "0.5" }), { ok: true, params: { scale: "0.5" } });
  });

  test("booleans are exactly true or false", () => {
    for (const name of ["flag", "on"]) {
      for (const text of [
        "True",
        "TRUE",
        "1",
        "0",
        "yes",
        "on",
        "t",
        "",
        " true",
        "true ",
        "true\n",
        '"true"',
      ]) {
        assert.deepEqual(errorsOf(validateParams(schema, { [name]: text })), [
          `param "${name}" ${BOOLEAN_RULE}, got ${quote(text)}`,
        ]);
      }
    }
    assert.deepEqual(validateParams(schema, { flag: "false", on: "true" }), {
      ok: true,
      params: { flag: "false", on: "true" },
    });
    assert.deepEqual(errorsOf(validateParams(schema, { on: "false" })), ['param "on" must be "true"']);
  });

  test("string params are never altered, whatever they look like", () => {
    const texts = [" 05 ", "0x5", "1.50", "-0", "true", "", "\u0000\n", "５", "😀", "\uD800"];
    for (const text of texts) {
      assert.deepEqual(validateParams(schema, { text }), { ok: true, params: { text } });
      assert.deepEqual(validateParams({ additionalProperties: true }, { any: text }), {
        ok: true,
        params: { any: text },
      });
    }
  });

  test("a string enum stays a string enum", () => {
    const s = { properties: { v: { enum: ["1", "2"] }, mixed: { enum: ["a", 1] } } };
    assert.deepEqual(validateParams(s, { v: "1", mixed: "a" }), { ok: true, params: { v: "1", mixed: "a" } });
    assert.deepEqual(errorsOf(validateParams(s, { v: "01" })), ['param "v" must be one of: "1", "2"']);
    // Mixed types are not guessed: the param is a string, so the number 1 can never be given.
    assert.deepEqual(errorsOf(validateParams(s, { mixed: "1" })), ['param "mixed" must be one of: "a", "1"']);
  });

  test("types only reachable through $ref, anyOf or type lists are not guessed: such params stay strings", () => {
    const s = {
      definitions: { int: { type: "integer" } },
      properties: {
        ref: { $ref: "#/definitions/int" },
        any: { anyOf: [{ type: "integer" }, { type: "boolean" }] },
        nullable: { type: ["integer", "null"] },
      },
    };
    assert.deepEqual(errorsOf(validateParams(s, { ref: "5", any: "5", nullable: "5" })), [
      'param "ref" must be an integer',
      'param "any" must be an integer',
      'param "any" must be "true" or "false"',
      'param "any" must match a schema in anyOf',
      'param "nullable" must be an integer or empty',
    ]);
  });

  test("a name matching patternProperties is not typed by additionalProperties", () => {
    const s = { patternProperties: { "^s_": { type: "string" } }, additionalProperties: { type: "integer" } };
    assert.deepEqual(validateParams(s, { s_tag: "05", n: "5" }), {
      ok: true,
      params: { s_tag: "05", n: "5" },
    });
    assert.deepEqual(errorsOf(validateParams(s, { n: "05" })), [`param "n" ${INTEGER_RULE}, got "05"`]);
  });

  test("defaults come out as strings; a default of the wrong type is the schema's fault", () => {
    const s = {
      properties: {
        retries: { type: "integer", default: 2 },
        ratio: { type: "number", default: 1.5 },
        dryRun: { type: "boolean", default: false },
        level: { enum: [1, 2], default: 1 },
      },
    };
    assert.deepEqual(validateParams(s, {}), {
      ok: true,
      params: { retries: "2", ratio: "1.5", dryRun: "false", level: "1" },
    });
    for (const [type, value] of [
      ["integer", "3"],
      ["integer", 1.5],
      ["number", "1.5"],
      ["boolean", "false"],
    ] as const) {
      const error = schemaErrorOf(validateParams({ properties: { p: { type, default: value } } }, {}));
      assert.equal(error, `the default of param "p" is not a JSON ${type}: ${quote(String(value))}`);
    }
  });

  test("every problem is reported once, by the most precise message", () => {
    assert.deepEqual(
      errorsOf(validateParams(schema, { count: "05", flag: "yes", ratio: "1.50", level: "9" })),
      [
        `param "count" ${INTEGER_RULE}, got "05"`,
        `param "flag" ${BOOLEAN_RULE}, got "yes"`,
        'param "ratio" must be a number written in canonical form (write it as 1.5), got "1.50"',
        'param "level" must be one of: "1", "2", "3"',
      ],
    );
  });

  test("quoted values are bounded and escaped, and sensitive params are not quoted", () => {
    const huge = `0x${"f".repeat(65534)}`;
    const [message = ""] = errorsOf(validateParams(schema, { count: huge }));
    assert.ok(message.length < 300, message);
    assert.ok(message.endsWith('…"'), message);
    const [escaped = ""] = errorsOf(validateParams(schema, { count: "5\u202e\u0000" }));
    assert.ok(escaped.endsWith('got "5\\u202e\\u0000"'), escaped);
    assert.deepEqual(errorsOf(validateParams(schema, { count: "0x5", text: "t" }, ["count"])), [
      `param "count" ${INTEGER_RULE}`,
    ]);
  });

  test("prototype names work as typed params", () => {
    const proto = JSON.parse('{"__proto__": "5", "constructor": "05", "toString": "7"}') as Record<
      string,
      string
    >;
    assert.deepEqual(errorsOf(validateParams(open, proto)), [
      `param "constructor" ${INTEGER_RULE}, got "05"`,
    ]);
    const fine = JSON.parse('{"__proto__": "5", "constructor": "6"}') as Record<string, string>;
    const r = validateParams(open, fine);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(Object.entries(r.params), [
      ["__proto__", "5"],
      ["constructor", "6"],
    ]);
  });
});

describe("service patterns run in linear time", () => {
  const N = 65536;
  const byPattern = (pattern: string, value: string) =>
    validateParams({ properties: { v: { type: "string", pattern } } }, { v: value }).ok;

  test("catastrophic patterns give correct answers on long adversarial values", () => {
    const cases: [string, string, boolean][] = [
      ["^(a+)+$", `${"a".repeat(N - 1)}!`, false],
      ["^(a+)+$", "a".repeat(N), true],
      ["^(a|aa)+$", `${"a".repeat(N - 1)}!`, false],
      ["^(a|aa)+$", "a".repeat(N), true],
      ["(x+x+)+y", "x".repeat(N), false],
      ["(x+x+)+y", `y${"x".repeat(N - 1)}`, false],
      ["(x+x+)+y", `${"x".repeat(N - 1)}y`, true],
      ["^(\\w+\\s?)*$", `${"a ".repeat(N / 2 - 1)}!`, false],
      ["^([a-z0-9]+[-.]?)*[a-z0-9]+@x$", "a-".repeat(N / 2), false],
      ["^(.*a){12}$", `${"a".repeat(N - 1)}b`, false],
      ["^(a|b)*a(a|b){20}$", "ab".repeat(N / 2), false],
    ];
    for (const [pattern, value, expected] of cases)
      assert.equal(byPattern(pattern, value), expected, pattern);
  });

  test("each pattern of a schema keeps its own meaning", () => {
    // ajv shares compiled patterns by their toString; a shared one would check b against a's pattern.
    const s = {
      properties: { a: { type: "string", pattern: "^a$" }, b: { type: "string", pattern: "^b$" } },
    };
    assert.equal(validateParams(s, { a: "a", b: "b" }).ok, true);
    assert.deepEqual(errorsOf(validateParams(s, { a: "b", b: "a" })), [
      'param "a" must match pattern "^a$"',
      'param "b" must match pattern "^b$"',
    ]);
  });

  test("patternProperties keys run on the same engine", () => {
    const s = { patternProperties: { "^(a+)+$": { type: "string" } } };
    assert.equal(validateParams(s, { [`${"a".repeat(255)}`]: "x" }).ok, true);
    assert.deepEqual(errorsOf(validateParams(s, { [`${"a".repeat(255)}!`]: "x" })), [
      `unknown param ${quote(`${"a".repeat(255)}!`)} (the service accepts no other params)`,
    ]);
    const names = { propertyNames: { pattern: "^(a|aa)+$" }, additionalProperties: true };
    assert.equal(validateParams(names, { [`${"a".repeat(255)}!`]: "x" }).ok, false);
  });

  test("patterns the linear-time engine cannot run make the schema invalid, saying why", () => {
    const unsupported: [string, string][] = [
      ["^(?=a)", "lookahead and lookbehind"],
      ["^(?!a)", "lookahead and lookbehind"],
      ["(?<=a)b", "lookahead and lookbehind"],
      ["(?<!a)b", "lookahead and lookbehind"],
      ["(a)\\1", "backreferences"],
      ["(?<n>a)\\k<n>", "backreferences"],
      ["a{1001}", "invalid repeat count"],
      ["\\p{Letter}", "invalid character class range"],
      ["\\p{Script_Extensions=Greek}", "is not supported"],
    ];
    for (const [pattern, why] of unsupported) {
      for (const s of [
        { properties: { v: { type: "string", pattern } } },
        { patternProperties: { [pattern]: { type: "string" } } },
      ]) {
        const error = schemaErrorOf(validateParams(s, {}));
        assert.ok(
          error.startsWith(`pattern ${quote(pattern)} cannot run on the linear-time regex engine`),
          error,
        );
        assert.ok(error.includes(why), error);
      }
    }
  });

  test("patterns ECMAScript rejects (with the u flag) are invalid, even where RE2 would accept them", () => {
    for (const pattern of [
      "(",
      "a{",
      "\\p{Greek}",
      "[[:alpha:]]",
      "(?P<n>a)",
      "\\Aa\\z",
      "\\x{41}",
      "\\Qa\\E",
    ]) {
      const error = schemaErrorOf(validateParams({ properties: { v: { type: "string", pattern } } }, {}));
      assert.ok(error.startsWith("Invalid regular expression") || error.includes("schema is invalid"), error);
    }
  });
});

describe("the re2 engine means what RegExp means", () => {
  const patterns = [
    "^sha256:[a-f0-9]{64}$",
    "^v?[0-9]+\\.[0-9]+\\.[0-9]+$",
    "^[a-z0-9-]+$",
    "^https://",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    "^(main|release-[0-9]+\\.[0-9]+)$",
    "^[a-zA-Z_][a-zA-Z0-9_.-]*$",
    "^\\d{4}-\\d{2}-\\d{2}$",
    "^[\\w.+-]+@[\\w-]+(\\.[\\w-]+)+$",
    "^[^/]+/[^/]+$",
    "^\\S+$",
    "^\\s*$",
    "^[^\\s]+$",
    "^[\\S]+$",
    "^[\\s\\S]*$",
    "^[^]*$",
    "[]",
    "^.+$",
    "^.{1,3}$",
    "\\bword\\b",
    "\\Bor",
    "^$",
    "",
    "a|b",
    "^a|b$",
    "^(?:ab)+$",
    "^(?<name>a+)b$",
    "^\\p{L}+$",
    "^\\p{Lu}\\p{Ll}*$",
    "^[\\p{L}\\p{N}_-]+$",
    "^\\P{Cc}*$",
    "^[^\\p{L}]$",
    "^\\p{Script=Greek}+$",
    "^\\p{sc=Latin}+$",
    "^\\p{gc=Lu}$",
    "^\\p{General_Category=Nd}+$",
    "^\\p{Any}$",
    "^\\u00e9$",
    "^\\u{1F600}$",
    "^\\uD83D\\uDE00$",
    "^[\\uD800-\\uDFFF]$",
    "^\\uD83D$",
    "^[😀-😂]+$",
    "^.$",
    "^..$",
    "^\\x41\\cJ\\0$",
    "^[\\b]$",
    "^\\t\\n\\v\\f\\r$",
    "^[a\\-z]+$",
    "^[--/]+$",
    "^[a-]+$",
    "^\\/path$",
    "^\\$\\{[A-Z_]+\\}$",
    "^[[:a]+$",
    "^\\.$",
    "^[.]$",
    "^\\w+$",
    "^\\W+$",
    "^\\D+$",
    "^a{2,}$",
    "^a{2,3}?$",
    "^(a|ab)(c|bcd)(d*)$",
  ];
  const values = [
    "",
    "a",
    "b",
    "ab",
    "aa",
    "aaa",
    "abc",
    "abcd",
    "A",
    "Ab",
    "aB",
    "v1.2.3",
    "1.2.3",
    "v1.2",
    `sha256:${"a".repeat(64)}`,
    `sha256:${"a".repeat(63)}`,
    `sha256:${"A".repeat(64)}`,
    "https://x",
    "http://x",
    "main",
    "release-1.2",
    "release-1.2\n",
    "my-app",
    "-app",
    "app-",
    "_x.y-z",
    "2024-01-31",
    "٢٠٢٤-01-31",
    "a.b+c@d-e.fg",
    "a/b",
    "a/b/c",
    "a\nb",
    "a\rb",
    "a\u2028b",
    "a\u2029b",
    "a\u0085b",
    "\n",
    "\r",
    " ",
    "\t",
    "\v",
    "\f",
    "\u00a0",
    "\u1680",
    "\u180e",
    "\u200b",
    "\u2003",
    "\u3000",
    "\ufeff",
    "é",
    "e\u0301",
    "😀",
    "😃",
    "😀😁",
    "\uD83D",
    "\uDE00",
    "\uD83D\uDE00x",
    "ΑΒΓ",
    "αβγ",
    "Abc",
    "ǅ",
    "١٢٣",
    "word",
    "a word here",
    "swordfish",
    "for",
    "A\n\0",
    "\b",
    "\t\n\v\f\r",
    "a-z",
    "-",
    ".",
    "/",
    ",",
    "/path",
    `\${FOO_BAR}`,
    `\${foo}`,
    "[",
    ":",
    "[:a",
    "\u0000",
    "x y",
    "ÿ",
    "abcd",
    "abbcd",
  ];

  test("on a table of ordinary patterns and values", () => {
    for (const pattern of patterns) {
      const native = new RegExp(pattern, "u");
      const re2 = re2RegExp(pattern, "u");
      for (const value of values) {
        assert.equal(re2.test(value), native.test(value), `/${pattern}/u on ${JSON.stringify(value)}`);
      }
    }
  });

  test("class escapes, dot and boundaries agree on every BMP code point and a sample of astral ones", () => {
    const classes = [
      "^\\s$",
      "^\\S$",
      "^[^\\s]$",
      "^[\\s\\d]$",
      "^[^\\S\\n]$",
      "^.$",
      "^[^.]$",
      "^\\w$",
      "^\\W$",
      "^\\d$",
      "^\\D$",
      "^[^a-z]$",
      "a\\b",
      "a\\B",
      "^[\\u0000-\\u00ff]$",
    ];
    const codePoints: number[] = [];
    for (let cp = 0; cp <= 0xffff; cp++) codePoints.push(cp);
    for (let cp = 0x10000; cp <= 0x10ffff; cp += 0x3fff) codePoints.push(cp);
    for (const pattern of classes) {
      const native = new RegExp(pattern, "u");
      const re2 = re2RegExp(pattern, "u");
      const prefix = pattern.startsWith("a") ? "a" : "";
      for (const cp of codePoints) {
        const value = prefix + String.fromCodePoint(cp);
        if (re2.test(value) !== native.test(value)) assert.fail(`/${pattern}/u on U+${cp.toString(16)}`);
      }
    }
  });

  test("a pattern is a search, as JSON Schema says, and keeps its own toString", () => {
    assert.equal(re2RegExp("b", "u").test("abc"), true);
    assert.equal(String(re2RegExp("b", "u")), "/b/u");
    assert.throws(() => re2RegExp("b", ""), /only "u"/);
  });
});

describe("schemas cannot reach outside themselves", () => {
  test("a remote $ref is an error, not a fetch", () => {
    const error = schemaErrorOf(
      validateParams({ properties: { a: { $ref: "https://example.com/schema.json" } } }, { a: "x" }),
    );
    assert.match(error, /can't resolve reference https:\/\/example.com\/schema.json/);
  });

  test("$async anywhere is an error (its validate would return an always-truthy promise)", () => {
    schemaErrorOf(validateParams({ $async: true }, {}));
    schemaErrorOf(validateParams({ properties: { a: { $async: true, type: "string" } } }, { a: "x" }));
    const viaRef = {
      properties: { a: { $ref: "#/definitions/x" } },
      definitions: { x: { $async: true, type: "string" } },
    };
    schemaErrorOf(validateParams(viaRef, { a: "x" }));
  });

  test("$data is not supported: keywords never take their limits from the tenant's params", () => {
    const s = { properties: { a: { type: "string", pattern: { $data: "1/b" } }, b: { type: "string" } } };
    assert.match(schemaErrorOf(validateParams(s, { a: "x", b: "(a+)+$" })), /pattern must be string/);
    const max = { properties: { a: { type: "integer", maximum: { $data: "1/b" } }, b: { type: "integer" } } };
    schemaErrorOf(validateParams(max, { a: "5", b: "9" }));
  });

  test("an unknown format is an error rather than silently accepting everything", () => {
    assert.match(
      schemaErrorOf(validateParams({ properties: { v: { type: "string", format: "semver" } } }, { v: "x" })),
      /unknown format "semver"/,
    );
    // Unknown keywords stay tolerated (annotations, extensions).
    assert.equal(
      validateParams({ properties: { v: { type: "string", "x-ui": "text" } } }, { v: "x" }).ok,
      true,
    );
  });

  test("a very deeply nested schema is reported, not thrown", () => {
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 20_000; i++) deep = { properties: { a: deep } };
    assert.match(schemaErrorOf(validateParams(deep, {})), /nested too deeply/);
    let wide: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 3_000; i++) wide = { allOf: [wide] };
    assert.match(schemaErrorOf(validateParams(wide, {})), /nested too deeply/);
  });
});

describe("formats", () => {
  test("url, whose check is quadratic, is bounded to 2048 characters", () => {
    const s = { properties: { u: { type: "string", format: "url" } } };
    const fits = `https://example.com/${"a".repeat(2048 - 20)}`;
    assert.equal(fits.length, 2048);
    assert.deepEqual(validateParams(s, { u: fits }), { ok: true, params: { u: fits } });
    assert.deepEqual(errorsOf(validateParams(s, { u: `${fits}a` })), [
      'param "u" must be a valid url of at most 2048 characters',
    ]);
    assert.deepEqual(errorsOf(validateParams(s, { u: `http://${":".repeat(65529)}` })), [
      'param "u" must be a valid url of at most 2048 characters',
    ]);
  });

  test("byte is base64 as a whole value, not any line of it", () => {
    const s = { properties: { b: { type: "string", format: "byte" } } };
    for (const v of ["", "AAAA", "AA==", "AAA=", "ab+/"])
      assert.equal(validateParams(s, { b: v }).ok, true, v);
    for (const v of ["!!!\n", "!!!\nAAAA", "AAAA\n", "AAAA\nAAAA", "AAA", "A===", "AA==AAAA"]) {
      assert.deepEqual(errorsOf(validateParams(s, { b: v })), ['param "b" must be a valid byte'], v);
    }
  });

  test("other formats are unbounded and still checked", () => {
    const s = {
      properties: {
        uri: { type: "string", format: "uri" },
        email: { type: "string", format: "email" },
        n: { type: "integer", format: "int32" },
      },
    };
    assert.deepEqual(validateParams(s, { uri: "https://x/y", email: "a@b.io", n: "5" }), {
      ok: true,
      params: { uri: "https://x/y", email: "a@b.io", n: "5" },
    });
    assert.deepEqual(errorsOf(validateParams(s, { uri: "x y", email: "a@", n: "2147483648" })), [
      'param "uri" must be a valid uri',
      'param "email" must be a valid email',
      'param "n" must be a valid int32',
    ]);
  });
});
