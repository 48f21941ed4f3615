import net from "node:net";

/**
 * A minimal HTTP/1.1 keep-alive client for one endpoint: each request is one socket write (head and body
 * together) and the response is parsed from raw buffers. node:http spends most of its time in per-request object
 * setup and writev; this is what lets the injector keep up with a reference load tool on one core.
 * Handles Content-Length, chunked and close-delimited responses; no pipelining (one request per connection).
 */
export interface HttpResponse {
  status: number;
  body: string;
}

export interface PoolOptions {
  host: string;
  port: number;
  path: string;
  /** Extra request header lines, each ending in \r\n (e.g. authorization). */
  extraHeaders: string;
  maxConnections: number;
  timeoutMs: number;
}

/**
 * Whether a failed request may have reached the server: true once its connection was established (the request was
 * written to it), false when the connection was never made (refused, no route). A server that read the request may
 * have acted on it even though no answer came back.
 */
export function requestMayHaveArrived(err: unknown): boolean {
  return (err as { requestSent?: boolean }).requestSent !== false;
}

function netError(code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

interface Parsed {
  status: number;
  headerEnd: number;
  contentLength?: number;
  chunked: boolean;
  close: boolean;
}

/** Pure: the status line and the headers that frame the body, once the head is complete. */
export function parseHead(buf: Buffer): Parsed | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const lines = buf.toString("latin1", 0, end).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) throw netError("HPE_INVALID", `malformed HTTP status line: ${(lines[0] ?? "").slice(0, 80)}`);
  const p: Parsed = { status: Number(m[1]), headerEnd: end + 4, chunked: false, close: false };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === "content-length") p.contentLength = Number(value);
    else if (name === "transfer-encoding") p.chunked = value.includes("chunked");
    else if (name === "connection") p.close = value.includes("close");
  }
  return p;
}

/** Pure: the decoded body of a chunked message starting at `from`, or undefined while incomplete. */
export function decodeChunked(buf: Buffer, from: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let i = from;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", i);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(buf.toString("latin1", i, lineEnd).split(";")[0] as string, 16);
    if (Number.isNaN(size)) throw netError("HPE_INVALID", "malformed chunk size");
    if (size === 0) {
      const trailerEnd = buf.indexOf("\r\n\r\n", lineEnd);
      if (trailerEnd >= 0) return { body: Buffer.concat(parts), end: trailerEnd + 4 };
      if (buf.length >= lineEnd + 4 && buf.toString("latin1", lineEnd, lineEnd + 4) === "\r\n\r\n") {
        return { body: Buffer.concat(parts), end: lineEnd + 4 };
      }
      return undefined;
    }
    if (buf.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
    i = lineEnd + 2 + size + 2;
  }
}

class Connection {
  readonly socket: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private head?: Parsed;
  private current?: { resolve: (r: HttpResponse) => void; reject: (e: Error) => void };
  closed = false;
  reusable = true;
  private connected = false;

  constructor(opts: PoolOptions, onClose: (c: Connection) => void) {
    this.socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
    this.socket.setTimeout(opts.timeoutMs);
    this.socket.on("connect", () => {
      this.connected = true;
    });
    this.socket.on("data", (d: Buffer) => this.onData(d));
    this.socket.on("timeout", () => this.socket.destroy(netError("ETIMEDOUT", "request timed out")));
    this.socket.on("error", (e) => this.fail(e));
    this.socket.on("end", () => this.onEnd());
    this.socket.on("close", () => {
      this.closed = true;
      this.fail(netError("ECONNRESET", "connection closed before the response was complete"));
      onClose(this);
    });
  }

  send(data: Buffer): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      this.current = { resolve, reject };
      this.buf = Buffer.alloc(0);
      this.head = undefined;
      this.socket.write(data);
    });
  }

  private fail(e: Error) {
    const c = this.current;
    this.current = undefined;
    this.reusable = false;
    if (c) {
      (e as { requestSent?: boolean }).requestSent = this.connected;
      c.reject(e);
    }
  }

  private finish(status: number, body: Buffer, rest: number) {
    const c = this.current;
    this.current = undefined;
    if (rest !== this.buf.length || this.head?.close) this.reusable = false;
    c?.resolve({ status, body: body.toString("utf8") });
  }

  private onEnd() {
    // A close-delimited body ends with the connection.
    const h = this.head;
    if (this.current && h && h.contentLength === undefined && !h.chunked) {
      this.reusable = false;
      this.finish(h.status, this.buf.subarray(h.headerEnd), this.buf.length);
    }
  }

  private onData(d: Buffer) {
    if (!this.current) {
      this.reusable = false;
      this.socket.destroy();
      return;
    }
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    try {
      this.head ??= parseHead(this.buf);
      const h = this.head;
      if (!h) return;
      if (h.chunked) {
        const r = decodeChunked(this.buf, h.headerEnd);
        if (r) this.finish(h.status, r.body, r.end);
      } else if (h.contentLength !== undefined) {
        const end = h.headerEnd + h.contentLength;
        if (this.buf.length >= end) this.finish(h.status, this.buf.subarray(h.headerEnd, end), end);
      }
    } catch (e) {
      this.socket.destroy(e as Error);
    }
  }
}

export class Http1Pool {
  private readonly idle: Connection[] = [];
  private readonly waiters: ((c: Connection) => void)[] = [];
  private open = 0;
  private readonly headPrefix: string;

  constructor(private readonly opts: PoolOptions) {
    this.headPrefix = `POST ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nContent-Type: application/json\r\n${opts.extraHeaders}Content-Length: `;
  }

  private acquire(): Promise<Connection> {
    for (let c = this.idle.pop(); c !== undefined; c = this.idle.pop()) if (!c.closed) return Promise.resolve(c);
    if (this.open < this.opts.maxConnections) {
      this.open++;
      return Promise.resolve(new Connection(this.opts, () => this.open--));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(c: Connection) {
    if (!c.reusable || c.closed) {
      c.socket.destroy();
      const w = this.waiters.shift();
      if (w) {
        this.open++;
        w(new Connection(this.opts, () => this.open--));
      }
      return;
    }
    const w = this.waiters.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  async post(body: Buffer): Promise<HttpResponse> {
    const c = await this.acquire();
    // One buffer, one write: head and body leave in the same packet.
    const head = `${this.headPrefix}${body.length}\r\n\r\n`;
    const out = Buffer.allocUnsafe(head.length + body.length);
    out.write(head, 0, "latin1");
    body.copy(out, head.length);
    try {
      return await c.send(out);
    } finally {
      this.release(c);
    }
  }

  destroy(): void {
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }
}
