/**
 * Where a JSON text first goes wrong. V8's JSON.parse messages only sometimes carry a position, so this small
 * scanner (run only after JSON.parse failed) finds the offending offset and turns it into a line and column.
 */
export interface JsonErrorLocation {
  offset: number;
  line: number;
  column: number;
  message: string;
}

class ScanError extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

function describe(text: string, i: number): string {
  return i >= text.length ? "unexpected end of file" : `unexpected ${JSON.stringify(text[i])}`;
}

function scan(text: string): void {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const expect = (ch: string, what: string) => {
    if (text[i] !== ch) throw new ScanError(i, `${describe(text, i)}, expected ${what}`);
    i++;
  };
  const str = () => {
    expect('"', "a string");
    while (i < text.length) {
      const c = text[i] as string;
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) throw new ScanError(i, "invalid \\u escape");
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else throw new ScanError(i, "invalid escape in string");
      } else if (c < " ") throw new ScanError(i, "control character in string (newlines must be written \\n)");
      else i++;
    }
    throw new ScanError(i, "unterminated string");
  };
  const num = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) throw new ScanError(i, `${describe(text, i)}, expected a value`);
    i += m[0].length;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        expect(":", "':' after a property name");
        value();
        ws();
        if (text[i] === ",") {
          i++;
          ws();
          if (text[i] === "}") throw new ScanError(i, "trailing comma before '}'");
          continue;
        }
        expect("}", "',' or '}' after a property value");
        return;
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ",") {
          i++;
          ws();
          if (text[i] === "]") throw new ScanError(i, "trailing comma before ']'");
          continue;
        }
        expect("]", "',' or ']' after an array element");
        return;
      }
    }
    if (c === '"') {
      str();
      return;
    }
    for (const lit of ["true", "false", "null"]) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return;
      }
    }
    num();
  };
  value();
  ws();
  if (i < text.length) throw new ScanError(i, `${describe(text, i)} after the end of the JSON value`);
}

export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

export type JsonParseResult = { ok: true; value: unknown } | { ok: false; error: JsonErrorLocation };

export function parseJsonWithLocation(text: string): JsonParseResult {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch (err) {
    try {
      scan(body);
    } catch (e) {
      if (e instanceof ScanError)
        return { ok: false, error: { offset: e.offset, ...lineColumn(body, e.offset), message: e.message } };
    }
    return { ok: false, error: { offset: 0, line: 1, column: 1, message: (err as Error).message } };
  }
}
