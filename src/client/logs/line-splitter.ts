import { StringDecoder } from "node:string_decoder";

/** The longest message the server takes (its MAX_LOG_MESSAGE_CHARS); longer lines are sent in pieces. */
const MAX_LINE_CHARS = 16384;

/**
 * Turns one stream's bytes into lines: UTF-8 decoded across chunk boundaries (invalid bytes become
 * U+FFFD), ended by \n, \r\n or a lone \r (progress bars redraw with \r), the ending removed.
 * A line longer than MAX_LINE_CHARS is cut into pieces, never inside a surrogate pair.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private pending = "";

  constructor(private readonly maxChars = MAX_LINE_CHARS) {}

  /** The lines this chunk completes. */
  push(chunk: Buffer): string[] {
    return this.split(this.pending + this.decoder.write(chunk), false);
  }

  /** Whatever is left once the stream has ended, as a last line (none when empty). */
  end(): string[] {
    return this.split(this.pending + this.decoder.end(), true);
  }

  private split(text: string, final: boolean): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A \r at the very end may be the first half of \r\n: decide when the next chunk comes.
      if (c === 13 && i === text.length - 1 && !final) break;
      this.cut(text.slice(start, i), lines);
      if (c === 13 && text.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    let rest = text.slice(start);
    if (final) {
      if (rest.endsWith("\r")) rest = rest.slice(0, -1);
      if (rest.length > 0) this.cut(rest, lines);
      rest = "";
    } else {
      while (rest.length > this.maxChars) {
        const end = this.safeEnd(rest);
        lines.push(rest.slice(0, end));
        rest = rest.slice(end);
      }
    }
    this.pending = rest;
    return lines;
  }

  private cut(line: string, into: string[]): void {
    while (line.length > this.maxChars) {
      const end = this.safeEnd(line);
      into.push(line.slice(0, end));
      line = line.slice(end);
    }
    into.push(line);
  }

  /** maxChars, or one less when that would split a surrogate pair. */
  private safeEnd(text: string): number {
    const c = text.charCodeAt(this.maxChars - 1);
    return c >= 0xd800 && c <= 0xdbff ? this.maxChars - 1 : this.maxChars;
  }
}
