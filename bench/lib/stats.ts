// Percentiles and small numeric helpers for the benchmark report.

export interface Distribution {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles (ms in, ms out); an empty sample gives NaN everywhere. */
export function distribution(samples: number[]): Distribution {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const rank = (p: number) =>
    n === 0 ? Number.NaN : (sorted[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)] ?? 0);
  const mean = n === 0 ? Number.NaN : sorted.reduce((s, x) => s + x, 0) / n;
  return {
    count: n,
    p50: round(rank(50)),
    p95: round(rank(95)),
    p99: round(rank(99)),
    max: round(n === 0 ? Number.NaN : (sorted[n - 1] ?? 0)),
    mean: round(mean),
  };
}

export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(value: number, reference: number): number {
  return reference > 0 && Number.isFinite(value) ? round(value / reference, 2) : Number.NaN;
}

/** Runs `task(i)` for i in [0, count) with at most `limit` in flight; rejects on the first failure. */
export async function pool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < count && failed === undefined) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failed !== undefined) throw failed;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it became true. */
export async function waitFor(probe: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await probe()) return true;
    await sleep(everyMs);
  }
  return probe();
}
