import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import { issueKey } from "../domain/keys.js";
import { rotateKeyring } from "../stores/blobs/url-signing.js";
import { openMetadataStore } from "../server/runtime.js";
import { CliError, table } from "./common.js";

/** The metadata store the server would use: SQLite in --data-dir, or CKPT_DATABASE_URL. */
async function openStore(opts: { dataDir?: string }) {
  const config = loadServerConfig({ dataDir: opts.dataDir });
  return { config, store: await openMetadataStore(config) };
}

export function registerAdmin(program: Command): void {
  const admin = program.command("admin").description("administer a ckpt data directory (runs locally, no server needed)");

  admin
    .command("create-key")
    .description("create an API key for an organisation (created if needed); prints the key as the only line")
    .requiredOption("--org <name>", "organisation name")
    .option("--data-dir <dir>", "data directory (env CKPT_DATA_DIR; default ./ckpt-data)")
    .action(async (opts) => {
      const { store } = await openStore(opts);
      try {
        const org = await store.ensureOrganisation(opts.org);
        const key = issueKey();
        await store.insertApiKey({ keyId: key.keyId, orgId: org.id, secretHash: key.secretHash });
        process.stdout.write(`${key.plaintext}\n`);
        process.stderr.write(`created key ${key.keyId} for organisation '${org.name}': store it now, it is not shown again\n`);
      } finally {
        await store.close();
      }
    });

  admin
    .command("revoke-key <keyId>")
    .description("revoke an API key (by its id, as listed by list-keys); takes effect on the next request")
    .option("--data-dir <dir>", "data directory")
    .action(async (keyId: string, opts) => {
      const { store } = await openStore(opts);
      try {
        // Accept the full key too, so a leaked key can be revoked by pasting it.
        const id = /^ckpt_([a-z0-9]+)\./.exec(keyId)?.[1] ?? keyId;
        if (!(await store.revokeApiKey(id))) throw new CliError(`no live API key with id '${id}'`);
        process.stderr.write(`revoked key ${id}\n`);
      } finally {
        await store.close();
      }
    });

  admin
    .command("list-keys")
    .description("list API keys (ids only; secrets are never stored)")
    .option("--data-dir <dir>", "data directory")
    .option("-o, --output <format>", "table or json", "table")
    .action(async (opts) => {
      const { store } = await openStore(opts);
      try {
        const keys = await store.listApiKeys();
        const rows = keys.map((k) => ({ key_id: k.keyId, organisation: k.orgName, created_at: k.createdAt, revoked_at: k.revokedAt }));
        if (opts.output === "json") process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
        else
          process.stdout.write(
            table([["KEY ID", "ORGANISATION", "CREATED", "STATUS"], ...rows.map((r) => [r.key_id, r.organisation, r.created_at, r.revoked_at ? `revoked ${r.revoked_at}` : "active"])]),
          );
      } finally {
        await store.close();
      }
    });

  admin
    .command("rotate-url-secret")
    .description("start signing presigned URLs with a new secret; restart the server to apply")
    .option("--data-dir <dir>", "data directory")
    .option("--revoke-previous", "also invalidate every URL signed with earlier secrets")
    .action(async (opts) => {
      const config = loadServerConfig({ dataDir: opts.dataDir });
      const keyring = rotateKeyring(config.dataDir, Boolean(opts.revokePrevious));
      process.stderr.write(
        `new URL signing secret ${keyring.currentKeyId}; ${opts.revokePrevious ? "earlier URLs are revoked" : `earlier URLs stay valid until they expire`}\n`,
      );
    });
}
