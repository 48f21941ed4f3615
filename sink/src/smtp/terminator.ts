const CR = 13;
const LF = 10;
const DOT = 46;
const TERMINATOR = Buffer.from("\r\n.\r\n", "latin1");

/**
 * Advances the match of "\r\n.\r\n" by one byte; `matched` is how many leading bytes of the terminator the data
 * seen so far ends with (0..4). Returns 5 on a full match.
 */
function step(matched: number, byte: number): number {
  switch (matched) {
    case 0:
      return byte === CR ? 1 : 0;
    case 1:
      return byte === LF ? 2 : byte === CR ? 1 : 0;
    case 2:
      return byte === DOT ? 3 : byte === CR ? 1 : 0;
    case 3:
      return byte === CR ? 4 : 0;
    default:
      return byte === LF ? 5 : byte === CR ? 1 : 0;
  }
}

/**
 * Finds the end of DATA ("\r\n.\r\n") in a stream of chunks without buffering them. Only the match state
 * (at most 4 bytes of terminator prefix) is carried from one chunk to the next, so a terminator split at any
 * byte offset is found. A bare "\n.\n" is not an end of data (RFC 5321 §4.1.1.4; accepting it enables SMTP
 * smuggling). Dot-stuffed lines ("..") never match because the byte after "\r\n." must be CR.
 */
export class EndOfDataScanner {
  /** The CRLF that ended the DATA command is the first two bytes of the terminator: an empty message is ".\r\n". */
  private matched = 2;

  reset(): void {
    this.matched = 2;
  }

  /** Returns the offset just past the terminator in `buf` (searching from `start`), or -1 if it is not there yet. */
  scan(buf: Buffer, start: number): number {
    const end = buf.length;
    let m = this.matched;
    let i = start;
    while (m !== 0 && i < end) {
      m = step(m, buf[i] as number);
      i++;
      if (m === 5) {
        this.matched = 2;
        return i;
      }
    }
    if (i >= end) {
      this.matched = m;
      return -1;
    }
    const found = buf.indexOf(TERMINATOR, i);
    if (found >= 0) {
      this.matched = 2;
      return found + 5;
    }
    // No partial match can cross `i` (m was 0 there), so the carried state comes from the last 4 bytes only.
    m = 0;
    for (let j = Math.max(i, end - 4); j < end; j++) m = step(m, buf[j] as number);
    this.matched = m;
    return -1;
  }
}
