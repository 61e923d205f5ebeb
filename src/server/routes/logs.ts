import { Type, type Static } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import {
  LOG_LEVELS,
  LOG_STREAMS,
  MAX_LOG_LINES_PER_BATCH,
  MAX_LOG_MESSAGE_CHARS,
  type JobLogs,
  type LogLineRecord,
  type LogWindowRequest,
} from "../../domain/logs.js";
import { MAX_NODE_RANK } from "../../domain/names.js";
import { callerOf } from "../plugins/auth.js";
import { JobParams, errorResponses } from "../schemas.js";

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const LogLevelV1 = Type.Union(
  LOG_LEVELS.map((l) => Type.Literal(l)),
  { title: "LogLevelV1", description: "A log severity level." },
);

/** Baseten's LogV1, plus two ckpt fields (the schema allows more): the node rank and the stream. */
const LogV1 = Type.Object(
  {
    timestamp: Type.String({ description: "Epoch nanosecond timestamp of the log message." }),
    message: Type.String({ description: "The contents of the log message." }),
    replica: Nullable(Type.String({ description: "The replica the log line was emitted from: `rank-<node_rank>`." })),
    request_id: Nullable(Type.String()),
    level: Nullable(LogLevelV1),
    node_rank: Type.Integer({ description: "ckpt: the node rank whose command wrote the line." }),
    stream: Type.Union(LOG_STREAMS.map((s) => Type.Literal(s)), { description: "ckpt: stdout or stderr." }),
  },
  { title: "LogV1" },
);

const GetLogsResponseV1 = Type.Object(
  { logs: Type.Array(LogV1) },
  { title: "GetLogsResponseV1", description: "A response to querying logs." },
);

const windowTypes = {
  start_epoch_millis: Type.Integer({ minimum: 0, description: "Inclusive. Defaults to 30 minutes before the end; the window must not exceed 7 days." }),
  end_epoch_millis: Type.Integer({ minimum: 0, description: "Inclusive (the whole millisecond). Defaults to now." }),
  direction: Type.Union([Type.Literal("asc"), Type.Literal("desc")], { description: "Sort order by time; default desc (newest first)." }),
  limit: Type.Integer({ minimum: 1, maximum: 1000, description: "Default 500." }),
  min_level: Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)), { description: "Only lines at or above this level; lines without a level are dropped." }),
};

// Query strings are coerced to their types, and coercion would turn "0" into null if null were
// allowed (limit=0 must be a 400, not the default): the GET form takes no nulls, the body does.
const LogsQuery = Type.Object({
  start_epoch_millis: Type.Optional(windowTypes.start_epoch_millis),
  end_epoch_millis: Type.Optional(windowTypes.end_epoch_millis),
  direction: Type.Optional(windowTypes.direction),
  limit: Type.Optional(windowTypes.limit),
  min_level: Type.Optional(windowTypes.min_level),
});
const GetTrainingJobLogsRequestV1 = Type.Object(
  {
    start_epoch_millis: Type.Optional(Nullable(windowTypes.start_epoch_millis)),
    end_epoch_millis: Type.Optional(Nullable(windowTypes.end_epoch_millis)),
    direction: Type.Optional(Nullable(windowTypes.direction)),
    limit: Type.Optional(Nullable(windowTypes.limit)),
    min_level: Type.Optional(Nullable(windowTypes.min_level)),
  },
  { title: "GetTrainingJobLogsRequestV1" },
);

const LogBatch = Type.Object(
  {
    node_rank: Type.Integer({ minimum: 0, maximum: MAX_NODE_RANK }),
    lines: Type.Array(
      Type.Object(
        {
          timestamp: Type.String({ pattern: "^[0-9]{1,19}$", description: "When the line was written, epoch nanoseconds." }),
          stream: Type.Union(LOG_STREAMS.map((s) => Type.Literal(s))),
          message: Type.String({ maxLength: MAX_LOG_MESSAGE_CHARS, description: "The line, without its line ending." }),
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_LOG_LINES_PER_BATCH },
    ),
  },
  { additionalProperties: false },
);

function presentLog(line: LogLineRecord): Static<typeof LogV1> {
  return {
    timestamp: line.timestampNs,
    message: line.message,
    replica: `rank-${line.nodeRank}`,
    request_id: null,
    level: line.level,
    node_rank: line.nodeRank,
    stream: line.stream,
  };
}

const paging =
  "Paging as truss does it: `direction=asc`, `limit`, and the next request starting 1 ms after the last line's " +
  "millisecond. A full ascending page never ends inside a millisecond (it stops before that millisecond's " +
  "lines, which the next page starts with), so such paging sees every line once.";

export const logRoutes: FastifyPluginAsyncTypebox<{ logs: JobLogs }> = async (app, { logs }) => {
  // Inline schemas, no addSchema: schemas added in this plugin's context would make Fastify build
  // a fresh validator compiler for it, losing the app's exact (non-coercing) body validation.
  const path = "/v1/training_projects/:training_project_id/jobs/:training_job_id/logs";
  const response = { 200: GetLogsResponseV1, ...errorResponses };

  const answer = async (caller: ReturnType<typeof callerOf>, p: string, j: string, filters: LogWindowRequest) => ({
    logs: (await logs.query(caller, p, j, filters)).map(presentLog),
  });

  app.get(
    path,
    {
      schema: {
        summary: "Get the logs for a training job.",
        description: `The output \`ckpt run\` sent from the training command, with Baseten's filters. ${paging}`,
        tags: ["training logs"],
        params: JobParams,
        querystring: LogsQuery,
        response,
      },
    },
    async (request) => answer(callerOf(request), request.params.training_project_id, request.params.training_job_id, request.query),
  );

  app.post(
    path,
    {
      schema: {
        summary: "Get the logs for a training job (deprecated; use GET).",
        description: `The same as GET, with the filters in the body (what truss sends). ${paging}`,
        tags: ["training logs"],
        params: JobParams,
        body: GetTrainingJobLogsRequestV1,
        response,
      },
    },
    async (request) => answer(callerOf(request), request.params.training_project_id, request.params.training_job_id, request.body),
  );

  app.post(
    `${path}/batch`,
    {
      schema: {
        summary: "Send a batch of a training command's output lines (ckpt extension).",
        description:
          "What `ckpt run` sends. Each line carries its timestamp (epoch nanoseconds, as a string), its stream and " +
          `its text (at most ${MAX_LOG_MESSAGE_CHARS} characters, no line ending); at most ${MAX_LOG_LINES_PER_BATCH} lines per batch. ` +
          "The level is detected from the text. A timestamp before the job's creation is moved up to it. " +
          "Beyond the server's cap per job (`--max-log-lines-per-job`), the job's oldest lines are dropped.",
        tags: ["training logs"],
        params: JobParams,
        body: LogBatch,
        response: { 200: Type.Object({ stored: Type.Integer() }), ...errorResponses },
      },
    },
    async (request) =>
      logs.append(callerOf(request), request.params.training_project_id, request.params.training_job_id, request.body.node_rank, request.body.lines),
  );
};
