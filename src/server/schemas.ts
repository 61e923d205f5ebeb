import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { badRequest } from "../domain/errors.js";

/**
 * API schemas, one source for validation, serialisation and /openapi.json. Shapes follow
 * Baseten's management API (see shared/spec): property names, types and required lists of
 * `CheckpointFile` and `GetTrainingJobCheckpointFilesResponseV1` are the seed's exactly.
 */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const ErrorResponse = Type.Object(
  {
    message: Type.String(),
    code: Type.Optional(Type.String()),
    request_id: Type.Optional(Type.String({ description: "the request's id (its X-Request-Id), to find it in the server's log" })),
  },
  { $id: "ErrorResponse", title: "ErrorResponse" },
);

export const CheckpointFile = Type.Object(
  {
    url: Type.String({ title: "Url" }),
    relative_file_name: Type.String({ title: "Relative File Name" }),
    node_rank: Type.Integer({ title: "Node Rank" }),
    size_bytes: Type.Integer({ title: "Size Bytes" }),
    last_modified: Type.String({ title: "Last Modified" }),
  },
  { $id: "CheckpointFile", title: "CheckpointFile" },
);
export type CheckpointFileT = Static<typeof CheckpointFile>;

export const GetTrainingJobCheckpointFilesResponseV1 = Type.Object(
  {
    presigned_urls: Type.Array(Type.Ref(CheckpointFile), {
      title: "Presigned Urls",
      description: "List of presigned URLs for checkpoint files.",
    }),
    next_page_token: Type.Optional(
      Type.Union([Type.Integer(), Type.Null()], {
        default: null,
        title: "Next Page Token",
        description: "Token to use for fetching the next page of results. None when there are no more results.",
      }),
    ),
    total_count: Type.Integer({ title: "Total Count", description: "Total number of checkpoint files available." }),
  },
  {
    $id: "GetTrainingJobCheckpointFilesResponseV1",
    title: "GetTrainingJobCheckpointFilesResponseV1",
    description: "A response to fetch presigned URLs for checkpoint files of a training job.",
  },
);

const InstanceTypeV1 = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    memory_limit_mib: Type.Integer(),
    millicpu_limit: Type.Integer(),
    gpu_count: Type.Integer(),
    gpu_type: Nullable(Type.String()),
    gpu_memory_limit_mib: Nullable(Type.Integer()),
  },
  { $id: "InstanceTypeV1" },
);

const TrainingProjectSummaryV1 = Type.Object({ id: Type.String(), name: Type.String() }, { $id: "TrainingProjectSummaryV1" });

export const TrainingJobV1 = Type.Object(
  {
    id: Type.String(),
    created_at: Type.String({ format: "date-time" }),
    current_status: Type.String(),
    error_message: Nullable(Type.String()),
    instance_type: Type.Ref(InstanceTypeV1),
    updated_at: Type.String({ format: "date-time" }),
    training_project_id: Type.String(),
    training_project: Type.Ref(TrainingProjectSummaryV1),
    name: Nullable(Type.String()),
    checkpoint_sync_status: Nullable(Type.Union([Type.Literal("SYNCING"), Type.Literal("COMPLETED")])),
    priority: Type.Integer({ default: 0 }),
    availability_model: Type.Union([Type.Literal("dedicated"), Type.Literal("spot")], { default: "dedicated" }),
    user: Nullable(Type.Object({ email: Nullable(Type.String()) })),
  },
  { $id: "TrainingJobV1" },
);

export const TrainingProjectV1 = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    created_at: Type.String({ format: "date-time" }),
    updated_at: Type.String({ format: "date-time" }),
    team_name: Nullable(Type.String()),
    latest_job: Nullable(Type.Ref(TrainingJobV1)),
  },
  { $id: "TrainingProjectV1" },
);

export const TrainingJobCheckpointV1 = Type.Object(
  {
    checkpoint_id: Type.String(),
    created_at: Type.String({ format: "date-time" }),
    checkpoint_type: Type.String(),
    base_model: Nullable(Type.String()),
    lora_adapter_config: Nullable(Type.Object({}, { additionalProperties: true })),
    size_bytes: Type.Integer(),
    sync_status: Nullable(Type.String()),
    training_job_id: Type.String(),
    parameter_count: Type.Optional(
      Nullable(Type.Integer({ description: "(ckpt extension) Elements of the checkpoint's safetensors files, all ranks; null when it has none ckpt could read." })),
    ),
    // ckpt extensions (Baseten's schema allows extra properties here).
    state: Type.Union([Type.Literal("WRITING"), Type.Literal("COMPLETE"), Type.Literal("INCOMPLETE")], {
      description: "ckpt: WRITING (files may still arrive), COMPLETE, or INCOMPLETE (its job ended before it completed).",
    }),
    file_count: Type.Integer({ description: "ckpt: files in the checkpoint, over all ranks." }),
    aliases: Type.Array(Type.String(), { description: "ckpt: project aliases naming it, and 'best' when trainer_state.json says so." }),
    pinned: Type.Boolean({ description: "ckpt: pinned checkpoints are never deleted by retention." }),
    completed_at: Nullable(Type.String({ format: "date-time", description: "ckpt: when it became COMPLETE; null until then." })),
    completed_by: Nullable(Type.String({ description: "ckpt: what completed it: marker, safetensors-index, deepspeed-latest, explicit, job-completed." })),
  },
  { $id: "TrainingJobCheckpointV1" },
);

export const SharedSchemas = [
  ErrorResponse,
  CheckpointFile,
  GetTrainingJobCheckpointFilesResponseV1,
  InstanceTypeV1,
  TrainingProjectSummaryV1,
  TrainingJobV1,
  TrainingProjectV1,
  TrainingJobCheckpointV1,
];

export const ProjectParams = Type.Object({ training_project_id: Type.String({ minLength: 1, maxLength: 128 }) });
export const JobParams = Type.Object({
  training_project_id: Type.String({ minLength: 1, maxLength: 128 }),
  training_job_id: Type.String({ minLength: 1, maxLength: 128 }),
});

/** Error responses every authenticated route can give. */
export const errorResponses = {
  400: Type.Ref(ErrorResponse),
  401: Type.Ref(ErrorResponse),
  404: Type.Ref(ErrorResponse),
};

/**
 * The offset paging of checkpoint_files (and of the ckpt routes paged like it), checked before
 * schema coercion: Ajv would turn "1e400" into Infinity and "0x10" into 16.
 */
export async function rejectNonIntegerPaging(request: { query: unknown }): Promise<void> {
  const query = request.query as Record<string, unknown>;
  for (const name of ["page_size", "page_token"])
    if (query[name] !== undefined && (typeof query[name] !== "string" || !/^[0-9]{1,16}$/.test(query[name] as string)))
      throw badRequest(`${name} must be a non-negative integer`);
}
