import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Short, URL-safe, lowercase ids in the style of Baseten's (e.g. "q4z8k2m1"); 8 chars = 41 bits. */
export function newId(length = 8): string {
  // 252 is the largest multiple of 36 below 256: rejecting bytes above it keeps the ids uniform.
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 252 && out.length < length) out += ALPHABET[byte % 36];
    }
  }
  return out;
}
