import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeChunked, Http1Pool, parseHead } from "../../scripts/lib/http1-pool.ts";

describe("HTTP/1.1 response framing", () => {
  it("parses the status line and framing headers", () => {
    const h = parseHead(
      Buffer.from("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 5\r\nConnection: close\r\n\r\nabcde"),
    );
    expect(h).toMatchObject({ status: 422, contentLength: 5, chunked: false, close: true, headerEnd: 75 });
    expect(parseHead(Buffer.from("HTTP/1.1 200 OK\r\ncontent-le"))).toBeUndefined();
    expect(() => parseHead(Buffer.from("garbage\r\n\r\n"))).toThrow(/malformed HTTP status line/);
  });
  it("decodes chunked bodies only once complete", () => {
    const full = Buffer.from("4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\n\r\n");
    expect(decodeChunked(full, 0)?.body.toString()).toBe("Wikipedia ");
    expect(decodeChunked(full, 0)?.end).toBe(full.length);
    expect(decodeChunked(full.subarray(0, 12), 0)).toBeUndefined();
  });
});

describe("Http1Pool against node:http", () => {
  let server: http.Server;
  let port = 0;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        if (req.url === "/chunked") {
          res.writeHead(200);
          res.write("chunk-1;");
          setTimeout(() => res.end(`echo:${body}`), 5);
        } else if (req.url === "/close") {
          res.writeHead(503, { connection: "close", "content-length": "13" });
          res.end("load shedding");
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ len: Buffer.byteLength(body), auth: req.headers.authorization ?? null }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const pool = (path: string) =>
    new Http1Pool({
      host: "127.0.0.1",
      port,
      path,
      extraHeaders: "Authorization: Basic eDp5\r\n",
      maxConnections: 2,
      timeoutMs: 5000,
    });

  it("sends many requests over a few keep-alive connections, UTF-8 bodies intact", async () => {
    const p = pool("/");
    let connections = 0;
    server.on("connection", () => connections++);
    const body = Buffer.from('{"s":"Grüße"}');
    const replies = await Promise.all(Array.from({ length: 50 }, () => p.post(body)));
    p.destroy();
    expect(replies.every((r) => r.status === 200 && JSON.parse(r.body).len === body.length)).toBe(true);
    expect(JSON.parse(replies[0]?.body ?? "{}").auth).toBe("Basic eDp5");
    expect(connections).toBeLessThanOrEqual(2);
  });

  it("reads chunked and connection-close responses", async () => {
    const c = pool("/chunked");
    expect(await c.post(Buffer.from("hi"))).toEqual({ status: 200, body: "chunk-1;echo:hi" });
    c.destroy();
    const z = pool("/close");
    expect(await z.post(Buffer.from("x"))).toEqual({ status: 503, body: "load shedding" });
    expect(await z.post(Buffer.from("x"))).toEqual({ status: 503, body: "load shedding" });
    z.destroy();
  });

  it("rejects with ECONNREFUSED when nothing listens", async () => {
    const p = new Http1Pool({
      host: "127.0.0.1",
      port: 9,
      path: "/",
      extraHeaders: "",
      maxConnections: 1,
      timeoutMs: 2000,
    });
    await expect(p.post(Buffer.from("x"))).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
