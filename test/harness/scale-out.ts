import { test } from "node:test";
import { postgresAvailable } from "./postgres.js";
import { requireOrSkip } from "./required.js";
import { rgwAvailable } from "./rgw.js";

/**
 * Whether the PostgreSQL + S3 pass of a suite can run here. Where a service is missing it
 * registers one skipped test that says so (and, with CKPT_REQUIRE_SERVICES=1, fails instead).
 */
export async function scaleOutServicesReady(suite: string): Promise<boolean> {
  let ready = true;
  await test(`${suite} on PostgreSQL + S3`, (t) => {
    ready = requireOrSkip("postgres", postgresAvailable(), t) && requireOrSkip("rgw", rgwAvailable(), t);
  });
  return ready;
}
