/**
 * The injection request as kumod 2026.06.23 accepts it (docs/reference/http/kumod/api_inject_v1_post.md and its
 * schemas). Every struct there is deny_unknown_fields: one unknown key and kumod answers 422 for the whole request,
 * so we check the payload file here, before anything is sent, and name the offending field.
 */
export const KUMOD_VERSION = "2026.06.23";

const TOP_FIELDS = [
  "envelope_sender",
  "content",
  "recipients",
  "substitutions",
  "template_dialect",
  "deferred_spool",
  "deferred_generation",
  "trace_headers",
] as const;
const CONTENT_FIELDS = [
  "text_body",
  "html_body",
  "amp_html_body",
  "headers",
  "from",
  "reply_to",
  "subject",
  "attachments",
] as const;
const ADDRESS_FIELDS = ["email", "name"] as const;
const ATTACHMENT_FIELDS = ["content_type", "data", "base64", "file_name", "content_id"] as const;
const RECIPIENT_FIELDS = ["email", "name", "substitutions", "metadata"] as const;
const TRACE_FIELDS = ["received_header", "supplemental_header", "header_name", "include_meta_names"] as const;
const DIALECTS = ["Jinja", "Static", "Handlebars"] as const;

export interface PayloadIssue {
  path: string;
  message: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

class Checker {
  readonly issues: PayloadIssue[] = [];
  add(path: string, message: string) {
    this.issues.push({ path, message });
  }
  fields(o: Obj, path: string, allowed: readonly string[], required: readonly string[] = []) {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) {
        this.add(
          `${path}${path ? "." : ""}${k}`,
          `unknown field (kumod ${KUMOD_VERSION} rejects the whole request with 422); allowed here: ${allowed.join(", ")}`,
        );
      }
    }
    for (const k of required) if (!(k in o)) this.add(`${path}${path ? "." : ""}${k}`, "required field is missing");
  }
  type(v: unknown, path: string, want: "string" | "boolean" | "object" | "array"): boolean {
    const ok = want === "object" ? isObj(v) : want === "array" ? Array.isArray(v) : typeof v === want;
    if (!ok)
      this.add(path, `must be ${want === "array" || want === "object" ? "an" : "a"} ${want}, got ${typeName(v)}`);
    return ok;
  }
  stringMap(v: unknown, path: string) {
    if (!this.type(v, path, "object")) return;
    for (const [k, x] of Object.entries(v as Obj)) this.type(x, `${path}.${k}`, "string");
  }
  address(v: unknown, path: string) {
    if (!this.type(v, path, "object")) return;
    const o = v as Obj;
    this.fields(o, path, ADDRESS_FIELDS, ["email"]);
    if ("email" in o) this.type(o.email, `${path}.email`, "string");
    if ("name" in o && o.name !== null) this.type(o.name, `${path}.name`, "string");
  }
}

function checkContent(c: Checker, content: unknown) {
  if (typeof content === "string") return;
  if (!isObj(content)) {
    c.add("content", `must be a string (full MIME message) or a builder object, got ${typeName(content)}`);
    return;
  }
  c.fields(content, "content", CONTENT_FIELDS);
  for (const k of ["text_body", "html_body", "amp_html_body", "subject"] as const) {
    if (k in content && content[k] !== null) c.type(content[k], `content.${k}`, "string");
  }
  if ("headers" in content) c.stringMap(content.headers, "content.headers");
  for (const k of ["from", "reply_to"] as const)
    if (k in content && content[k] !== null) c.address(content[k], `content.${k}`);
  if ("attachments" in content && c.type(content.attachments, "content.attachments", "array")) {
    (content.attachments as unknown[]).forEach((a, i) => {
      const p = `content.attachments[${i}]`;
      if (!c.type(a, p, "object")) return;
      const att = a as Obj;
      c.fields(att, p, ATTACHMENT_FIELDS, ["content_type", "data"]);
      if ("base64" in att) c.type(att.base64, `${p}.base64`, "boolean");
      for (const k of ["content_type", "data", "file_name", "content_id"] as const) {
        if (k in att && att[k] !== null) c.type(att[k], `${p}.${k}`, "string");
      }
    });
  }
}

