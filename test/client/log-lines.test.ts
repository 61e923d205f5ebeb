// How `ckpt run` cuts the command's output into log lines (LineSplitter), and what LogShipper
// keeps when the server is unreachable: a real closed port, no mock.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CkptClient } from "../../src/client/api.js";
import { LineSplitter } from "../../src/client/logs/line-splitter.js";
import { LogShipper } from "../../src/client/logs/log-shipper.js";
import { freePort } from "../harness/server.js";

function splitAll(chunks: (string | Buffer)[], maxChars?: number): string[] {
  const splitter = new LineSplitter(maxChars);
  const lines = chunks.flatMap((c) => splitter.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
  return [...lines, ...splitter.end()];
}

describe("LineSplitter", () => {
  test("\\n, \\r\\n (even split across chunks) and a lone \\r end lines; empty lines are kept; the last line needs no ending", () => {
    assert.deepEqual(splitAll(["a\nb\r", "\nc\rd\n\n", "tail"]), ["a", "b", "c", "d", "", "tail"]);
    assert.deepEqual(splitAll(["x\r"]), ["x"]);
    assert.deepEqual(splitAll([""]), []);
  });

  test("a UTF-8 character split across chunks is decoded whole; invalid bytes become U+FFFD", () => {
    const bytes = Buffer.from("héllo ✓\n");
    const chunks = Array.from(bytes).map((b) => Buffer.from([b]));
    assert.deepEqual(splitAll(chunks), ["héllo ✓"]);
    assert.deepEqual(splitAll([Buffer.from([0x61, 0xff, 0x62, 0x0a])]), ["a\ufffdb"]);
  });

  test("a line longer than the limit is sent in pieces, never splitting a surrogate pair", () => {
    assert.deepEqual(splitAll(["abcdefghij\n"], 4), ["abcd", "efgh", "ij"]);
    assert.deepEqual(splitAll(["abc😀def\n"], 4), ["abc", "😀de", "f"]);
    // an unterminated long line is cut as it grows, so the splitter holds at most one piece
    const splitter = new LineSplitter(4);
    assert.deepEqual(splitter.push(Buffer.from("abcdefghij")), ["abcd", "efgh"]);
    assert.deepEqual(splitter.end(), ["ij"]);
  });
});

describe("LogShipper", () => {
  test("with the server unreachable, writes never throw, memory stays bounded and every lost line is counted", async () => {
    const port = await freePort(); // nothing listens there
    const warnings: string[] = [];
    const shipper = new LogShipper({
      client: new CkptClient({ apiUrl: `http://127.0.0.1:${port}`, apiKey: "ckpt_x.y" }),
      projectId: "p",
      jobId: "j",
      nodeRank: 0,
      maxBufferedBytes: 16 << 10,
      flushIntervalMs: 10,
      onWarning: (m) => warnings.push(m),
    });
    const line = Buffer.from(`${"x".repeat(99)}\n`);
    for (let i = 0; i < 5000; i++) shipper.write(i % 2 ? "stdout" : "stderr", line);
    const summary = await shipper.close(300);
    assert.equal(summary.sentLines, 0);
    assert.equal(summary.droppedLines, 5000, "every line is either sent or counted as dropped");
    assert.match(summary.lastError ?? "", /fetch failed|ECONNREFUSED/);
    assert.ok(warnings.length >= 1 && warnings.length <= 2, `warned once per kind of trouble: ${warnings.join(" | ")}`);
  });
});
