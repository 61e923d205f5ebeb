/**
 * ckpt's client SDK: importable on its own (`import { CkptClient } from "ckpt/client"`); it pulls
 * in none of the server's dependencies.
 */
export { CkptClient, BASETEN_API_URL, type ClientOptions } from "./api.js";
export { CkptApiError } from "./errors.js";
export { uploadCheckpointFile, sha256OfFile } from "./upload.js";
export type * from "./types.js";
