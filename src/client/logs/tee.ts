import type { Readable, Writable } from "node:stream";

/**
 * Copies `source` to `sink` unchanged, handing each chunk to `observe` as well. The sink's own
 * back-pressure is kept (a slow terminal slows the writer, as if it wrote there itself); the
 * observer cannot slow anything. If the sink breaks (e.g. `| head` exited), the source is
 * closed, so the writer gets the same EPIPE it would have had writing there directly.
 * Resolves once the source has ended or been closed.
 */
export function tee(source: Readable, sink: Writable, observe: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve) => {
    const onSinkError = () => source.destroy();
    sink.on("error", onSinkError);
    source.on("data", (chunk: Buffer) => {
      observe(chunk);
      if (!sink.write(chunk)) {
        source.pause();
        sink.once("drain", () => source.resume());
      }
    });
    const finish = () => {
      sink.off("error", onSinkError);
      resolve();
    };
    source.once("end", finish);
    source.once("close", finish);
  });
}