function checkRecipient(c: Checker, r: unknown, path: string) {
  if (!c.type(r, path, "object")) return;
  const o = r as Obj;
  c.fields(o, path, RECIPIENT_FIELDS, ["email"]);
  if ("email" in o) c.type(o.email, `${path}.email`, "string");
  if ("name" in o && o.name !== null) c.type(o.name, `${path}.name`, "string");
  if ("substitutions" in o) c.type(o.substitutions, `${path}.substitutions`, "object");
  if ("metadata" in o) c.type(o.metadata, `${path}.metadata`, "object");
}

/**
 * Checks a parsed payload file. `recipientsGenerated` is true with --count: the file's recipients are then
 * replaced, so they may be absent, but if present they must still be valid (the first one is the template).
 */
export function validatePayload(payload: unknown, recipientsGenerated: boolean): PayloadIssue[] {
  const c = new Checker();
  if (!isObj(payload)) {
    c.add("", `the payload must be a JSON object, got ${typeName(payload)}`);
    return c.issues;
  }
  c.fields(payload, "", TOP_FIELDS, recipientsGenerated ? ["envelope_sender", "content"] : TOP_FIELDS.slice(0, 3));
  if ("envelope_sender" in payload) c.type(payload.envelope_sender, "envelope_sender", "string");
  if ("content" in payload) checkContent(c, payload.content);
  if ("recipients" in payload && c.type(payload.recipients, "recipients", "array")) {
    const list = payload.recipients as unknown[];
    if (list.length === 0 && !recipientsGenerated) c.add("recipients", "must list at least one recipient");
    for (const [i, r] of list.entries()) checkRecipient(c, r, `recipients[${i}]`);
  }
  if ("substitutions" in payload) c.type(payload.substitutions, "substitutions", "object");
  if ("template_dialect" in payload && !DIALECTS.includes(payload.template_dialect as (typeof DIALECTS)[number])) {
    c.add("template_dialect", `must be one of ${DIALECTS.join(", ")}`);
  }
  for (const k of ["deferred_spool", "deferred_generation"] as const) {
    if (k in payload) c.type(payload[k], k, "boolean");
  }
  if ("trace_headers" in payload && c.type(payload.trace_headers, "trace_headers", "object")) {
    const t = payload.trace_headers as Obj;
    // A partial object silently turns received_header on (serde default_true), so insist on all four.
    c.fields(t, "trace_headers", TRACE_FIELDS, TRACE_FIELDS);
  }
  return c.issues;
}

export interface RequestOptions {
  deferredSpool: boolean;
  deferredGeneration: boolean;
}

/** The payload with the command-line flags applied and the recipients left out (they are added per request). */
export function requestTemplate(payload: Obj, opts: RequestOptions): Obj {
  const { recipients: _ignored, ...rest } = payload;
  if (opts.deferredSpool) rest.deferred_spool = true;
  if (opts.deferredGeneration) rest.deferred_generation = true;
  return rest;
}

/**
 * The serialized request split around the recipients array, encoded once: each request body is these constant
 * bytes plus the batch's recipients, with no per-request JSON.stringify of the (possibly large) content.
 */
export interface BodyFrame {
  prefix: Buffer;
  suffix: Buffer;
  /** Extra recipient fields copied from the payload's first recipient ("" or ',"name":"x"'). */
  recipientExtra: string;
}

type Obj2 = Record<string, unknown>;

export function bodyFrame(template: Obj2, recipientTemplate: unknown): BodyFrame {
  const json = JSON.stringify(template);
  const prefix = `${json.slice(0, -1)}${json.length > 2 ? "," : ""}"recipients":[`;
  let recipientExtra = "";
  if (isObj(recipientTemplate)) {
    const { email: _email, ...extra } = recipientTemplate;
    const s = JSON.stringify(extra);
    if (s.length > 2) recipientExtra = `,${s.slice(1, -1)}`;
  }
  return {
    prefix: Buffer.from(prefix),
    suffix: Buffer.from("]}"),
    recipientExtra,
  };
}

/** Body for sending the file's own recipients unchanged (no --count), split into --batch sized requests. */
export function fileBody(frame: BodyFrame, recipients: readonly unknown[]): Buffer {
  const list = Buffer.from(recipients.map((r) => JSON.stringify(r)).join(","));
  return Buffer.concat([frame.prefix, list, frame.suffix]);
}
