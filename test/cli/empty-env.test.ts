// An environment variable set to "" counts as unset, for every CKPT_* variable (and
// BASETEN_API_KEY): `CKPT_API_KEY= ckpt ...` falls back to BASETEN_API_KEY, as a shell that
// exports empty placeholders expects, and server settings fall back to their defaults.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ckptEnv, loadServerConfig } from "../../src/config.js";
import { runCli, startTestServer } from "../harness/server.js";

test("ckpt with CKPT_API_KEY='' uses BASETEN_API_KEY; CKPT_API_URL='' is the default URL", async (t) => {
  const server = await startTestServer();
  t.after(() => server.stop());
  const key = await server.createKey("org");
  const listed = await runCli(["projects", "-o", "json"], { env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: "", BASETEN_API_KEY: key } });
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout), []);
  const none = await runCli(["projects"], { env: { CKPT_API_URL: server.baseUrl, CKPT_API_KEY: "", BASETEN_API_KEY: "" } });
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no API key/);
  // "" is not a URL, but unset: the default (nothing listens there in the test, so the error names it)
  const defaultUrl = await runCli(["projects"], { env: { CKPT_API_URL: "", CKPT_API_KEY: key } });
  assert.notEqual(defaultUrl.code, 0);
  assert.doesNotMatch(defaultUrl.stderr, /must be an absolute URL/);
});

test("server settings set to '' take their defaults", () => {
  const config = loadServerConfig({}, { CKPT_PORT: "", CKPT_HOST: "", CKPT_DATA_DIR: "", CKPT_BLOB_STORE: "", CKPT_DATABASE_URL: "", CKPT_URL_TTL: "", CKPT_LOG_LEVEL: "" });
  const defaults = loadServerConfig({}, {});
  assert.deepEqual(config, defaults);
  assert.equal(config.port, 8787);
  assert.equal(config.blobStore.kind, "local");
  assert.equal(config.databaseUrl, undefined);
});

test("ckptEnv drops only empty CKPT_* and BASETEN_API_KEY values", () => {
  assert.deepEqual(ckptEnv({ CKPT_A: "", CKPT_B: "b", BASETEN_API_KEY: "", HOME: "", PATH: "/bin" }), { CKPT_B: "b", HOME: "", PATH: "/bin" });
});
