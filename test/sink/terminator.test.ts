import { describe, expect, it } from "vitest";
import { EndOfDataScanner } from "../../sink/src/smtp/terminator.ts";

/** Feeds `chunks` to a fresh scanner; returns [chunk index, offset just past the terminator] or null. */
function feed(chunks: Buffer[]): [number, number] | null {
  const s = new EndOfDataScanner();
  for (let i = 0; i < chunks.length; i++) {
    const end = s.scan(chunks[i] as Buffer, 0);
    if (end >= 0) return [i, end];
  }
  return null;
}

/** Reference: the first "\r\n.\r\n" in "\r\n" + data (the CRLF ending the DATA command starts the terminator). */
function reference(data: Buffer): number {
  const i = Buffer.concat([Buffer.from("\r\n"), data]).indexOf("\r\n.\r\n");
  return i < 0 ? -1 : i + 5 - 2;
}

describe("end-of-data scanner", () => {
  const message = Buffer.from("Subject: t\r\n\r\nline one\r\n..stuffed\r\n.\r\nNEXT");

  it("finds the terminator when it is split at every byte offset", () => {
    const end = reference(message);
    expect(end).toBe(message.length - 4);
    for (let cut = 0; cut <= message.length; cut++) {
      const found = feed([message.subarray(0, cut), message.subarray(cut)]);
      expect(found, `cut at ${cut}`).not.toBeNull();
      const [chunk, offset] = found as [number, number];
      expect(chunk === 0 ? offset : cut + offset, `cut at ${cut}`).toBe(end);
    }
  });

  it("finds it when every byte arrives in its own read", () => {
    const found = feed([...message].map((b) => Buffer.from([b])));
    expect(found).toEqual([message.length - 5, 1]);
  });

  it("treats an immediate '.' line as an empty message", () => {
    expect(feed([Buffer.from(".\r\nQUIT\r\n")])).toEqual([0, 3]);
  });

  it("does not end on dot-stuffed lines or on bare LF terminators", () => {
    expect(feed([Buffer.from("a\r\n..\r\n...\r\nb\n.\nc\r\n.x\r\n")])).toBeNull();
    expect(feed([Buffer.from("a\n.\r\n")])).toBeNull();
    expect(feed([Buffer.from("a\r\n.\n")])).toBeNull();
  });

  it("agrees with a reference search on random data cut into random chunks", () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const alphabet = [13, 10, 46, 97];
    for (let round = 0; round < 2000; round++) {
      const data = Buffer.from(
        Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => alphabet[Math.floor(rnd() * 4)] as number),
      );
      const chunks: Buffer[] = [];
      for (let i = 0; i < data.length; ) {
        const n = 1 + Math.floor(rnd() * 6);
        chunks.push(data.subarray(i, i + n));
        i += n;
      }
      const found = feed(chunks);
      const expected = reference(data);
      if (expected < 0) expect(found).toBeNull();
      else {
        const [ci, off] = found as [number, number];
        const before = chunks.slice(0, ci).reduce((a, c) => a + c.length, 0);
        expect(before + off).toBe(expected);
      }
    }
  });

  it("keeps no more than the match state between reads (a 10 MB body is scanned in place)", () => {
    const s = new EndOfDataScanner();
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 160; i++) expect(s.scan(chunk, 0)).toBe(-1);
    expect(s.scan(Buffer.from("\r\n.\r\n"), 0)).toBe(5);
  });
});
