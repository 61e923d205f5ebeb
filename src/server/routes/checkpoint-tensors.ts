import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { errorResponses, rejectNonIntegerPaging } from "../schemas.js";

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);
const BytesByDtype = Type.Record(Type.String(), Type.Integer(), { description: "Bytes of tensor data per dtype." });

const CheckpointTensorsResponse = Type.Object(
  {
    checkpoint_id: Type.String(),
    parameter_count: Nullable(Type.Integer({ description: "Elements of every readable safetensors file, all ranks." })),
    bytes_by_dtype: BytesByDtype,
    tensor_count: Type.Integer(),
    files: Type.Array(
      Type.Object({
        node_rank: Type.Integer(),
        relative_file_name: Type.String(),
        size_bytes: Type.Integer(),
        sha256: Nullable(Type.String()),
        format: Nullable(Type.String({ description: "safetensors, safetensors_index, peft_adapter_config; null: not read by ckpt." })),
        error: Nullable(Type.String({ description: "Why the contents could not be read as their format (the file is still stored)." })),
        parameter_count: Nullable(Type.Integer()),
        bytes_by_dtype: Nullable(BytesByDtype),
        metadata: Nullable(Type.Record(Type.String(), Type.String(), { description: "The safetensors __metadata__ map." })),
        tensor_count: Type.Integer(),
        tensors: Type.Array(
          Type.Object({
            name: Type.String(),
            dtype: Type.String(),
            shape: Type.Array(Type.Integer()),
            parameters: Type.Integer(),
            data_offsets: Type.Array(Type.Integer(), { minItems: 2, maxItems: 2, description: "[start, end) in the data section, which begins at byte 8 + header length." }),
          }),
          { description: "This page's tensors of the file, in file order." },
        ),
      }),
    ),
    indexes: Type.Array(
      Type.Object({
        node_rank: Type.Integer(),
        relative_file_name: Type.String(),
        error: Nullable(Type.String()),
        tensor_count: Type.Integer(),
        found: Type.Integer(),
        missing: Type.Integer(),
      }),
      { description: "Every *.safetensors.index.json of the checkpoint, its weight_map checked against the shards present (first page only; empty on later pages)." },
    ),
    missing_from_index: Type.Array(
      Type.Object({ name: Type.String(), node_rank: Type.Integer(), index_file: Type.String(), shard: Type.String(), reason: Type.String() }),
    ),
    next_page_token: Nullable(Type.Integer()),
    total_count: Type.Integer({ description: "Tensors in the checkpoint (or the file asked for)." }),
  },
  { $id: "CheckpointTensorsResponse", title: "CheckpointTensorsResponse" },
);

/** (ckpt extension) The tensors of a checkpoint, as indexed from its files' headers when they were committed. */
export const checkpointTensorsRoute: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  app.get(
    "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoints/:checkpoint_id/tensors",
    {
      schema: {
        summary: "List a checkpoint's tensors (ckpt extension).",
        description:
          "Names, dtypes, shapes and byte ranges of the tensors of every safetensors file of the checkpoint (all ranks), " +
          "read from each file's header when it was committed; totals; and each shard index checked against the shards " +
          "present. Paged over tensors by offset, like checkpoint_files. `file` restricts it to one relative_file_name.",
        tags: ["checkpoints"],
        params: Type.Object({
          training_project_id: Type.String({ minLength: 1, maxLength: 128 }),
          training_job_id: Type.String({ minLength: 1, maxLength: 128 }),
          checkpoint_id: Type.String({ minLength: 1, maxLength: 1024 }),
        }),
        querystring: Type.Object({
          page_size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 1000 }),
          page_token: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }),
          file: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
        }),
        response: { 200: CheckpointTensorsResponse, ...errorResponses },
      },
      preValidation: rejectNonIntegerPaging,
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j, checkpoint_id: c } = request.params;
      return service.checkpointTensors(callerOf(request), p, j, c, {
        pageToken: request.query.page_token,
        pageSize: request.query.page_size,
        fileName: request.query.file,
      });
    },
  );
};
