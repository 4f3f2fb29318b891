import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { InternalServicesConfigSpec } from "../../src/generated/crds.ts";
import { checkPipelineSource } from "../../src/policy/sources.ts";

/** undefined when some rule allows `ref`, else the rejection message. */
function pipelineSourceRejection(
  r: Parameters<typeof checkPipelineSource>[0],
  config: InternalServicesConfigSpec,
): string | undefined {
  const checked = checkPipelineSource(r, config);
  return checked.ok ? undefined : checked.message;
}

const ref = (resolver: string, params: Record<string, string>) => ({
  resolver,
  params: Object.entries(params).map(([name, value]) => ({ name, value })),
});

/** The value of `name` that would reach the PipelineRun, or the rejection message. */
function outcome(config: InternalServicesConfigSpec, params: Record<string, string>, name = "url") {
  const checked = checkPipelineSource(ref("git", params), config);
  return checked.ok
    ? { value: checked.params.find((p) => p.name === name)?.value }
    : { message: checked.message };
}

/** Each row: the value, then the value that reaches the PipelineRun or a RegExp for the rejection. */
type Row = [string, string | RegExp];

function table(config: InternalServicesConfigSpec, base: Record<string, string>, name: string, rows: Row[]) {
  for (const [value, expected] of rows) {
    const verb = typeof expected === "string" ? "accepts" : "rejects";
    test(`${verb} ${name} ${JSON.stringify(value.length > 120 ? `${value.slice(0, 120)}…` : value)}`, () => {
      const got = outcome(config, { ...base, [name]: value }, name);
      if (typeof expected === "string") {
        assert.deepEqual(got, { value: expected });
      } else {
        assert.ok(got.message !== undefined, `accepted as ${got.value}`);
        assert.match(got.message, expected);
        assert.match(got.message, new RegExp(`param "${name}"|"${name}"`));
        assert.match(got.message, /use spec\.service .*spec\.allowedPipelineSources/); // what to do
      }
    });
  }
}

const GIT = { revision: "refs/tags/v1.2.3", pathInRepo: "pipelines/sign.yaml" };
const gitRule = (url: string): InternalServicesConfigSpec => ({
  allowedPipelineSources: [
    { resolver: "git", params: { url, revision: "refs/tags/*", pathInRepo: "pipelines/**" } },
  ],
});

