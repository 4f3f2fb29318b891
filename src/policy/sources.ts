// Which raw pipelineRefs (InternalRequest spec.pipeline) the InternalServicesConfig allows, and the params
// as they must reach the PipelineRun: exactly what was checked, in canonical form.
import type {
  InternalRequestSpecPipelinePipelineRef,
  InternalServicesConfigSpec,
  InternalServicesConfigSpecAllowedPipelineSourcesItem,
} from "../generated/crds.ts";
import { compileGlob, type Matcher } from "./glob.ts";
import { listCapped, quote } from "./text.ts";

type Param = { name: string; value: string };

export type SourceCheck = { ok: true; params: Param[] } | { ok: false; message: string };

type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

interface Rule {
  resolver: string;
  /** The rule as a short text, for rejection messages. */
  label: string;
  /** The params to run with when `params` satisfy the rule, else why not. `unsafe[i]` is why
   *  params[i]'s value cannot be checked safely (see unsafeValue), if it cannot. */
  check(params: readonly Param[], unsafe: readonly (string | undefined)[]): Checked<Param[]>;
}

const SHOWN_RULES = 5; // rejection messages explain at most this many rules
const LEGACY_OPTIONAL = new Set(["revision", "pathInRepo"]);
const ADVICE =
  "use spec.service with a registered InternalService, or ask the service owners to allow this source " +
  "in spec.allowedPipelineSources of the InternalServicesConfig";

/** The params to run `ref` with (canonical values, in the request's order) when some rule allows it,
 *  else a message naming the resolver, the failing param and the rules that exist. */
export function checkPipelineSource(
  ref: InternalRequestSpecPipelinePipelineRef,
  config: InternalServicesConfigSpec,
): SourceCheck {
  const rules = [
    ...(config.allowedPipelineSources ?? []).map(globRule),
    ...(config.allowedGitResolverURLs ?? []).map(legacyGitRule),
  ];
  if (rules.length === 0) {
    return reject(
      `raw spec.pipeline requests are not allowed: the InternalServicesConfig has no allowedPipelineSources (or legacy allowedGitResolverURLs); ${ADVICE}`,
    );
  }
  const candidates = rules.filter((r) => r.resolver === ref.resolver);
  if (candidates.length === 0) {
    const resolvers = [...new Set(rules.map((r) => r.resolver))].map((r) => quote(r));
    return reject(
      `pipelineRef resolver ${quote(ref.resolver)} is not allowed: no rule in the InternalServicesConfig is for this resolver (rules exist for: ${listCapped(resolvers)}); ${ADVICE}`,
    );
  }
  const params = ref.params ?? [];
  const unsafe = params.map((p) => unsafeValue(p.value));
  const reasons: string[] = [];
  for (const rule of candidates) {
    const checked = rule.check(params, unsafe);
    if (checked.ok) return { ok: true, params: checked.value };
    if (reasons.length < SHOWN_RULES) reasons.push(`${rule.label}: ${checked.reason}`);
  }
  const more = candidates.length > SHOWN_RULES ? `; and ${candidates.length - SHOWN_RULES} more rules` : "";
  return reject(
    `pipelineRef (resolver ${quote(ref.resolver)}) matches none of the ${candidates.length} rule(s) for this resolver: ${reasons.join("; ")}${more}; ${ADVICE}`,
  );
}

const reject = (message: string): SourceCheck => ({ ok: false, message });
const no = <T>(reason: string): Checked<T> => ({ ok: false, reason });

