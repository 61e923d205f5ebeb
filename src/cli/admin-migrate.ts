import type { Command } from "commander";
import { loadServerConfig } from "../config.js";
import { openMetadataStore } from "./server-runtime.js";
import { createReporter } from "./reporter.js";

export function registerAdminMigrate(admin: Command): void {
  admin
    .command("migrate")
    .description("apply pending database migrations (servers also do this on start, safely in parallel)")
    .option("--data-dir <dir>", "data directory (SQLite); CKPT_DATABASE_URL selects PostgreSQL")
    .action(async (opts) => {
      const config = loadServerConfig({ dataDir: opts.dataDir });
      // Opening a store applies its migrations (under an advisory lock on PostgreSQL).
      const store = await openMetadataStore(config);
      await store.close();
      createReporter(opts).info(`${store.kind} schema is up to date`);
    });
}
