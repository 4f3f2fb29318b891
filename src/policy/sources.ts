// Which raw pipelineRefs (InternalRequest spec.pipeline) the InternalServicesConfig allows.
import type {
  InternalRequestSpecPipelinePipelineRef,
  InternalServicesConfigSpec,
  InternalServicesConfigSpecAllowedPipelineSourcesItem,
} from "../generated/crds.ts";
import { globMatch } from "./glob.ts";
import { listCapped, quote } from "./text.ts";

type Param = { name: string; value: string };

interface Rule {
  resolver: string;
  /** The rule as a short text, for rejection messages. */
  label: string;
  /** Why `params` do not satisfy the rule, or undefined when they do. */
  mismatch(params: readonly Param[]): string | undefined;
}

const SHOWN_RULES = 5; // rejection messages explain at most this many rules
const LEGACY_OPTIONAL = new Set(["revision", "pathInRepo"]);
/** A ".." path segment, also percent-encoded. */
const DOT_DOT = /(^|[/\\])(\.|%2e){2}([/\\?#]|$)/i;

/** undefined when some rule allows `ref`, else a message naming the resolver, the failing param and the
 *  rules that exist. */
export function pipelineSourceRejection(
  ref: InternalRequestSpecPipelinePipelineRef,
  config: InternalServicesConfigSpec,
): string | undefined {
  const rules = [
    ...(config.allowedPipelineSources ?? []).map(globRule),
    ...(config.allowedGitResolverURLs ?? []).map(legacyGitRule),
  ];
  const params = ref.params ?? [];
  const candidates = rules.filter((r) => r.resolver === ref.resolver);
  if (candidates.some((r) => r.mismatch(params) === undefined)) return undefined;

  const advice =
    "use spec.service with a registered InternalService, or ask the service owners to allow this source " +
    "in spec.allowedPipelineSources of the InternalServicesConfig";
  if (rules.length === 0) {
    return `raw spec.pipeline requests are not allowed: the InternalServicesConfig has no allowedPipelineSources (or legacy allowedGitResolverURLs); ${advice}`;
  }
  if (candidates.length === 0) {
    const resolvers = [...new Set(rules.map((r) => r.resolver))].map((r) => quote(r));
    return `pipelineRef resolver ${quote(ref.resolver)} is not allowed: no rule in the InternalServicesConfig is for this resolver (rules exist for: ${listCapped(resolvers)}); ${advice}`;
  }
  const reasons = candidates.slice(0, SHOWN_RULES).map((r) => `${r.label}: ${r.mismatch(params)}`);
  const more = candidates.length > SHOWN_RULES ? `; and ${candidates.length - SHOWN_RULES} more rules` : "";
  return `pipelineRef (resolver ${quote(ref.resolver)}) matches none of the ${candidates.length} rule(s) for this resolver: ${reasons.join("; ")}${more}; ${advice}`;
}

function globRule(rule: InternalServicesConfigSpecAllowedPipelineSourcesItem, index: number): Rule {
  const globs = rule.params ?? {};
  const shown = Object.entries(globs)
    .slice(0, 4)
    .map(([name, glob]) => `${name}=${quote(glob, 100)}`);
  const extra = Object.keys(globs).length > 4 ? ", …" : "";
  return {
    resolver: rule.resolver,
    label: `allowedPipelineSources[${index}] (${shown.join(", ") || "no params"}${extra})`,
    mismatch(params) {
      for (const { name, value } of params) {
        const glob = Object.hasOwn(globs, name) ? globs[name] : undefined;
        if (glob === undefined) return `param ${quote(name)} is not named in this rule`;
        if (!globMatch(glob, value)) return `param ${quote(name)} does not match ${quote(glob, 100)}`;
        // "releng/**" must not allow "releng/../elsewhere": URLs and paths resolve dot segments later.
        if (DOT_DOT.test(value) && !DOT_DOT.test(glob))
          return `param ${quote(name)} contains a ".." path segment, which would leave what ${quote(glob, 100)} allows`;
      }
      return undefined;
    },
  };
}

// Legacy entries keep the original contract: the url must be given and equal the entry; only revision
// and pathInRepo may accompany it, with any value.
function legacyGitRule(url: string, index: number): Rule {
  return {
    resolver: "git",
    label: `allowedGitResolverURLs[${index}] (url=${quote(url, 100)}, any revision and pathInRepo)`,
    mismatch(params) {
      if (!params.some((p) => p.name === "url")) return 'param "url" is missing';
      for (const { name, value } of params) {
        if (name === "url" && value !== url) return 'param "url" is not this exact URL';
        if (name !== "url" && !LEGACY_OPTIONAL.has(name))
          return `param ${quote(name)} is not allowed (only url, revision, pathInRepo)`;
      }
      return undefined;
    },
  };
}
