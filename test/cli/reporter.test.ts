import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createReporter } from "../../src/cli/reporter.js";

/** A stream that keeps what is written, posing as a terminal or not (a CLI under test never has one). */
function capture(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  let text = "";
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += chunk;
      done();
    },
  });
  return Object.assign(stream, { isTTY, text: () => text });
}

test("reporter on a terminal: progress redrawn in place, lines printed above it and the progress line redrawn after", () => {
  const tty = capture(true);
  const r = createReporter({}, tty);
  r.progress("1/3");
  r.progress("2/3");
  r.info("planned");
  r.warn("slow");
  r.clearProgress();
  assert.equal(tty.text(), "\r\x1b[K1/3\r\x1b[K2/3\r\x1b[Kplanned\n\r\x1b[K2/3\r\x1b[Kwarning: slow\n\r\x1b[K2/3\r\x1b[K");
});

test("reporter off a terminal: no progress at all; --quiet keeps warnings only; a prefix for lines mixed with other output", () => {
  const pipe = capture(false);
  const r = createReporter({ prefix: "ckpt: " }, pipe);
  r.progress("1/3");
  r.info("done");
  r.warn("odd");
  r.clearProgress();
  assert.equal(pipe.text(), "ckpt: done\nckpt: warning: odd\n");

  const quietTty = capture(true);
  const q = createReporter({ quiet: true }, quietTty);
  q.progress("1/3");
  q.info("done");
  q.warn("odd");
  assert.equal(quietTty.text(), "warning: odd\n");
});
