/** Parser for the Prometheus text exposition format (what kumod's /metrics serves). Pure. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    while (text[i] === " " || text[i] === ",") i++;
    if (i >= text.length) break;
    const eq = text.indexOf("=", i);
    if (eq < 0 || text[eq + 1] !== '"') throw new Error(`line ${line}: malformed label set {${text}}`);
    const key = text.slice(i, eq).trim();
    let j = eq + 2;
    let value = "";
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const e = text[++j];
        value += e === "n" ? "\n" : (e ?? "");
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`line ${line}: unterminated label value in {${text}}`);
    labels[key] = value;
    i = j + 1;
  }
  return labels;
}

/** Finds the closing brace of a label set, skipping braces inside quoted values. */
function labelEnd(line: string, open: number): number {
  let quoted = false;
  for (let i = open + 1; i < line.length; i++) {
    const c = line[i];
    if (c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "}" && !quoted) return i;
  }
  return -1;
}

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] as string).trim();
    if (line === "" || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = labelEnd(line, brace);
      if (close < 0) throw new Error(`line ${n + 1}: unterminated label set`);
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close), n + 1);
      rest = line.slice(close + 1).trim();
    } else {
      if (space < 0) throw new Error(`line ${n + 1}: sample without a value`);
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = parseValue(rest.split(/\s+/)[0] ?? "");
    if (Number.isNaN(value) && rest.split(/\s+/)[0] !== "NaN") throw new Error(`line ${n + 1}: bad value "${rest}"`);
    samples.push({ name, labels, value });
  }
  return samples;
}

function sumOf(samples: readonly Sample[], name: string): number {
  let total = 0;
  for (const s of samples) if (s.name === name && Number.isFinite(s.value)) total += s.value;
  return total;
}

/** Values of one metric grouped by one label, largest first. */
function byLabel(samples: readonly Sample[], name: string, label: string): { key: string; value: number }[] {
  const m = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = s.labels[label] ?? "";
    m.set(key, (m.get(key) ?? 0) + s.value);
  }
  return [...m.entries()].map(([key, value]) => ({ key, value })).sort((a, b) => b.value - a.value);
}

export interface KumodQueueSummary {
  scheduled: number;
  ready: number;
  connections: number;
  delivered: number;
  transientFailures: number;
  permanentFailures: number;
  received: number;
  topScheduled: { queue: string; count: number }[];
  topReady: { queue: string; count: number }[];
}

/** What `npm run status` shows per kumod pod, from its /metrics (names per kumomta.md §4, as kcli uses them). */
export function kumodQueueSummary(samples: readonly Sample[], top = 5): KumodQueueSummary {
  const pick = (name: string, label: string) =>
    byLabel(samples, name, label)
      .filter((x) => x.value > 0)
      .slice(0, top)
      .map((x) => ({ queue: x.key, count: x.value }));
  return {
    scheduled: sumOf(samples, "scheduled_count"),
    ready: sumOf(samples, "ready_count"),
    connections: sumOf(samples, "connection_count"),
    delivered: sumOf(samples, "total_messages_delivered"),
    transientFailures: sumOf(samples, "total_messages_transfail"),
    permanentFailures: sumOf(samples, "total_messages_fail"),
    received: sumOf(samples, "total_messages_received"),
    topScheduled: pick("scheduled_count", "queue"),
    topReady: pick("ready_count", "service"),
  };
}
