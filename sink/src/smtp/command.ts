/**
 * Pure parsing of SMTP command lines (RFC 5321 §4.1, with the ESMTP parameters the sink advertises). It runs for
 * every command on the hot path, so it works on offsets into the line and fills caller-owned results instead of
 * allocating objects per command.
 */

export type Verb =
  | "EHLO"
  | "HELO"
  | "MAIL"
  | "RCPT"
  | "DATA"
  | "RSET"
  | "NOOP"
  | "QUIT"
  | "VRFY"
  | "EXPN"
  | "HELP"
  | "STARTTLS"
  | "BDAT"
  | "UNKNOWN";

const VERBS: Verb[] = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "BDAT"];

/** Four ASCII letters, lower-cased, packed into one integer: verb lookup without allocating a string. */
function pack(line: string): number {
  return (
    (((line.charCodeAt(0) | 0x20) << 24) |
      ((line.charCodeAt(1) | 0x20) << 16) |
      ((line.charCodeAt(2) | 0x20) << 8) |
      (line.charCodeAt(3) | 0x20)) >>>
    0
  );
}

const BY_PACKED = new Map<number, Verb>(VERBS.map((v) => [pack(v), v]));

/** The command verb (case-insensitive); its argument starts at verbLength(verb) + 1. */
export function parseVerb(line: string): Verb {
  const n = line.length;
  if (n >= 8 && (n === 8 || line.charCodeAt(8) === 32) && line.slice(0, 8).toUpperCase() === "STARTTLS") {
    return "STARTTLS";
  }
  if (n < 4 || (n > 4 && line.charCodeAt(4) !== 32)) return "UNKNOWN";
  return BY_PACKED.get(pack(line)) ?? "UNKNOWN";
}

export function verbLength(verb: Verb): number {
  return verb === "STARTTLS" ? 8 : 4;
}

/** A parsed MAIL FROM or RCPT TO path. Reused across commands by the session. */
export interface Envelope {
  /** The mailbox between < and > (after any source route), "" for the null reverse-path. */
  address: string;
  /** Lower-cased domain, "" when the address has none (e.g. <postmaster> or <>). */
  domain: string;
  /** Index of the "@" in `address` (its length when there is none): the local part is address.slice(0, at). */
  at: number;
  /** SIZE= of MAIL FROM, 0 when absent. */
  size: number;
  smtputf8: boolean;
}

export function newEnvelope(): Envelope {
  return { address: "", domain: "", at: 0, size: 0, smtputf8: false };
}

export function localPart(e: Envelope): string {
  return e.address.slice(0, e.at);
}

const SIZE_VALUE = /^\d{1,15}$/;
const BODY_VALUE = /^(7BIT|8BITMIME)$/i;

// Results of parsePath besides the envelope: whether the address was pure ASCII and where parameters start.
let pathAscii = true;
let paramsStart = 0;

/** Parses "<path> [params]" of MAIL or RCPT starting at `from`; returns an error reply, or null with `out` filled. */
function parsePath(line: string, from: number, out: Envelope, allowEmpty: boolean): string | null {
  let i = from;
  while (i < line.length && line.charCodeAt(i) === 32) i++;
  if (line.charCodeAt(i) !== 60) return "501 5.1.7 Bad address syntax: path must be enclosed in <>";
  const close = line.indexOf(">", i + 1);
  if (close < 0) return "501 5.1.7 Bad address syntax: missing >";
  let start = i + 1;
  // A source route (<@a,@b:user@c>) is obsolete but legal; its mailbox is what follows the colon.
  if (line.charCodeAt(start) === 64) {
    const colon = line.indexOf(":", start);
    if (colon < 0 || colon > close) return "501 5.1.3 Bad address syntax";
    start = colon + 1;
  }
  let at = -1;
  let ascii = true;
  for (let j = start; j < close; j++) {
    const c = line.charCodeAt(j);
    if (c <= 32 || c === 60 || c === 127) return "501 5.1.3 Bad address syntax";
    if (c === 64) at = j;
    else if (c > 127) ascii = false;
  }
  if (start === close) {
    if (!allowEmpty) return "501 5.1.3 Bad recipient address syntax";
    out.address = "";
    out.domain = "";
    out.at = 0;
  } else {
    if (at === start || at === close - 1) return "501 5.1.3 Bad address syntax";
    out.address = line.slice(start, close);
    out.at = at < 0 ? close - start : at - start;
    out.domain = at < 0 ? "" : line.slice(at + 1, close).toLowerCase();
  }
  pathAscii = ascii;
  paramsStart = close + 1;
  return null;
}

function keywordAt(line: string, from: number, keyword: string): boolean {
  return line.length >= from + keyword.length && line.slice(from, from + keyword.length).toUpperCase() === keyword;
}

/** Parses "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME SMTPUTF8"; `from` is the index just after "MAIL ". */
export function parseMailFrom(line: string, from: number, out: Envelope): string | null {
  if (!keywordAt(line, from, "FROM:")) return "501 5.5.4 Syntax: MAIL FROM:<address>";
  const error = parsePath(line, from + 5, out, true);
  if (error !== null) return error;
  out.size = 0;
  out.smtputf8 = false;
  const rest = paramsStart < line.length ? line.slice(paramsStart).trim() : "";
  if (rest !== "") {
    for (const param of rest.split(/ +/)) {
      const eq = param.indexOf("=");
      const key = (eq < 0 ? param : param.slice(0, eq)).toUpperCase();
      const value = eq < 0 ? "" : param.slice(eq + 1);
      if (key === "SIZE" && SIZE_VALUE.test(value)) out.size = Number(value);
      else if (key === "BODY" && BODY_VALUE.test(value)) continue;
      else if (key === "SMTPUTF8" && eq < 0) out.smtputf8 = true;
      else return `555 5.5.4 Unsupported MAIL parameter ${key}`;
    }
  }
  if (!pathAscii && !out.smtputf8) return "553 5.6.7 Non-ASCII address requires SMTPUTF8";
  return null;
}

/** Parses "RCPT TO:<a@b>"; `from` is the index just after "RCPT "; `smtputf8` is whether MAIL declared it. */
export function parseRcptTo(line: string, from: number, smtputf8: boolean, out: Envelope): string | null {
  if (!keywordAt(line, from, "TO:")) return "501 5.5.4 Syntax: RCPT TO:<address>";
  const error = parsePath(line, from + 3, out, false);
  if (error !== null) return error;
  const rest = paramsStart < line.length ? line.slice(paramsStart).trim() : "";
  if (rest !== "") return `555 5.5.4 Unsupported RCPT parameter ${rest.split(/[ =]/)[0]?.toUpperCase()}`;
  if (!pathAscii && !smtputf8) return "553 5.6.7 Non-ASCII address requires SMTPUTF8";
  return null;
}
