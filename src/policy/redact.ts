// What of a private failure's text may cross to the public side (a request's status, its Events, and
// so a CustomRun's status): the text with secrets taken out, capped. Everything here runs on RE2 (linear
// time): the text can echo tenant input (a param a failing step printed). Pure, no I/O.
import { RE2JS } from "re2js";

const redacted = "<redacted>";

/** Most characters of private failure text published (after redaction). */
export const maxPublishedChars = 2048;
/** Longest text looked at: longer text is cut first (TaskRun messages are far shorter). */
const maxInputChars = 65536;

/** Credential-looking content, whatever the service: [pattern, replacement]. */
const builtIn: [RE2JS, string][] = [
  // PEM blocks (keys, certificates), also one cut off before its END line.
  [RE2JS.compile("-----BEGIN [A-Z0-9 ]+-----(?s:.*?)(?:-----END [A-Z0-9 ]+-----|$)"), "<redacted PEM block>"],
  // userinfo in URLs: scheme://user:password@host
  [RE2JS.compile("([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\\s@]+@"), `$1${redacted}@`],
  // Authorization headers' credentials, and the like in prose
  [RE2JS.compile("(?i)\\b(bearer|basic|token)(\\s+)[A-Za-z0-9._~+/=-]{8,}"), `$1$2${redacted}`],
  // JSON Web Tokens (ServiceAccount tokens among them)
  [RE2JS.compile("\\beyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]*"), redacted],
  // key=value and key: value where the key names a secret; a quoted value whole
  [
    RE2JS.compile(
      "(?i)\\b(password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|client[-_]?secret|private[-_]?key|credentials?)([\"']?\\s*[:=]\\s*)(\"[^\"]*\"|'[^']*'|[^\\s\"',;&]+)",
    ),
    `$1$2${redacted}`,
  ],
];

export interface Redaction {
  /** Values that must never appear (the request's values of the service's sensitiveParams). */
  secrets: readonly string[];
  /** The InternalServicesConfig's redactPatterns (RE2 syntax): whatever they match goes too. */
  patterns: readonly string[];
}

/** `text` fit to publish: secrets, credential-looking content and the config's patterns replaced by
 *  "<redacted>", cut to maxPublishedChars. A config pattern that does not compile withholds the text
 *  (fail closed) and says so. */
export function redact(text: string, rules: Redaction): string {
  let out = text.length > maxInputChars ? text.slice(0, maxInputChars) : text;
  // Longest first, so a secret containing another is replaced whole.
  for (const secret of [...rules.secrets].filter(Boolean).sort((a, b) => b.length - a.length))
    out = out.split(secret).join(redacted);
  for (const [re, replacement] of builtIn) out = re.matcher(out).replaceAll(replacement);
  for (const [i, pattern] of rules.patterns.entries()) {
    let re: RE2JS;
    try {
      re = RE2JS.compile(pattern);
    } catch {
      return `<withheld: the InternalServicesConfig's redactPatterns[${i}] is not a valid RE2 pattern>`;
    }
    out = re.matcher(out).replaceAll(redacted);
  }
  const chars = Array.from(out);
  return chars.length > maxPublishedChars ? `${chars.slice(0, maxPublishedChars - 1).join("")}…` : out;
}
