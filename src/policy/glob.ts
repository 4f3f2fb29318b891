// Globs for allow-lists: `*` matches any run of characters except `/`, `**` (two or more stars in a row)
// matches any run of characters including `/`, every other character matches itself. A glob must match
// the whole value.
//
// Values come from untrusted tenants, so matching must stay cheap whatever the glob and value are. A glob
// is a sequence of tokens (one literal character, or one run of stars); bit i of a state set means "the
// first i tokens match what has been read". Each value character moves all live bits at once, 32 per
// machine word (Thompson's simulation of the glob's automaton), so a match costs O(|value| × |glob| / 32)
// and never backtracks. (Greedily taking the leftmost occurrence of each literal is not enough once `*`
// and `**` mix: `a**b*c` matches "ab/bc" only with the second "b".) Config text never becomes a RegExp.
// Characters are UTF-16 code units, which for well-formed text is the same as code points.

export type Matcher = (value: string) => boolean;

const compiled = new Map<string, Matcher>();
const MAX_CACHED = 4096; // globs come from a few config objects; the bound only guards against churn
const SLASH = 0x2f;
const STAR = 0x2a;

/** Compiles `pattern` once (cached) into a whole-value matcher. */
export function compileGlob(pattern: string): Matcher {
  let matcher = compiled.get(pattern);
  if (matcher) return matcher;
  matcher = pattern.includes("*") ? automatonMatcher(automaton(pattern)) : (value) => value === pattern;
  if (compiled.size >= MAX_CACHED) compiled.clear();
  compiled.set(pattern, matcher);
  return matcher;
}

/** Whether `value` matches `pattern` as a whole. */
export function globMatch(pattern: string, value: string): boolean {
  return compileGlob(pattern)(value);
}

/** State sets are bit masks over token positions 0..tokens, in Int32Array words. */
interface Automaton {
  words: number;
  /** Position 0, plus the positions after leading stars (which may match nothing). */
  initial: Int32Array;
  /** The position after the last token. */
  accept: number;
  /** For each literal character: the positions whose token is that character. */
  literals: Map<number, Int32Array>;
  /** Positions whose token is a run of stars: they stay live on any character but "/"... */
  stars: Int32Array;
  /** ...and those whose run has two or more stars, on "/" too. */
  crossing: Int32Array;
}

function automaton(pattern: string): Automaton {
  let tokens = 0;
  const literalAt: [number, number][] = [];
  const starAt: number[] = [];
  const crossingAt: number[] = [];
  for (let i = 0; i < pattern.length; tokens++) {
    if (pattern.charCodeAt(i) !== STAR) {
      literalAt.push([pattern.charCodeAt(i), tokens]);
      i++;
      continue;
    }
    const start = i;
    while (pattern.charCodeAt(i) === STAR) i++;
    starAt.push(tokens);
    if (i - start >= 2) crossingAt.push(tokens);
  }
  const words = (tokens >>> 5) + 1;
  const mask = (positions: readonly number[]) => {
    const m = new Int32Array(words);
    for (const p of positions) setBit(m, p);
    return m;
  };
  const literals = new Map<number, Int32Array>();
  for (const [char, position] of literalAt) {
    const m = literals.get(char) ?? new Int32Array(words);
    setBit(m, position);
    literals.set(char, m);
  }
  const stars = mask(starAt);
  // Star runs never follow each other (they merge), so one skip from position 0 is the whole closure.
  const initial = mask(starAt[0] === 0 ? [0, 1] : [0]);
  return { words, initial, accept: tokens, literals, stars, crossing: mask(crossingAt) };
}

function automatonMatcher(a: Automaton): Matcher {
  // Scratch state sets, reused: a match never runs inside another, and every request's reconcile matches.
  const sets = [new Int32Array(a.words), new Int32Array(a.words)] as const;
  return (value) => {
    let [state, next] = sets;
    state.set(a.initial);
    for (let i = 0; i < value.length; i++) {
      if (!step(a, state, next, value.charCodeAt(i))) return false;
      [state, next] = [next, state];
    }
    return hasBit(state, a.accept);
  };
}

/** Sets `next` to the positions reachable from `state` by reading `char`; false when there are none. */
function step(a: Automaton, state: Int32Array, next: Int32Array, char: number): boolean {
  const literal = a.literals.get(char);
  const loops = char === SLASH ? a.crossing : a.stars;
  let movedCarry = 0;
  let skippedCarry = 0;
  let live = 0;
  for (let w = 0; w < a.words; w++) {
    const s = word(state, w);
    const moved = literal ? s & word(literal, w) : 0; // the literal at p matched: go to p + 1
    let n = (moved << 1) | movedCarry | (s & word(loops, w)); // a star run at p took the character
    // A star run reached at p may also match nothing: p + 1 is live too. p + 1 is never a star run, so
    // this needs no second round.
    const skipped = n & word(a.stars, w);
    n |= (skipped << 1) | skippedCarry;
    movedCarry = moved >>> 31;
    skippedCarry = skipped >>> 31;
    next[w] = n;
    live |= n;
  }
  return live !== 0;
}

// Indices are always in range here; the cast only satisfies noUncheckedIndexedAccess.
const word = (mask: Int32Array, w: number): number => mask[w] as number;
const hasBit = (mask: Int32Array, p: number) => (word(mask, p >>> 5) & (1 << (p & 31))) !== 0;
const setBit = (mask: Int32Array, p: number) => {
  mask[p >>> 5] = word(mask, p >>> 5) | (1 << (p & 31));
};