function globRule(rule: InternalServicesConfigSpecAllowedPipelineSourcesItem, index: number): Rule {
  const globs = rule.params ?? {};
  const names = Object.keys(globs);
  const shown = names.slice(0, 4).map((name) => `${name}=${quote(globs[name] ?? "", 100)}`);
  const extra = names.length > 4 ? ", …" : "";
  return {
    resolver: rule.resolver,
    label: `allowedPipelineSources[${index}] (${shown.join(", ") || "no params"}${extra})`,
    check(params, unsafe) {
      const canonical: Param[] = [];
      for (const [i, { name, value }] of params.entries()) {
        const glob = Object.hasOwn(globs, name) ? globs[name] : undefined;
        if (glob === undefined) return no(`param ${quote(name)} is not named in this rule`);
        const problem = unsafe[i];
        if (problem !== undefined) return no(`param ${quote(name)} ${problem}`);
        const checked = compileValueGlob(glob)(value);
        if (!checked.ok) return no(`param ${quote(name)} ${checked.reason}`);
        canonical.push({ name, value: checked.value });
      }
      // A left-out param would not be "unchecked" but chosen by the resolver's own default.
      const missing = names.filter((name) => !params.some((p) => p.name === name));
      if (missing.length > 0) {
        return no(
          `missing param(s) ${listCapped(missing.map((n) => quote(n)))}: this rule requires every param it names (Tekton's resolver would otherwise use its own default); give them`,
        );
      }
      return { ok: true, value: canonical };
    },
  };
}

// Legacy entries keep the original contract: the url must be given and equal the entry; only revision
// and pathInRepo may accompany it, with any value — any safe value: no dot segments, encoded
// separators or controls (see unsafeValue), which no resolver should be handed. Values pass unchanged
// (the url is the entry itself).
function legacyGitRule(url: string, index: number): Rule {
  return {
    resolver: "git",
    label: `allowedGitResolverURLs[${index}] (url=${quote(url, 100)}, any revision and pathInRepo)`,
    check(params, unsafe) {
      if (!params.some((p) => p.name === "url")) return no('param "url" is missing');
      for (const [i, { name, value }] of params.entries()) {
        if (name === "url" && value !== url) return no('param "url" is not this exact URL');
        if (name !== "url" && !LEGACY_OPTIONAL.has(name))
          return no(`param ${quote(name)} is not allowed (only url, revision, pathInRepo)`);
        const problem = unsafe[i];
        if (problem !== undefined) return no(`param ${quote(name)} ${problem}`);
      }
      return { ok: true, value: params.map(({ name, value }) => ({ name, value })) };
    },
  };
}

// ---- Values a rule checks ----------------------------------------------------------------------------

/** Characters that hide or reorder text, or that parsers strip or split on: C0/C1 controls, format
 *  characters (zero-width, bidi), unpaired surrogates and every kind of space. */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Z}]/u;
