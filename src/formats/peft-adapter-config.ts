/**
 * PEFT's `adapter_config.json` (written by `PeftModel.save_pretrained`): the adapter's kind
 * (`peft_type`), the model it adapts (`base_model_name_or_path`) and, for LoRA, `r`, `lora_alpha`,
 * `target_modules` and the rest. Baseten answers these as a checkpoint's `base_model` and
 * `lora_adapter_config`; truss sizes a LoRA deployment from `lora_adapter_config.r`.
 */

/** A larger adapter_config.json is not one PEFT wrote. */
export const ADAPTER_CONFIG_MAX_BYTES = 1 << 20;
/** Past this, `lora_adapter_config` keeps only the fields deployments read. */
const ADAPTER_CONFIG_MAX_KEPT_BYTES = 64 << 10;
const ESSENTIAL_FIELDS = ["peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "use_dora", "modules_to_save", "fan_in_fan_out", "init_lora_weights", "rank_pattern", "alpha_pattern"];

export interface PeftAdapterConfig {
  baseModel: string | null;
  peftType: string | null;
  /** The config as written (only ESSENTIAL_FIELDS when it is unusually large). */
  config: Record<string, unknown>;
}

export type AdapterConfigParse = { ok: true; adapter: PeftAdapterConfig } | { ok: false; error: string };

export function parseAdapterConfig(bytes: Uint8Array, fileSize: number): AdapterConfigParse {
  if (fileSize > ADAPTER_CONFIG_MAX_BYTES) return { ok: false, error: `adapter config of ${fileSize} bytes is above the ${ADAPTER_CONFIG_MAX_BYTES}-byte limit` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, fileSize)));
  } catch (err) {
    return { ok: false, error: `adapter config is not valid UTF-8 JSON (${(err as Error).message})` };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return { ok: false, error: "adapter config is not a JSON object" };
  const all = parsed as Record<string, unknown>;
  let config = all;
  if (bytes.length > ADAPTER_CONFIG_MAX_KEPT_BYTES) {
    config = {};
    for (const f of ESSENTIAL_FIELDS) if (Object.hasOwn(all, f)) config[f] = all[f];
  }
  const base = all.base_model_name_or_path;
  const type = all.peft_type;
  return {
    ok: true,
    adapter: { baseModel: typeof base === "string" && base !== "" ? base : null, peftType: typeof type === "string" ? type : null, config },
  };
}
