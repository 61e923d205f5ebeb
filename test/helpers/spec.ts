import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

// Fixtures stay in test/fixtures (not compiled); find them from dist/test/helpers.
const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test", "fixtures");
export const basetenDoc = JSON.parse(readFileSync(join(fixtures, "baseten-training-api.json"), "utf8")) as {
  components: { schemas: Record<string, Record<string, unknown>> };
};
export const seedSchemas = JSON.parse(readFileSync(join(fixtures, "seed-checkpoint-files-schemas.json"), "utf8")) as Record<
  string,
  { properties: Record<string, unknown>; required: string[] }
>;

const ajv = new (Ajv2020 as unknown as typeof Ajv2020.default)({ strict: false, allErrors: true });
(addFormats as unknown as typeof addFormats.default)(ajv);
ajv.addSchema({ ...basetenDoc, $id: "baseten" });
ajv.addSchema({ ...seedSchemas, $id: "seed" });

/** Asserts `body` validates against a schema of Baseten's own OpenAPI document. */
export function assertBasetenShape(schemaName: string, body: unknown): void {
  const validate = ajv.getSchema(`baseten#/components/schemas/${schemaName}`);
  assert.ok(validate, `no schema ${schemaName} in Baseten's document`);
  const ok = validate(body);
  assert.ok(ok, `response is not a valid ${schemaName}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
}

/** Asserts `body` validates against the seed spec's copy of a schema (the checkpoint_files contract). */
export function assertSeedShape(schemaName: "GetTrainingJobCheckpointFilesResponseV1" | "CheckpointFile", body: unknown): void {
  const validate = ajv.getSchema(`seed#/${schemaName}`)!;
  assert.ok(validate(body), `response is not a valid ${schemaName}: ${ajv.errorsText(validate.errors)}`);
}