const NON_ASCII = /\P{ASCII}/gu;
/** ASCII delimiters of paths and URLs, which a lookalike must not turn into after NFKC normalisation. */
const DELIMITERS = /[./\\%:@?#]/;
/** Percent-encoded ".", "/" or "\": they would hide a dot segment or a separator from the checks here,
 *  and servers decode them. */
const ENCODED_SEPARATOR = /%(2e|2f|5c)/i;
/** "%25" before two hex digits is a double encoding ("%252e" decodes to "%2e", then to "."); legitimate
 *  git URLs, revisions and paths never need one, so it is refused rather than decoded. */
const DOUBLE_ENCODED = /%25[0-9a-f]{2}/i;
/** Percent-encoded C0 controls and DEL (e.g. "%00", "%0a"), refused like the raw characters. */
const ENCODED_CONTROL = /%([01][0-9a-f]|7f)/i;
/** A "." or ".." path segment, also percent-encoded ("%2e", "%2E."). */
const DOT_SEGMENT = /^(\.|%2e){1,2}$/i;
const ENCODED_DOTS = /%2e/gi;
const SEPARATOR_NAMES: Record<string, string> = { "2e": '"."', "2f": '"/"', "5c": '"\\"' };

/** Why `value` is unsafe to match against any glob (completing "param "x" …"), or undefined. Every value
 *  a rule checks must pass, URL or not: globs treat "/" as the only separator and compare text as is,
 *  while resolvers and servers also resolve dot segments, decode percent-escapes and normalise Unicode. */
function unsafeValue(value: string): string | undefined {
  const invisible = INVISIBLE.exec(value);
  if (invisible) {
    const cp = invisible[0].codePointAt(0) ?? 0;
    return `contains a control, invisible or whitespace character (U+${hex(cp)}); remove it`;
  }
  if (value.includes("\\")) return 'contains a backslash, which some parsers read as "/"; use "/"';
  for (const [c] of value.matchAll(NON_ASCII)) {
    const folded = c.normalize("NFKC");
    if (DELIMITERS.test(folded)) {
      return `contains ${quote(c)} (U+${hex(c.codePointAt(0) ?? 0)}), which Unicode normalisation turns into ${quote(folded)}; write the ASCII character instead`;
    }
  }
  // Whole segments only: "refs/tags/v1.2.3" and "a..b" are fine, "releng/../x" and "%2e%2e" are not.
  const dots = value.split("/").find((s) => DOT_SEGMENT.test(s));
  if (dots !== undefined) {
    const written = dots.includes("%") ? ` (written ${quote(dots)})` : "";
    return `contains a ${quote(dots.replace(ENCODED_DOTS, "."))} path segment${written}, which could leave what the rule allows; give the path without "." and ".." segments`;
  }
  const separator = ENCODED_SEPARATOR.exec(value);
  if (separator) {
    const what = SEPARATOR_NAMES[(separator[1] ?? "").toLowerCase()];
    return `contains ${quote(separator[0])}, a percent-encoded ${what}, which would hide a path segment or separator from this check; write the character itself`;
  }
  const double = DOUBLE_ENCODED.exec(value);
  if (double) {
    return `contains ${quote(double[0])}, a double percent-encoding, which could decode to "." or "/" later; decode it once`;
  }
  const control = ENCODED_CONTROL.exec(value);
  if (control) return `contains ${quote(control[0])}, a percent-encoded control character; remove it`;
  return undefined;
}

const hex = (cp: number) => cp.toString(16).toUpperCase().padStart(4, "0");

/** A rule's glob for one param: whether a (safe, see unsafeValue) value is allowed, and its canonical
 *  form. Reasons complete "param "x" …". */
type ValueGlob = (value: string) => Checked<string>;

const compiledGlobs = new Map<string, ValueGlob>();
const MAX_CACHED = 4096; // globs come from a few config objects; the bound only guards against churn

function compileValueGlob(glob: string): ValueGlob {
  let compiled = compiledGlobs.get(glob);
  if (compiled) return compiled;
  compiled = URL_GLOB.test(glob) ? urlValueGlob(glob) : plainValueGlob(glob);
  if (compiledGlobs.size >= MAX_CACHED) compiledGlobs.clear();
  compiledGlobs.set(glob, compiled);
  return compiled;
}

function plainValueGlob(glob: string): ValueGlob {
  const matches = compileGlob(glob);
  return (value) => (matches(value) ? { ok: true, value } : no(`does not match ${quote(glob, 100)}`));
}

// ---- URL globs ---------------------------------------------------------------------------------------

/** A glob with a "scheme://" is a URL glob (also with a malformed scheme, which is then a config error). */
const URL_GLOB = /^[^/?#]*:\/\//;
const SCHEME = /^[a-z][a-z0-9+.-]*$/i;
/** scheme "://" authority, as written; some parsers accept "https:/host" or "https:///host", some not. */
const WRITTEN_URL = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i;
const DNS_LABEL = /^[a-z0-9-]+$/i;

/** A URL glob, parsed. Only the path is a glob; scheme, host and port are compared after WHATWG URL
 *  normalisation, so "*" can never cross into another part of the URL. */
interface UrlGlob {
  protocol: string;
  /** The exact hostname; with `subdomains`, what must follow one or more whole DNS labels (".example.com"). */
  host: string;
  subdomains: boolean;
  port: string;
  pathGlob: string;
  /** Query and fragment as in the href ("" for none), compared exactly. */
  tail: string;
}

function urlValueGlob(glob: string): ValueGlob {
  const parsed = parseUrlGlob(glob);
  if (typeof parsed === "string") {
    const reason = `cannot match: the rule's glob ${quote(glob, 100)} is invalid (${parsed}); ask the service owners to fix the rule`;
    return () => no(reason);
  }
  const path = compileGlob(parsed.pathGlob);
  return (value) => {
    const checked = matchUrl(parsed, path, value);
    return checked.ok ? checked : no(`does not match ${quote(glob, 100)}: ${checked.reason}`);
  };
}

function matchUrl(parsed: UrlGlob, path: Matcher, value: string): Checked<string> {
  const url = parseUrlValue(value, parsed);
  if (!url.ok) return url;
  const { hostname, port, pathname } = url.value;
  if (!hostAllowed(parsed, hostname)) return no(`its host is ${quote(hostname)}, ${describeHost(parsed)}`);
  if (port !== parsed.port) {
    const allowed = parsed.port === "" ? "the scheme's default port" : quote(parsed.port);
    return no(`its port is ${quote(port || "(default)")}, not ${allowed}`);
  }
  if (!path(pathname))
    return no(`its path ${quote(pathname, 100)} does not match ${quote(parsed.pathGlob, 100)}`);
  const tail = tailOf(url.value);
  if (tail !== parsed.tail) {
    const allowed = parsed.tail === "" ? "none; remove it" : `only ${quote(parsed.tail, 100)}`;
    return no(`its query or fragment is ${quote(tail || "(none)", 100)}, the rule allows ${allowed}`);
  }
  return { ok: true, value: url.value.href };
}

/** The URL glob, or why it is a config error. */
function parseUrlGlob(glob: string): UrlGlob | string {
  const scheme = glob.slice(0, glob.indexOf(":"));
  if (!SCHEME.test(scheme)) return `its scheme ${quote(scheme)} must be written out, without *`;
  if (authorityOf(glob).includes("@")) return "it has a user name, and URLs with one are never allowed";
  let url: URL;
  try {
    url = new URL(glob);
  } catch {
    return 'it is not a valid URL (only its path may be a glob, and its host only start with "*.")';
  }
  const subdomains = url.hostname.startsWith("*.");
  const host = url.hostname.slice(subdomains ? 1 : 0);
  if (host === "") return "it has no host";
  if (host.includes("*"))
    return 'its host has a "*" other than a leading "*." (one or more whole DNS labels)';
  const tail = tailOf(url);
  if (tail.includes("*")) return "its query and fragment cannot be globs";
  return { protocol: url.protocol, host, subdomains, port: url.port, pathGlob: url.pathname, tail };
}

/** `value` parsed, when it is written as scheme://host… with the glob's scheme and without userinfo
 *  (WHATWG's protocol is then the written scheme, lowercased). */
function parseUrlValue(value: string, glob: UrlGlob): Checked<URL> {
  const written = WRITTEN_URL.exec(value);
  if (!written) {
    return no(
      "it is not a URL of the form scheme://host/path (scp-like git@host:path addresses are not accepted)",
    );
  }
  const [, scheme = "", authority = ""] = written;
  if (`${scheme.toLowerCase()}:` !== glob.protocol)
    return no(`its scheme is ${quote(scheme)}, not ${quote(glob.protocol.slice(0, -1))}`);
  if (authority.includes("@"))
    return no("it has a user name or password (userinfo), which is never allowed; give the URL without it");
  if (authority === "") return no('it has no host after "//"');
  try {
    return { ok: true, value: new URL(value) };
  } catch {
    return no("it is not a valid URL");
  }
}

function hostAllowed(glob: UrlGlob, hostname: string): boolean {
  if (!glob.subdomains) return hostname === glob.host;
  if (!hostname.endsWith(glob.host)) return false;
  const labels = hostname.slice(0, -glob.host.length);
  return labels !== "" && labels.split(".").every((label) => DNS_LABEL.test(label));
}

function describeHost(glob: UrlGlob): string {
  return glob.subdomains
    ? `not a subdomain of ${quote(glob.host.slice(1))} (one or more whole DNS labels before it)`
    : `not ${quote(glob.host)}`;
}

/** What follows "//" up to the path, query or fragment, as written. */
const authorityOf = (url: string): string => WRITTEN_URL.exec(url)?.[2] ?? "";

/** "?query#fragment" as in the href, keeping an empty "?" or "#" ("" when there is neither). Only for
 *  URLs without userinfo, whose href is protocol//host path tail. */
const tailOf = (url: URL): string => url.href.slice(`${url.protocol}//${url.host}${url.pathname}`.length);
