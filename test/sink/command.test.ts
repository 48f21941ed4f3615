import { describe, expect, it } from "vitest";
import {
  type Envelope,
  localPart,
  newEnvelope,
  parseMailFrom,
  parseRcptTo,
  parseVerb,
  verbLength,
} from "../../sink/src/smtp/command.ts";

function mail(line: string): Envelope | string {
  const e = newEnvelope();
  return parseMailFrom(line, 5, e) ?? e;
}

function rcpt(line: string, smtputf8 = false): Envelope | string {
  const e = newEnvelope();
  return parseRcptTo(line, 5, smtputf8, e) ?? e;
}

describe("verbs", () => {
  it("recognizes verbs case-insensitively, only as whole words", () => {
    expect(parseVerb("ehlo client.example")).toBe("EHLO");
    expect(parseVerb("DATA")).toBe("DATA");
    expect(parseVerb("MaIl FROM:<a@b>")).toBe("MAIL");
    expect(parseVerb("StartTLS")).toBe("STARTTLS");
    expect(verbLength("STARTTLS")).toBe(8);
    expect(parseVerb("DATAX")).toBe("UNKNOWN");
    expect(parseVerb("STARTTLSX")).toBe("UNKNOWN");
    expect(parseVerb("XYZZY now")).toBe("UNKNOWN");
    expect(parseVerb("DAT")).toBe("UNKNOWN");
    expect(parseVerb("\0\u0001ga")).toBe("UNKNOWN");
    expect(parseVerb("")).toBe("UNKNOWN");
  });
});

describe("MAIL FROM", () => {
  it("parses address, domain and the advertised parameters", () => {
    expect(mail("MAIL FROM:<Bob@Example.COM> SIZE=1234 BODY=8BITMIME")).toEqual({
      address: "Bob@Example.COM",
      at: 3,
      domain: "example.com",
      size: 1234,
      smtputf8: false,
    });
    expect(mail("MAIL from: <>")).toMatchObject({ address: "", domain: "" });
    expect(localPart(mail("MAIL FROM:<450-x@y.z>") as Envelope)).toBe("450-x");
  });

  it("accepts a UTF-8 address only with SMTPUTF8", () => {
    expect(mail("MAIL FROM:<jöran@bücher.example> SMTPUTF8")).toMatchObject({
      domain: "bücher.example",
      smtputf8: true,
    });
    expect(mail("MAIL FROM:<jöran@bücher.example>")).toMatch(/^553 5\.6\.7/);
  });

  it("rejects bad syntax and unknown parameters with the right codes", () => {
    expect(mail("MAIL FROM:bob@example.com")).toMatch(/^501 /);
    expect(mail("MAIL TO:<bob@example.com>")).toMatch(/^501 /);
    expect(mail("MAIL FROM:<bob@example.com")).toMatch(/^501 /);
    expect(mail("MAIL FROM:<bob@example.com> AUTH=<>")).toMatch(/^555 /);
    expect(mail("MAIL FROM:<bob@example.com> SIZE=lots")).toMatch(/^555 /);
    expect(mail("MAIL FROM:<a b@example.com>")).toMatch(/^501 /);
    expect(mail("MAIL FROM:<a\0b@example.com>")).toMatch(/^501 /);
    expect(mail("MAIL FROM:<@example.com>")).toMatch(/^501 /);
  });
});

describe("RCPT TO", () => {
  it("parses the recipient and lower-cases its domain", () => {
    const e = rcpt("RCPT TO:<450-User@Gmail.COM>") as Envelope;
    expect(e).toMatchObject({ address: "450-User@Gmail.COM", domain: "gmail.com" });
    expect(localPart(e)).toBe("450-User");
    expect(localPart(rcpt("RCPT TO:<postmaster>") as Envelope)).toBe("postmaster");
    expect(rcpt("RCPT TO:<@relay.example:user@dest.example>")).toMatchObject({ domain: "dest.example" });
  });

  it("refuses empty paths, parameters and non-ASCII without SMTPUTF8", () => {
    expect(rcpt("RCPT TO:<>")).toMatch(/^501 /);
    expect(rcpt("RCPT TO:<a@b.example> NOTIFY=NEVER")).toBe("555 5.5.4 Unsupported RCPT parameter NOTIFY");
    expect(rcpt("RCPT TO:<ü@b.example>")).toMatch(/^553 5\.6\.7/);
    expect(localPart(rcpt("RCPT TO:<ü@b.example>", true) as Envelope)).toBe("ü");
  });
});