describe("pipeline sources", () => {
  const rules: InternalServicesConfigSpec = {
    allowedPipelineSources: [
      {
        resolver: "git",
        params: {
          url: "https://gitlab.internal/releng/*",
          revision: "refs/tags/*",
          pathInRepo: "pipelines/*.yaml",
        },
      },
      { resolver: "cluster", params: { name: "**", namespace: "releng", kind: "pipeline" } },
    ],
  };
  const url = "https://gitlab.internal/releng/sign.git";
  const full = { url, revision: "refs/tags/v1", pathInRepo: "pipelines/sign.yaml" };

  test("accepts a ref whose every param matches a rule's glob, with the params in the request's order", () => {
    const reordered = ref("git", { pathInRepo: full.pathInRepo, url, revision: full.revision });
    assert.deepEqual(checkPipelineSource(reordered, rules), { ok: true, params: reordered.params });
    assert.equal(pipelineSourceRejection(reordered, rules), undefined);
    const cluster = ref("cluster", { name: "a/b", namespace: "releng", kind: "pipeline" });
    assert.deepEqual(checkPipelineSource(cluster, rules), { ok: true, params: cluster.params });
  });

  test("every param a rule names is required, even with the glob **", () => {
    // Left out, Tekton's resolver would choose its own default (e.g. the default branch).
    const noRevision = pipelineSourceRejection(ref("git", { url, pathInRepo: full.pathInRepo }), rules);
    assert.match(noRevision ?? "", /missing param\(s\) "revision": this rule requires every param it names/);
    assert.match(noRevision ?? "", /allowedPipelineSources\[0\]/);
    const onlyUrl = pipelineSourceRejection(ref("git", { url }), rules);
    assert.match(onlyUrl ?? "", /missing param\(s\) "revision", "pathInRepo"/);
    const noName = pipelineSourceRejection(ref("cluster", { namespace: "releng", kind: "pipeline" }), rules);
    assert.match(noName ?? "", /missing param\(s\) "name"/);
  });

  test("names the resolver and the param that failed, and the rule", () => {
    const msg = pipelineSourceRejection(ref("git", { ...full, revision: "main" }), rules) ?? "";
    assert.match(msg, /resolver "git"/);
    assert.match(msg, /param "revision" does not match "refs\/tags\/\*"/);
    assert.match(msg, /allowedPipelineSources\[0\]/);
    assert.match(msg, /spec\.service/);
    const extra = pipelineSourceRejection(ref("git", { ...full, token: "t" }), rules) ?? "";
    assert.match(extra, /param "token" is not named in this rule/);
    const deeper = pipelineSourceRejection(
      ref("git", { ...full, url: "https://gitlab.internal/releng/x/y.git" }),
      rules,
    );
    assert.match(
      deeper ?? "",
      /param "url" does not match "https:\/\/gitlab.internal\/releng\/\*": its path "\/releng\/x\/y.git" does not match "\/releng\/\*"/,
    );
  });

  test("a resolver without rules, or no rules at all, is rejected with what exists", () => {
    const msg = pipelineSourceRejection(ref("bundles", { bundle: "quay.io/x" }), rules) ?? "";
    assert.match(msg, /resolver "bundles" is not allowed.*rules exist for: "git", "cluster"/);
    const none = pipelineSourceRejection(ref("git", { url }), {}) ?? "";
    assert.match(none, /no allowedPipelineSources/);
  });

  test("a rule without params allows only refs without params", () => {
    const bare: InternalServicesConfigSpec = { allowedPipelineSources: [{ resolver: "hub" }] };
    assert.deepEqual(checkPipelineSource(ref("hub", {}), bare), { ok: true, params: [] });
    assert.match(pipelineSourceRejection(ref("hub", { name: "x" }), bare) ?? "", /param "name" is not named/);
  });

  test("legacy allowedGitResolverURLs: exact url, any revision/pathInRepo, nothing else", () => {
    const legacy: InternalServicesConfigSpec = { allowedGitResolverURLs: ["https://github.com/org/*"] };
    const exact = "https://github.com/org/*"; // "*" is literal in legacy entries
    // The legacy contract: revision and pathInRepo pass with any safe value, unchanged.
    const ok = ref("git", { url: exact, revision: "any/thing", pathInRepo: "x/y.yaml" });
    assert.deepEqual(checkPipelineSource(ok, legacy), { ok: true, params: ok.params });
    assert.deepEqual(checkPipelineSource(ref("git", { url: exact }), legacy), {
      ok: true,
      params: [{ name: "url", value: exact }],
    });
    const cases: [Record<string, string>, RegExp][] = [
      [{ url: "https://github.com/org/repo" }, /param "url" is not this exact URL/],
      [{ url: "HTTPS://github.com/org/*" }, /param "url" is not this exact URL/],
      [{ url: exact, token: "x" }, /param "token" is not allowed \(only url, revision, pathInRepo\)/],
      [{ revision: "main" }, /param "url" is missing/],
      // Any value, but never one that leaves the repository or hides a separator.
      [{ url: exact, pathInRepo: "../../x.yaml" }, /param "pathInRepo" contains a "\.\." path segment/],
      [{ url: exact, pathInRepo: "a/%2e%2e/x.yaml" }, /param "pathInRepo"/],
      [{ url: exact, revision: "main\n--upload-pack=x" }, /param "revision"/],
    ];
    for (const [params, why] of cases) {
      const msg = pipelineSourceRejection(ref("git", params), legacy) ?? "";
      assert.match(msg, why);
      assert.match(msg, /allowedGitResolverURLs\[0\]/);
    }
    assert.match(
      pipelineSourceRejection(ref("bundles", {}), legacy) ?? "",
      /resolver "bundles" is not allowed/,
    );
    // Legacy entries and glob rules combine: either may match.
    const both = { ...rules, ...legacy };
    assert.equal(pipelineSourceRejection(ref("git", full), both), undefined);
    assert.equal(pipelineSourceRejection(ref("git", { url: exact }), both), undefined);
  });

  test("caps the explanation when there are many rules", () => {
    const many: InternalServicesConfigSpec = {
      allowedGitResolverURLs: Array.from(
        { length: 1000 },
        (_, i) => `https://git.example/${i}/${"x".repeat(500)}`,
      ),
    };
    const msg = pipelineSourceRejection(ref("git", { url: "https://elsewhere" }), many) ?? "";
    assert.match(msg, /matches none of the 1000 rule\(s\)/);
    assert.match(msg, /and 995 more rules/);
    assert.ok(msg.length < 2000, `message is ${msg.length} characters`);
  });

  test("the first rule that allows the ref gives the params", () => {
    const two: InternalServicesConfigSpec = {
      allowedPipelineSources: [
        { resolver: "git", params: { url: "https://gitlab.internal/releng/*" } },
        { resolver: "git", params: { url: "**" } },
      ],
    };
    assert.deepEqual(outcome(two, { url: "HTTPS://GitLab.Internal/releng/x" }), {
      value: "https://gitlab.internal/releng/x",
    });
    // The second rule allows any text, as written (it is not a URL glob).
    assert.deepEqual(outcome(two, { url: "HTTPS://GitLab.Internal:8443/x" }), {
      value: "HTTPS://GitLab.Internal:8443/x",
    });
  });
});

