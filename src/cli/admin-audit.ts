import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import type { AuditEntry } from "../domain/types.js";
import { openMetadataStore } from "./server-runtime.js";
import { CliError, table } from "./common.js";
import { outputOption, printable, printListing } from "./output.js";

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an ISO 8601 date or time, or an age such as 30m, 12h, 7d (that long ago). */
function parseSince(raw: string, now = Date.now()): string {
  const age = /^([0-9]+)\s*([smhd])$/.exec(raw.trim());
  if (age) return new Date(now - Number(age[1]) * UNIT_MS[age[2]!]!).toISOString();
  const at = /^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(raw.trim()) ? new Date(raw.trim()) : new Date(NaN);
  if (Number.isNaN(at.getTime())) throw new CliError(`--since must be an ISO 8601 time (2026-01-31, 2026-01-31T12:00:00Z) or an age like 30m, 12h, 7d (got '${raw}')`);
  return at.toISOString();
}

/** One entry as printed by `-o json`/`jsonl`: snake_case, as the API speaks. */
function present(entry: AuditEntry) {
  return {
    id: entry.id,
    at: entry.at,
    action: entry.action,
    key_id: entry.keyId,
    actor: entry.actor,
    org_id: entry.orgId,
    subject: entry.subject,
    details: entry.details,
  };
}

export function registerAdminAudit(admin: Command): void {
  admin
    .command("audit")
    .description("show the audit log: keys created and revoked, projects and jobs deleted, URL secrets rotated... (who, when, what; oldest first)")
    .option("--data-dir <dir>", "data directory (env CKPT_DATA_DIR; default ./ckpt-data)")
    .option("--since <time>", "only entries at or after this ISO 8601 time, or this long ago (30m, 12h, 7d)")
    .option("--limit <n>", "at most this many entries")
    .addOption(outputOption())
    .action(async (opts) => {
      const since = opts.since !== undefined ? parseSince(String(opts.since)) : undefined;
      if (opts.limit !== undefined && !/^[1-9][0-9]{0,8}$/.test(String(opts.limit))) throw new CliError("--limit must be a positive integer");
      const store = await openMetadataStore(loadServerConfig({ dataDir: opts.dataDir }));
      try {
        const entries = (await store.listAudit({ since, limit: opts.limit !== undefined ? Number(opts.limit) : undefined })).map(present);
        printListing(opts.output, entries, (entries) =>
            table([
              ["TIME", "ACTION", "BY", "SUBJECT", "DETAILS"],
              ...entries.map((e) => [
                e.at,
                e.action,
                printable(e.actor),
                printable(e.subject ?? "-"),
                printable(Object.entries(e.details).map(([k, v]) => `${k}=${v}`).join(" ") || "-"),
              ]),
            ]),
        );
      } finally {
        await store.close();
      }
    });
}
