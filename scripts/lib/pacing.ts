/**
 * Open-loop pacing: each request has a due time computed from the start of the run (not from the previous send),
 * so timer jitter never accumulates and a slow response never delays the following requests.
 */

/** Milliseconds after the start at which a request may leave, given the recipients sent before it. */
export function dueOffsetMs(recipientsBefore: number, ratePerSecond: number): number {
  return (recipientsBefore * 1000) / ratePerSecond;
}

/** Parses 90, 90s, 1500ms, 2m, 1h, 1m30s into milliseconds. Returns undefined when the text is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(t); m !== null; m = re.exec(t)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  return consumed === t.length && consumed > 0 ? total : undefined;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms - m * 60_000) / 1000)} s`;
}
