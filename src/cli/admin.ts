import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import { issueKey, ownerEmailProblem } from "../domain/keys.js";
import { openMetadataStore, openRuntime, rotateKeyring } from "./server-runtime.js";
import type { GcReport } from "../domain/gc.js";
import { CliError, table } from "./common.js";
import { outputOption, printJsonLines, printListing } from "./output.js";
import { createReporter } from "./reporter.js";
import { registerAdminImport } from "./admin-import.js";
import { registerAdminMigrate } from "./admin-migrate.js";
import { registerAdminAudit } from "./admin-audit.js";
import { adminActor, recordAudit } from "../domain/audit.js";

/** The metadata store the server would use: SQLite in --data-dir, or CKPT_DATABASE_URL. */
async function openStore(opts: { dataDir?: string }) {
  const config = loadServerConfig({ dataDir: opts.dataDir });
  return { config, store: await openMetadataStore(config) };
}

export function registerAdmin(program: Command): void {
  const admin = program.command("admin").description("administer a ckpt data directory (runs locally, no server needed)");
  registerAdminImport(admin);
  registerAdminMigrate(admin);
  registerAdminAudit(admin);

  admin
    .command("create-key")
    .description("create an API key for an organisation (created if needed); prints the key as the only line")
    .requiredOption("--org <name>", "organisation name")
    .option("--email <address>", "the key owner's email: jobs created with the key show it as their user")
    .option("--data-dir <dir>", "data directory (env CKPT_DATA_DIR; default ./ckpt-data)")
    .action(async (opts) => {
      const ownerEmail: string | null = opts.email ?? null;
      const problem = ownerEmail === null ? null : ownerEmailProblem(ownerEmail);
      if (problem) throw new CliError(`--email: ${problem}`);
      const { store } = await openStore(opts);
      try {
        const org = await store.ensureOrganisation(opts.org);
        const key = issueKey();
        await store.insertApiKey({ keyId: key.keyId, orgId: org.id, secretHash: key.secretHash, ownerEmail });
        await recordAudit(store, adminActor(), { action: "api_key.created", orgId: org.id, subject: key.keyId, details: { organisation: org.name } });
        process.stdout.write(`${key.plaintext}\n`);
        createReporter(opts).info(`created key ${key.keyId} for organisation '${org.name}': store it now, it is not shown again`);
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
        const revoked = await store.findApiKey(id);
        await recordAudit(store, adminActor(), { action: "api_key.revoked", orgId: revoked?.orgId ?? null, subject: id });
        createReporter(opts).info(`revoked key ${id}`);
      } finally {
        await store.close();
      }
    });

  admin
    .command("list-keys")
    .description("list API keys (ids only; secrets are never stored)")
    .option("--data-dir <dir>", "data directory")
    .addOption(outputOption())
    .action(async (opts) => {
      const { store } = await openStore(opts);
      try {
        const keys = await store.listApiKeys();
        const rows = keys.map((k) => ({
          key_id: k.keyId,
          organisation: k.orgName,
          email: k.ownerEmail,
          created_at: k.createdAt,
          revoked_at: k.revokedAt,
        }));
        printListing(opts.output, rows, (rows) =>
          table([
            ["KEY ID", "ORGANISATION", "EMAIL", "CREATED", "STATUS"],
            ...rows.map((r) => [r.key_id, r.organisation, r.email ?? "-", r.created_at, r.revoked_at ? `revoked ${r.revoked_at}` : "active"]),
          ]),
        );
      } finally {
        await store.close();
      }
    });

  admin
    .command("rotate-url-secret")
    .description("start signing presigned URLs with a new secret; running servers pick it up within a second")
    .option("--data-dir <dir>", "data directory")
    .option("--revoke-previous", "also invalidate every URL signed with earlier secrets")
    .action(async (opts) => {
      const config = loadServerConfig({ dataDir: opts.dataDir });
      const keyring = await rotateKeyring(config.dataDir, Boolean(opts.revokePrevious));
      const store = await openMetadataStore(config);
      try {
        await recordAudit(store, adminActor(), {
          action: "url_secret.rotated",
          subject: keyring.currentKeyId,
          details: { revoke_previous: Boolean(opts.revokePrevious) },
        });
      } finally {
        await store.close();
      }
      createReporter(opts).info(
        `new URL signing secret ${keyring.currentKeyId}; ${opts.revokePrevious ? "earlier URLs are revoked" : `earlier URLs stay valid until they expire`}`,
      );
    });

  admin
    .command("gc")
    .description(
      "finish interrupted deletes, remove temporary data of interrupted uploads, and report and remove orphan blobs " +
        "(bytes that no listed file owns). On the embedded default, run it with the server stopped: it would remove " +
        "the temporary files of uploads in flight (the server sweeps them itself at start-up)",
    )
    .option("--data-dir <dir>", "data directory (env CKPT_DATA_DIR; default ./ckpt-data)")
    .option("--dry-run", "report only; change nothing")
    .option("--min-age <seconds>", "keep orphans and temporary upload data younger than this: a running server may be using them", "3600")
    .addOption(outputOption(undefined, { text: "table" }))
    .action(async (opts) => {
      const config = loadServerConfig({ dataDir: opts.dataDir });
      if (!/^[0-9]+$/.test(String(opts.minAge))) throw new CliError("--min-age must be a whole number of seconds");
      const minAgeSeconds = Number(opts.minAge);
      const dryRun = Boolean(opts.dryRun);
      const runtime = await openRuntime(config);
      try {
        const report = await runtime.service.collectGarbage({ dryRun, minAgeMs: minAgeSeconds * 1000 });
        printGcReport(opts.output, report, dryRun);
      } finally {
        await runtime.close();
      }
    });
}

/** `-o json`: the report as one document; `-o jsonl`: one line per orphan blob; `-o table`: lines for people. */
function printGcReport(format: string, report: GcReport, dryRun: boolean): void {
  if (format === "json") process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else if (format === "jsonl") printJsonLines(report.orphans);
  else process.stdout.write(formatGcReport(report, dryRun));
}

function formatGcReport(report: GcReport, dryRun: boolean): string {
  const lines = [
    `${report.interruptedDeletes} interrupted job delete(s) ${dryRun ? "to finish" : "finished"}`,
    dryRun ? "temporary upload data: not inspected in a dry run" : `${report.temporaryRemoved} temporary upload file(s) removed`,
    ...report.orphans.map((o) => `orphan ${o.key} (${o.sizeBytes} bytes): ${o.action}`),
    `${report.orphans.length} orphan blob(s), ${report.orphans.reduce((n, o) => n + o.sizeBytes, 0)} bytes`,
  ];
  return lines.join("\n") + "\n";
}
