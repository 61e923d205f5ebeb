import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { CkptService } from "../../domain/service.js";
import { callerOf } from "../plugins/auth.js";
import { presentAlias, presentAliasMove, presentCheckpoint, presentPolicy, presentRetentionEntry } from "../present.js";
import { JobParams, ProjectParams, TrainingJobCheckpointV1, errorResponses } from "../schemas.js";

/**
 * ckpt extensions: checkpoints as objects (explicit completion, pins), project-scoped aliases
 * with their history, and retention (policy, plan, apply). None of these exist on Baseten.
 */
const CheckpointParams = Type.Object({ ...JobParams.properties, checkpoint_id: Type.String({ minLength: 1, maxLength: 1024 }) });
const AliasParams = Type.Object({ ...ProjectParams.properties, name: Type.String({ minLength: 1, maxLength: 128 }) });
const IdString = Type.String({ minLength: 1, maxLength: 1024 });

const Alias = Type.Object({
  name: Type.String(),
  training_job_id: Type.String(),
  checkpoint_id: Type.String(),
  updated_at: Type.String({ format: "date-time" }),
});
const AliasMove = Type.Object({
  version: Type.Integer(),
  training_job_id: Type.Union([Type.String(), Type.Null()], { description: "null: the alias was removed" }),
  checkpoint_id: Type.Union([Type.String(), Type.Null()]),
  changed_at: Type.String({ format: "date-time" }),
});
const Policy = Type.Object({
  keep_last: Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000 }), Type.Null()], { description: "keep the newest N COMPLETE checkpoints of each job" }),
  keep_best: Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000 }), Type.Null()], { description: "keep the best N of each job by `metric`" }),
  metric: Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()], { description: "a log_history key of trainer_state.json, e.g. eval_loss" }),
  mode: Type.Union([Type.Literal("min"), Type.Literal("max"), Type.Null()], { description: "null: min for losses and errors, max otherwise" }),
  max_age_seconds: Type.Union([Type.Integer({ minimum: 0, maximum: 100 * 365 * 86400 }), Type.Null()], { description: "keep checkpoints younger than this" }),
  auto: Type.Boolean({ description: "apply on the server each time a checkpoint of the project completes" }),
});
const PolicyBody = Type.Partial(Policy, { additionalProperties: false });
const RetentionEntry = Type.Object({
  training_job_id: Type.String(),
  checkpoint_id: Type.String(),
  state: Type.String(),
  size_bytes: Type.Integer(),
  file_count: Type.Integer(),
  created_at: Type.String({ format: "date-time" }),
});
const CheckpointResponse = Type.Object({ checkpoint: Type.Ref(TrainingJobCheckpointV1) });

