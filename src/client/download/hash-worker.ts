import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";

/**
 * A hashing thread of HashPool: hashes files from the page cache, in order, as the download
 * tells it how far each file is written. Reading here (rather than being sent the bytes) costs
 * the transfer thread nothing per byte: no copy between threads, no hashing on the event loop.
 */
export type HashCommand =
  /** Bytes [0, upTo) of the file at `path` are written: hash whatever of them is not yet hashed. */
  | { op: "advance"; id: number; path: string; upTo: number }
  /** Answer the digest of the first `size` bytes (after hashing up to there), and forget the file. */
  | { op: "digest"; id: number; path: string; size: number }
  /** Forget the file (its download failed or started over). */
  | { op: "drop"; id: number };

export type HashReply = { id: number; sha256: string } | { id: number; error: string };

interface State {
  fd: number;
  hash: Hash;
  position: number;
}

const BLOCK = 1 << 20;
const states = new Map<number, State>();
const buffer = Buffer.allocUnsafe(BLOCK);

function catchUp(id: number, path: string, upTo: number): State {
  let state = states.get(id);
  if (!state) {
    state = { fd: openSync(path, "r"), hash: createHash("sha256"), position: 0 };
    states.set(id, state);
  }
  while (state.position < upTo) {
    const length = Math.min(BLOCK, upTo - state.position);
    const read = readSync(state.fd, buffer, 0, length, state.position);
    if (read <= 0) throw new Error(`the partial file ended at ${state.position} of ${upTo} bytes`);
    state.hash.update(buffer.subarray(0, read));
    state.position += read;
  }
  return state;
}

function forget(id: number): void {
  const state = states.get(id);
  if (!state) return;
  states.delete(id);
  try {
    closeSync(state.fd);
  } catch {
    /* already closed */
  }
}

const failed = new Map<number, string>();

parentPort!.on("message", (command: HashCommand) => {
  try {
    if (command.op === "drop") {
      forget(command.id);
      failed.delete(command.id);
      return;
    }
    if (failed.has(command.id)) {
      if (command.op === "digest") {
        parentPort!.postMessage({ id: command.id, error: failed.get(command.id)! } satisfies HashReply);
        failed.delete(command.id);
      }
      return;
    }
    if (command.op === "advance") {
      catchUp(command.id, command.path, command.upTo);
      return;
    }
    const state = catchUp(command.id, command.path, command.size);
    const sha256 = state.hash.digest("hex");
    forget(command.id);
    parentPort!.postMessage({ id: command.id, sha256 } satisfies HashReply);
  } catch (err) {
    forget(command.id);
    const message = (err as Error).message;
    if (command.op === "digest") parentPort!.postMessage({ id: command.id, error: message } satisfies HashReply);
    else failed.set(command.id, message);
  }
});
