/**
 * Checkpoint layouts of real training frameworks, as their save functions write them (file
 * names, order, and what each marker holds), for tests. `FRAMEWORK_WRITERS` is carried into the
 * training scripts as source, so a script and the test that checks it cannot disagree.
 */

/** A safetensors file: 8-byte little-endian header length, the JSON header, the tensor bytes. */
export function safetensorsBytes(tensors: Record<string, number>, fill = 1): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, elements] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape: [elements], data_offsets: [offset, offset + 4 * elements] };
    offset += 4 * elements;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, Buffer.from(json), Buffer.alloc(offset, fill)]);
}

export interface LayoutFile {
  name: string;
  content: Buffer;
}

/** HF Trainer's `checkpoint-N/`: weights and states first, trainer_state.json last. */
export function hfTrainerCheckpoint(step: number, evalLoss: number, best: { step: number; metric: number }): LayoutFile[] {
  const dir = `checkpoint-${step}`;
  const state = {
    best_metric: best.metric,
    best_model_checkpoint: `/workspace/output/checkpoint-${best.step}`,
    epoch: step / 100,
    global_step: step,
    log_history: [
      { loss: 2.5 - step / 1000, learning_rate: 1e-5, step },
      { eval_loss: evalLoss, eval_runtime: 1.5, step },
    ],
    max_steps: 1000,
    is_world_process_zero: true,
  };
  return [
    { name: `${dir}/config.json`, content: Buffer.from(JSON.stringify({ architectures: ["LlamaForCausalLM"], hidden_size: 64 })) },
    { name: `${dir}/model.safetensors`, content: safetensorsBytes({ "model.embed_tokens.weight": 4096, "lm_head.weight": 4096 }, step % 251) },
    { name: `${dir}/optimizer.pt`, content: Buffer.alloc(48 * 1024, 7) },
    { name: `${dir}/scheduler.pt`, content: Buffer.alloc(1000, 3) },
    { name: `${dir}/rng_state.pth`, content: Buffer.alloc(14_000, 5) },
    { name: `${dir}/training_args.bin`, content: Buffer.alloc(5000, 9) },
    { name: `${dir}/trainer_state.json`, content: Buffer.from(JSON.stringify(state, null, 2)) },
  ];
}

/** PyTorch DCP (torch.distributed.checkpoint.save): one `__R_0.distcp` per rank, then `.metadata`. */
export function dcpCheckpoint(dir: string, ranks = 2): LayoutFile[] {
  return [
    ...Array.from({ length: ranks }, (_, r) => ({ name: `${dir}/__${r}_0.distcp`, content: Buffer.alloc(40 * 1024, r + 1) })),
    { name: `${dir}/.metadata`, content: Buffer.alloc(2200, 0x80) },
  ];
}

/** DeepSpeed's `save_checkpoint(save_dir, tag)`: `global_stepN/` states, then `latest` (the tag) at the root. */
export function deepSpeedCheckpoint(step: number): LayoutFile[] {
  const tag = `global_step${step}`;
  return [
    { name: `${tag}/mp_rank_00_model_states.pt`, content: Buffer.alloc(64 * 1024, 1) },
    { name: `${tag}/zero_pp_rank_0_mp_rank_00_optim_states.pt`, content: Buffer.alloc(96 * 1024, 2) },
    { name: `${tag}/zero_pp_rank_1_mp_rank_00_optim_states.pt`, content: Buffer.alloc(96 * 1024, 3) },
    { name: "latest", content: Buffer.from(tag) },
  ];
}

/** `save_pretrained(max_shard_size=...)`: shards, then model.safetensors.index.json naming them. */
export function shardedSafetensors(dir: string): { shards: LayoutFile[]; index: LayoutFile } {
  const shards = [
    { name: `${dir}/model-00001-of-00002.safetensors`, content: safetensorsBytes({ "layers.0.weight": 6000, "layers.1.weight": 6000 }) },
    { name: `${dir}/model-00002-of-00002.safetensors`, content: safetensorsBytes({ "layers.2.weight": 6000, "lm_head.weight": 2000 }) },
  ];
  const weightMap = {
    "layers.0.weight": "model-00001-of-00002.safetensors",
    "layers.1.weight": "model-00001-of-00002.safetensors",
    "layers.2.weight": "model-00002-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
  };
  const index = { name: `${dir}/model.safetensors.index.json`, content: Buffer.from(JSON.stringify({ metadata: { total_size: 4 * 20000 }, weight_map: weightMap })) };
  return { shards, index };
}
