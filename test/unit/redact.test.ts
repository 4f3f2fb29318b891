import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { maxPublishedChars, redact } from "../../src/policy/redact.ts";

const none = { secrets: [], patterns: [] };

describe("redact: what of a private failure's text may be published", () => {
  const cases: [string, string, { secrets?: string[]; patterns?: string[] }, string][] = [
    [
      "a sensitive param's value",
      "login failed for s3cr3t-Value!",
      { secrets: ["s3cr3t-Value!"] },
      "login failed for <redacted>",
    ],
    [
      "a secret containing another is replaced whole",
      "key abcdef and abc",
      { secrets: ["abc", "abcdef"] },
      "key <redacted> and <redacted>",
    ],
    [
      "a bearer token",
      'curl -H "Authorization: Bearer sha256~Zx9aQ1bC2dE3fG4" https://x',
      {},
      'curl -H "Authorization: Bearer <redacted>" https://x',
    ],
    ["basic credentials", "Authorization: Basic dXNlcjpwYXNzd29yZA==", {}, "Authorization: Basic <redacted>"],
    [
      "userinfo in a URL",
      "git clone https://bot:ghp_abc123@git.corp.example.com/a/b failed",
      {},
      "git clone https://<redacted>@git.corp.example.com/a/b failed",
    ],
    [
      "a JSON Web Token",
      "token eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl rejected",
      {},
      "token <redacted> rejected",
    ],
    [
      "a PEM block",
      "bad key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\ndone",
      {},
      "bad key:\n<redacted PEM block>\ndone",
    ],
    ["a PEM block cut off", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA", {}, "<redacted PEM block>"],
    [
      "key=value secrets",
      "password=hunter2 api_key: 'k-123' client-secret=\"x y\"",
      {},
      "password=<redacted> api_key: <redacted> client-secret=<redacted>",
    ],
    [
      "a secret in JSON",
      '{"user": "bot", "password": "a b c"}',
      {},
      '{"user": "bot", "password": <redacted>}',
    ],
    [
      "the config's patterns (internal host names)",
      "cannot reach vault.corp.example.com:8200 from build-7.corp.example.com",
      { patterns: ["[a-z0-9.-]+\\.corp\\.example\\.com"] },
      "cannot reach <redacted>:8200 from <redacted>",
    ],
    [
      "a config pattern that does not compile withholds the text",
      "anything",
      { patterns: ["ok", "(unclosed"] },
      "<withheld: the InternalServicesConfig's redactPatterns[1] is not a valid RE2 pattern>",
    ],
    [
      "ordinary text passes as it is",
      "step sign exited with code 1: digest mismatch",
      {},
      "step sign exited with code 1: digest mismatch",
    ],
  ];
  for (const [what, text, rules, published] of cases) {
    test(what, () => assert.equal(redact(text, { ...none, ...rules }), published));
  }

  test(`published text is at most ${maxPublishedChars} characters`, () => {
    const out = redact("é".repeat(10_000), none);
    assert.equal(Array.from(out).length, maxPublishedChars);
    assert.ok(out.endsWith("…"));
  });

  test("linear time on hostile text (64 KiB of near-matches for every rule)", () => {
    const hostile = "-----BEGIN A----- https://a@ bearer x eyJa. password= ".repeat(1200);
    const started = performance.now();
    const out = redact(hostile, { secrets: ["x".repeat(50)], patterns: ["(a+)+$"] });
    const ms = performance.now() - started;
    assert.ok(out.length <= maxPublishedChars);
    // Not a timing assertion of performance: a backtracking engine takes minutes here, RE2 milliseconds.
    assert.ok(ms < 5_000, `${ms} ms`);
  });
});
