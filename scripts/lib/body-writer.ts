import type { BodyFrame } from "./inject-payload.ts";
import type { RecipientGenerator } from "./recipients.ts";

/**
 * Renders a request body for generated recipients straight into bytes: `{"email":"<prefix><n>@<domain>"<extra>}`
 * per recipient, with the constant pieces pre-encoded. No per-recipient strings, so generating 100 recipients
 * costs a few microseconds and little garbage. The address parts are checked ASCII with nothing JSON escapes.
 */
export class GeneratedBodyWriter {
  private scratch = Buffer.allocUnsafe(64 * 1024);
  private readonly open: Uint8Array;
  private readonly tails: Uint8Array[];
  private readonly maxRecipientBytes: number;
  private readonly digits = new Uint8Array(24);

  constructor(
    private readonly frame: BodyFrame,
    private readonly generator: RecipientGenerator,
  ) {
    this.open = Buffer.from(`{"email":"${generator.localPrefix}`);
    this.tails = generator.domains.map((d) => Buffer.from(`@${d.domain}"${frame.recipientExtra}}`));
    this.maxRecipientBytes = this.open.length + 16 + Math.max(...this.tails.map((t) => t.length)) + 1;
  }

  /** The next batch of up to `max` recipients as a complete body, or undefined when the generator is done. */
  next(max: number): { body: Buffer; recipients: number } | undefined {
    const { first, count } = this.generator.reserve(max);
    if (count === 0) return undefined;
    const need = this.frame.prefix.length + count * this.maxRecipientBytes + this.frame.suffix.length;
    if (this.scratch.length < need) this.scratch = Buffer.allocUnsafe(need * 2);
    const buf = this.scratch;
    let off = this.frame.prefix.copy(buf, 0);
    const open = this.open;
    const picker = this.generator.picker;
    // The decimal index is kept as ASCII digits and incremented in place: no division per recipient.
    const digits = this.digits;
    let len = writeDecimal(digits, 0, first);
    for (let i = 0; i < count; i++) {
      if (i > 0) buf[off++] = 0x2c;
      buf.set(open, off);
      off += open.length;
      for (let j = 0; j < len; j++) buf[off++] = digits[j] as number;
      len = incrementDecimal(digits, len);
      const tail = this.tails[picker.nextIndex()] as Uint8Array;
      buf.set(tail, off);
      off += tail.length;
    }
    off += this.frame.suffix.copy(buf, off);
    return { body: Buffer.from(buf.subarray(0, off)), recipients: count };
  }
}

/** Writes a non-negative integer in decimal ASCII at `off`; returns the offset after it. */
export function writeDecimal(buf: Uint8Array, off: number, value: number): number {
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  let v = value;
  for (let k = off + digits - 1; k >= off; k--) {
    buf[k] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
  return off + digits;
}

/** Adds one to the ASCII decimal in digits[0..len); returns the new length. */
export function incrementDecimal(digits: Uint8Array, len: number): number {
  let k = len - 1;
  while (k >= 0 && digits[k] === 0x39) digits[k--] = 0x30;
  if (k >= 0) {
    digits[k] = (digits[k] as number) + 1;
    return len;
  }
  digits.copyWithin(1, 0, len);
  digits[0] = 0x31;
  return len + 1;
}