export const checkpointObjectRoutes: FastifyPluginAsyncTypebox<{ service: CkptService }> = async (app, { service }) => {
  const checkpointPath = "/v1/training_projects/:training_project_id/jobs/:training_job_id/checkpoints/:checkpoint_id";

  app.post(
    `${checkpointPath}/complete`,
    {
      schema: {
        summary: "Mark a checkpoint COMPLETE (ckpt extension).",
        description: "For training code with no completion marker ckpt recognises. A no-op on a COMPLETE checkpoint.",
        tags: ["checkpoints"],
        params: CheckpointParams,
        response: { 200: CheckpointResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { training_project_id: p, training_job_id: j, checkpoint_id: c } = request.params;
      const checkpoint = await service.completeCheckpoint(callerOf(request), p, j, c);
      const { job } = await service.getJob(callerOf(request), p, j);
      return { checkpoint: presentCheckpoint(checkpoint, job) };
    },
  );

  for (const [method, pinned] of [["PUT", true], ["DELETE", false]] as const) {
    app.route({
      method,
      url: `${checkpointPath}/pin`,
      schema: {
        summary: pinned ? "Pin a checkpoint: retention never deletes it (ckpt extension)." : "Unpin a checkpoint (ckpt extension).",
        tags: ["checkpoints"],
        params: CheckpointParams,
        response: { 200: CheckpointResponse, ...errorResponses },
      },
      handler: async (request) => {
        const { training_project_id: p, training_job_id: j, checkpoint_id: c } = request.params;
        const checkpoint = await service.setPinned(callerOf(request), p, j, c, pinned);
        const { job } = await service.getJob(callerOf(request), p, j);
        return { checkpoint: presentCheckpoint(checkpoint, job) };
      },
    });
  }

  const aliasesPath = "/v1/training_projects/:training_project_id/aliases";
  app.get(
    aliasesPath,
    {
      schema: {
        summary: "List the project's checkpoint aliases (ckpt extension).",
        description: "Aliases are project-scoped names for one (job, checkpoint). The derived per-job `best` is shown in checkpoint listings, not here.",
        tags: ["aliases"],
        params: ProjectParams,
        response: { 200: Type.Object({ aliases: Type.Array(Alias) }), ...errorResponses },
      },
    },
    async (request) => ({ aliases: (await service.listAliases(callerOf(request), request.params.training_project_id)).map(presentAlias) }),
  );

  app.put(
    `${aliasesPath}/:name`,
    {
      schema: {
        summary: "Point an alias at a checkpoint (ckpt extension).",
        description: "Creates or moves the alias; every move is kept in its history. The checkpoint may be of any job of the project.",
        tags: ["aliases"],
        params: AliasParams,
        body: Type.Object({ training_job_id: IdString, checkpoint_id: IdString }, { additionalProperties: false }),
        response: { 200: Type.Object({ alias: Alias }), ...errorResponses },
      },
    },
    async (request) => {
      const alias = await service.setAlias(callerOf(request), request.params.training_project_id, request.params.name, request.body.training_job_id, request.body.checkpoint_id);
      return { alias: presentAlias(alias) };
    },
  );

  app.delete(
    `${aliasesPath}/:name`,
    {
      schema: {
        summary: "Remove an alias (ckpt extension); the removal is kept in its history.",
        tags: ["aliases"],
        params: AliasParams,
        response: { 200: Type.Object({ name: Type.String(), deleted: Type.Boolean() }), ...errorResponses },
      },
    },
    async (request) => {
      await service.removeAlias(callerOf(request), request.params.training_project_id, request.params.name);
      return { name: request.params.name, deleted: true };
    },
  );

  app.get(
    `${aliasesPath}/:name/history`,
    {
      schema: {
        summary: "Every move of an alias, oldest first (ckpt extension).",
        tags: ["aliases"],
        params: AliasParams,
        response: { 200: Type.Object({ name: Type.String(), history: Type.Array(AliasMove) }), ...errorResponses },
      },
    },
    async (request) => {
      const history = await service.aliasHistory(callerOf(request), request.params.training_project_id, request.params.name);
      return { name: request.params.name, history: history.map(presentAliasMove) };
    },
  );

  const retentionPath = "/v1/training_projects/:training_project_id/retention";
  app.get(
    retentionPath,
    {
      schema: {
        summary: "The project's retention policy (ckpt extension); every rule null when none was set.",
        tags: ["retention"],
        params: ProjectParams,
        response: { 200: Type.Object({ policy: Policy }), ...errorResponses },
      },
    },
    async (request) => ({ policy: presentPolicy(await service.getRetentionPolicy(callerOf(request), request.params.training_project_id)) }),
  );

  app.put(
    retentionPath,
    {
      schema: {
        summary: "Set the project's retention policy (ckpt extension).",
        description:
          "Omitted fields are null (auto: false). Always kept whatever the rules: pinned and aliased checkpoints, the newest " +
          "COMPLETE checkpoint of every job, and every WRITING one. A policy with no rule deletes nothing.",
        tags: ["retention"],
        params: ProjectParams,
        body: PolicyBody,
        response: { 200: Type.Object({ policy: Policy }), ...errorResponses },
      },
    },
    async (request) => {
      const b = request.body;
      const policy = await service.putRetentionPolicy(callerOf(request), request.params.training_project_id, {
        keepLast: b.keep_last ?? null,
        keepBest: b.keep_best ?? null,
        metric: b.metric ?? null,
        mode: b.mode ?? null,
        maxAgeSeconds: b.max_age_seconds ?? null,
        auto: b.auto ?? false,
      });
      return { policy: presentPolicy(policy) };
    },
  );

  app.get(
    `${retentionPath}/plan`,
    {
      schema: {
        summary: "What applying the retention policy now would delete, and the bytes it frees (ckpt extension).",
        tags: ["retention"],
        params: ProjectParams,
        response: {
          200: Type.Object({
            policy: Policy,
            delete: Type.Array(RetentionEntry),
            keep: Type.Array(Type.Object({ ...RetentionEntry.properties, reasons: Type.Array(Type.String()) })),
            bytes_freed: Type.Integer(),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { policy, plan } = await service.planRetention(callerOf(request), request.params.training_project_id);
      return {
        policy: presentPolicy(policy),
        delete: plan.delete.map(presentRetentionEntry),
        keep: plan.keep.map((k) => ({ ...presentRetentionEntry(k.checkpoint), reasons: k.reasons })),
        bytes_freed: plan.bytesFreed,
      };
    },
  );

  app.post(
    `${retentionPath}/apply`,
    {
      schema: {
        summary: "Apply the retention policy (ckpt extension).",
        description:
          "Deletes what the plan deletes now. With `checkpoints` (the plan a user reviewed), only those of them the policy " +
          "still deletes. Crash-safe: each checkpoint is wholly there or wholly gone; servers applying at once delete each once.",
        tags: ["retention"],
        params: ProjectParams,
        body: Type.Optional(
          Type.Object(
            { checkpoints: Type.Optional(Type.Array(Type.Object({ training_job_id: IdString, checkpoint_id: IdString }), { maxItems: 100_000 })) },
            { additionalProperties: false },
          ),
        ),
        response: { 200: Type.Object({ deleted: Type.Array(RetentionEntry), bytes_freed: Type.Integer() }), ...errorResponses },
      },
    },
    async (request) => {
      const expected = request.body?.checkpoints?.map((c) => ({ jobId: c.training_job_id, checkpointId: c.checkpoint_id }));
      const result = await service.applyRetention(callerOf(request), request.params.training_project_id, expected);
      return { deleted: result.deleted.map(presentRetentionEntry), bytes_freed: result.bytesFreed };
    },
  );
};
