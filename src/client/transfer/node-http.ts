/**
 * node:http and node:https, taken as their CommonJS exports. An ESM `import` of a built-in
 * builds a module facade that reads every export once, and on Node 22+ node:http has lazy getters
 * (WebSocket, CloseEvent, MessageEvent) whose first read loads and compiles undici: on Node 24 that
 * costs more than the rest of a `ckpt ls` start-up (BENCHMARKS.md, start-up).
 * `process.getBuiltinModule` hands out the exports object without a facade. node:https (TLS and
 * crypto) is loaded only by whoever asks for it.
 */
export const nodeHttp = (): typeof import("node:http") => process.getBuiltinModule("node:http");
export const nodeHttps = (): typeof import("node:https") => process.getBuiltinModule("node:https");