describe("pipeline sources: URL globs with a host wildcard", () => {
  const config = gitRule("https://*.internal.example.com/releng/*");
  table(config, GIT, "url", [
    ["https://git.internal.example.com/releng/sign.git", "https://git.internal.example.com/releng/sign.git"],
    ["https://a.b.internal.example.com/releng/x", "https://a.b.internal.example.com/releng/x"], // 1+ labels
    ["https://GIT.Internal.EXAMPLE.com/releng/x", "https://git.internal.example.com/releng/x"],
    ["HTTPS://git.internal.example.com/releng/x", "https://git.internal.example.com/releng/x"],
    ["https://git.internal.example.com:443/releng/x", "https://git.internal.example.com/releng/x"],
    ["https://git.internal.example.com:0443/releng/x", "https://git.internal.example.com/releng/x"],
    ["https://bücher.internal.example.com/releng/x", "https://xn--bcher-kva.internal.example.com/releng/x"],
    [
      "https://git.internal.example.com/releng/@evil.com",
      "https://git.internal.example.com/releng/@evil.com",
    ],
    ["https://git.internal.example.com/releng/a%20b", "https://git.internal.example.com/releng/a%20b"],
    [
      `https://git.internal.example.com/releng/${"x".repeat(3900)}`,
      `https://git.internal.example.com/releng/${"x".repeat(3900)}`,
    ],
    // The real host is elsewhere: "*" must never cross into the query, fragment, userinfo or port.
    [
      "https://evil.com?.internal.example.com/releng/x",
      /does not match "https:\/\/\*.internal.example.com\/releng\/\*": its host is "evil.com", not a subdomain of "internal.example.com"/,
    ],
    ["https://evil.com#.internal.example.com/releng/x", /its host is "evil.com"/],
    ["https://evil.com/.internal.example.com/releng/x", /its host is "evil.com"/],
    [
      "https://x.internal.example.com@evil.com/releng/x",
      /has a user name or password \(userinfo\), which is never allowed; give the URL without it/,
    ],
    ["https://user:pw@git.internal.example.com/releng/x", /userinfo/],
    ["https://@git.internal.example.com/releng/x", /userinfo/],
    ["https://evil.com:443.internal.example.com/releng/x", /not a valid URL/],
    ["https://evil.com\\.internal.example.com/releng/x", /contains a backslash/],
    ["https://evil.com%2f.internal.example.com/releng/x", /contains "%2f", a percent-encoded "\/"/],
    ["https://evil.com%23.internal.example.com/releng/x", /not a valid URL/],
    [
      "https://evil.com%00.internal.example.com/releng/x",
      /contains "%00", a percent-encoded control character/,
    ],
    [
      "https://evil.com\u0000.internal.example.com/releng/x",
      /control, invisible or whitespace character \(U\+0000\)/,
    ],
    [
      "https://evil.com\t.internal.example.com/releng/x",
      /control, invisible or whitespace character \(U\+0009\)/,
    ],
    ["https://evil.com .internal.example.com/releng/x", /whitespace character \(U\+0020\)/],
    ["https://evil.com\u200b.internal.example.com/releng/x", /invisible .* \(U\+200B\)/],
    [
      "https://evil.com\uff0f.internal.example.com/releng/x",
      /"／" \(U\+FF0F\), which Unicode normalisation turns into "\/"/,
    ],
    [
      "https://evil.com\uff20x.internal.example.com/releng/x",
      /\(U\+FF20\), which Unicode normalisation turns into "@"/,
    ],
    // Not one or more whole labels before the rest.
    [
      "https://internal.example.com/releng/x",
      /its host is "internal.example.com", not a subdomain of "internal.example.com" \(one or more whole DNS labels before it\)/,
    ],
    ["https://evilinternal.example.com/releng/x", /its host is "evilinternal.example.com"/],
    ["https://a..internal.example.com/releng/x", /its host is "a..internal.example.com"/],
    ["https://a_b.internal.example.com/releng/x", /its host is "a_b.internal.example.com"/],
    ["https://git.internal.example.com./releng/x", /its host is "git.internal.example.com."/], // trailing dot
    ["https://git.internal.example.com.evil.com/releng/x", /its host is "git.internal.example.com.evil.com"/],
    ["https://[::1]/releng/x", /its host is "\[::1\]"/],
    ["https://127.0.0.1/releng/x", /its host is "127.0.0.1"/],
    // Other schemes, ports and forms.
    ["http://git.internal.example.com/releng/x", /its scheme is "http", not "https"/],
    ["git+ssh://git.internal.example.com/releng/x", /its scheme is "git\+ssh"/],
    ["file:///releng/x", /its scheme is "file"/],
    ["https://git.internal.example.com:8443/releng/x", /its port is "8443", not the scheme's default port/],
    ["https:///git.internal.example.com/releng/x", /has no host after "\/\/"/], // WHATWG would take the host
    ["https:/git.internal.example.com/releng/x", /is not a URL of the form scheme:\/\/host\/path/],
    ["git@git.internal.example.com:releng/x", /is not a URL of the form scheme:\/\/host\/path \(scp-like/],
    ["//git.internal.example.com/releng/x", /is not a URL of the form/],
    ["https://git.internal.example.com", /its path "\/" does not match "\/releng\/\*"/],
    [
      "https://git.internal.example.com/releng/x?ref=main",
      /its query or fragment is "\?ref=main", the rule allows none; remove it/,
    ],
    ["https://git.internal.example.com/releng/x?", /its query or fragment is "\?"/],
    ["https://git.internal.example.com/releng/x#frag", /its query or fragment is "#frag"/],
    [
      "https://git.internal.example.com/releng/a/b",
      /its path "\/releng\/a\/b" does not match "\/releng\/\*"/,
    ],
    [
      `https://git.internal.example.com/releng/${"a/".repeat(2000)}x`,
      /its path ".*" does not match "\/releng\/\*"/,
    ],
  ]);
});

describe("pipeline sources: URL globs with an exact host", () => {
  table(gitRule("https://gitlab.internal/releng/**"), GIT, "url", [
    ["https://gitlab.internal/releng/a/b.git", "https://gitlab.internal/releng/a/b.git"],
    ["https://GITLAB.INTERNAL/releng/x", "https://gitlab.internal/releng/x"],
    ["https://x.gitlab.internal/releng/x", /its host is "x.gitlab.internal", not "gitlab.internal"/],
    ["https://gitlab.internal.evil.com/releng/x", /its host is "gitlab.internal.evil.com"/],
    ["https://gitlab.internal:444/releng/x", /its port is "444"/],
    [
      "https://gitlab.internal/releng/../admin/x",
      /contains a ".." path segment, which could leave what the rule allows; give the path without "." and ".." segments/,
    ],
    ["https://gitlab.internal/releng/./x", /contains a "." path segment/],
    ["https://gitlab.internal/releng/%2e%2e/admin", /contains a ".." path segment \(written "%2e%2e"\)/],
    ["https://gitlab.internal/releng/%2E%2e/admin", /contains a ".." path segment \(written "%2E%2e"\)/],
    ["https://gitlab.internal/releng/%2e/admin", /contains a "." path segment \(written "%2e"\)/],
    ["https://gitlab.internal/releng/v1%2E0", /contains "%2E", a percent-encoded "."/],
    ["https://gitlab.internal/releng/.%2e/admin", /contains a ".." path segment \(written ".%2e"\)/],
    ["https://gitlab.internal/releng%2F..%2Fadmin", /contains "%2F", a percent-encoded "\/"/],
    ["https://gitlab.internal/releng/..%5cadmin", /contains "%5c", a percent-encoded "\\"/],
    ["https://gitlab.internal/releng/%252e%252e/admin", /contains "%252e", a double percent-encoding/],
    ["https://gitlab.internal/releng/%u002e", "https://gitlab.internal/releng/%u002e"], // not an escape
    [
      "https://gitlab.internal/releng/\uff0e\uff0e/admin",
      /"．" \(U\+FF0E\), which Unicode normalisation turns into "."/,
    ],
    [
      "https://gitlab.internal/releng/\u2025/admin",
      /\(U\+2025\), which Unicode normalisation turns into "\.\."/,
    ],
    ["https://gitlab.internal/releng/a\u202ex", /invisible .* \(U\+202E\)/],
    ["https://gitlab.internal/releng/a\nb", /\(U\+000A\)/],
  ]);
});

describe("pipeline sources: URL globs with ports, IP literals and other schemes", () => {
  table(gitRule("https://[fd00::1]:8443/releng/*"), GIT, "url", [
    ["https://[FD00:0:0::1]:8443/releng/x", "https://[fd00::1]:8443/releng/x"],
    ["https://[fd00::1]:08443/releng/x", "https://[fd00::1]:8443/releng/x"],
    ["https://[fd00::1]/releng/x", /its port is "\(default\)", not "8443"/],
    ["https://[fd00::2]:8443/releng/x", /its host is "\[fd00::2\]", not "\[fd00::1\]"/],
  ]);
  table(gitRule("git+ssh://*.internal.example.com/releng/*"), GIT, "url", [
    ["git+ssh://git.internal.example.com/releng/x", "git+ssh://git.internal.example.com/releng/x"],
    ["git+ssh://git@git.internal.example.com/releng/x", /userinfo/],
    ["https://git.internal.example.com/releng/x", /its scheme is "https", not "git\+ssh"/],
    ["git+ssh://g%69t.internal.example.com/releng/x", /its host is "g%69t.internal.example.com"/],
  ]);
});

describe("pipeline sources: values a rule checks", () => {
  const config = gitRule("https://gitlab.internal/releng/*");
  const base = { url: "https://gitlab.internal/releng/x", ...GIT };
  table(config, base, "revision", [
    ["refs/tags/v1.2.3", "refs/tags/v1.2.3"], // dots inside a segment are fine
    ["refs/tags/release-1.0", "refs/tags/release-1.0"],
    ["refs/tags/a..b", "refs/tags/a..b"],
    ["refs/tags/...", "refs/tags/..."],
    [
      "refs/tags/..",
      /param "revision" contains a ".." path segment, which could leave what the rule allows; give the path without "." and ".." segments/,
    ],
    ["refs/tags/../heads/main", /contains a ".." path segment/],
    ["refs/tags/.", /contains a "." path segment/],
    ["refs/tags/%2e%2e", /contains a ".." path segment \(written "%2e%2e"\)/],
    ["refs/tags/v1%2e2", /contains "%2e", a percent-encoded ".".*write the character itself/],
    ["refs/tags/v1%2fx", /contains "%2f", a percent-encoded "\/"/],
    ["refs/tags/v1\\x", /contains a backslash, which some parsers read as "\/"; use "\/"/],
    ["refs/tags/v1\n", /control, invisible or whitespace character \(U\+000A\); remove it/],
    ["refs/tags/v1%0a", /contains "%0a", a percent-encoded control character; remove it/],
    ["refs/tags/v1%7F", /contains "%7F", a percent-encoded control character/],
    ["refs/tags/v1%252f", /contains "%252f", a double percent-encoding.*decode it once/],
    ["refs/tags/v1%25", "refs/tags/v1%25"], // "%25" before no hex digits is no double encoding
    ["refs/tags/v1\u00a0", /whitespace character \(U\+00A0\)/],
    ["refs/tags/v1\ufeff", /invisible .* \(U\+FEFF\)/],
    ["refs/tags/v1\ud800", /\(U\+D800\)/], // unpaired surrogate
    ["refs/tags/v1\u2024x", /\(U\+2024\), which Unicode normalisation turns into "."/],
    ["refs/heads/main", /param "revision" does not match "refs\/tags\/\*"/],
  ]);
  table(config, base, "pathInRepo", [
    ["pipelines/a/b.yaml", "pipelines/a/b.yaml"],
    ["pipelines/../secrets.yaml", /param "pathInRepo" contains a ".." path segment/],
    ["pipelines/..", /contains a ".." path segment/],
    ["pipelines/%2E%2E/secrets.yaml", /contains a ".." path segment \(written "%2E%2E"\)/],
    ["pipelines/..%2Fsecrets.yaml", /percent-encoded "\/"/],
    ["pipelines/..\\secrets.yaml", /backslash/],
    ["pipelines/\uff0e\uff0e/secrets.yaml", /\(U\+FF0E\)/],
    ["pipelines/a\uff3cb.yaml", /\(U\+FF3C\), which Unicode normalisation turns into "\\"/],
    ["pipelines/ü.yaml", "pipelines/ü.yaml"],
    ["other/a.yaml", /param "pathInRepo" does not match "pipelines\/\*\*"/],
  ]);
});

describe("pipeline sources: invalid URL globs never match and say why", () => {
  const rows: [string, RegExp][] = [
    ["http*://gitlab.internal/releng/*", /its scheme "http\*" must be written out, without \*/],
    ["*://gitlab.internal/releng/*", /its scheme "\*" must be written out/],
    ["https://git*.internal/releng/*", /its host has a "\*" other than a leading "\*\."/],
    ["https://**.internal/releng/*", /its host has a "\*" other than a leading "\*\."/],
    ["https://*/releng/*", /its host has a "\*"/],
    ["https://a.*.internal/releng/*", /its host has a "\*"/],
    ["https://gitlab.internal:*/releng/*", /it is not a valid URL \(only its path may be a glob/],
    ["https://git@gitlab.internal/releng/*", /it has a user name, and URLs with one are never allowed/],
    ["https://gitlab.internal/releng/*?ref=*", /its query and fragment cannot be globs/],
    ["file:///srv/git/*", /it has no host/],
  ];
  for (const [glob, why] of rows) {
    test(`${JSON.stringify(glob)} is a config error`, () => {
      const msg = outcome(gitRule(glob), { url: "https://gitlab.internal/releng/x", ...GIT }).message ?? "";
      assert.match(msg, /param "url" cannot match: the rule's glob ".*" is invalid/);
      assert.match(msg, why);
      assert.match(msg, /ask the service owners to fix the rule/);
    });
  }

  test("globs without a scheme:// are plain globs, also for scp-like addresses", () => {
    const scp = gitRule("git@gitlab.internal:releng/*");
    assert.deepEqual(outcome(scp, { url: "git@gitlab.internal:releng/x", ...GIT }), {
      value: "git@gitlab.internal:releng/x",
    });
    assert.match(
      outcome(scp, { url: "git@gitlab.internal:releng/../x", ...GIT }).message ?? "",
      /".." path segment/,
    );
    const bundles: InternalServicesConfigSpec = {
      allowedPipelineSources: [
        {
          resolver: "bundles",
          params: { bundle: "quay.internal/releng/pipelines@sha256:*", name: "*", kind: "pipeline" },
        },
      ],
    };
    const bundle = ref("bundles", {
      bundle: "quay.internal/releng/pipelines@sha256:abc",
      name: "sign",
      kind: "pipeline",
    });
    assert.deepEqual(checkPipelineSource(bundle, bundles), { ok: true, params: bundle.params });
  });
});
