/**
 * Pure: the config overrides in tsa-daemon's /get_config_v1/shaping.toml. tsa-daemon writes each override as
 * `["domain".sources."source"]` tables holding `name = value`, with the why and until-when only in the comments
 * just above the key (`# reason: ...`, `# expires: ...`, crates/tsa-daemon/src/http_server.rs), which a TOML
 * parser drops. So the file is read line by line, and smol-toml parses each header and key line on its own.
 */
import { parse } from "smol-toml";

export interface ShapingOverride {
  domain: string;
  source: string;
  name: string;
  /** The value as TOML wrote it, e.g. "1/h" or 2. */
  value: string;
  reason: string;
  expires: string;
  mxRollup?: boolean;
}

/** The single path a header line such as `["gmail.com".sources.unspecified]` names. */
function headerPath(line: string): string[] {
  const path: string[] = [];
  let node: unknown = parse(line);
  while (node && typeof node === "object" && Object.keys(node).length === 1) {
    const [key, next] = Object.entries(node as Record<string, unknown>)[0] as [string, unknown];
    path.push(key);
    node = next;
  }
  return path;
}

export function parseShapingOverrides(text: string): ShapingOverride[] {
  const out: ShapingOverride[] = [];
  const rollup = new Map<string, boolean>();
  let table: string[] = [];
  let reason = "";
  let expires = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^#\s*(reason|expires):\s?(.*)$/.exec(line);
      if (m?.[1] === "reason") reason = m[2] as string;
      else if (m?.[1] === "expires") expires = m[2] as string;
      continue;
    }
    if (line.startsWith("[")) {
      table = headerPath(line);
      continue;
    }
    const entry = Object.entries(parse(line))[0];
    if (!entry) continue;
    const [name, value] = entry;
    if (table.length === 1 && name === "mx_rollup") rollup.set(table[0] as string, value === true);
    else if (table.length === 3 && table[1] === "sources") {
      out.push({
        domain: table[0] as string,
        source: table[2] as string,
        name,
        value: typeof value === "string" ? value : JSON.stringify(value),
        reason,
        expires,
      });
    }
    reason = "";
    expires = "";
  }
  for (const o of out) {
    const r = rollup.get(o.domain);
    if (r !== undefined) o.mxRollup = r;
  }
  return out;
}
