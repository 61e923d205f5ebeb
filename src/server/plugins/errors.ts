import type { FastifyError, FastifyInstance } from "fastify";
import { ApiError } from "../../domain/errors.js";

/**
 * Every error leaves as `{ message, code }` JSON. Client mistakes keep their 4xx status and a
 * message that says what was wrong; anything unexpected is a 500 with a fixed message (the
 * details go to the log, never to the client).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ApiError, request, reply) => {
    if (err instanceof ApiError) {
      return reply.status(err.statusCode).send({ message: err.message, code: err.code });
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const where = fe.validationContext ?? "request";
      return reply.status(400).send({ message: `invalid ${where}: ${fe.message}`, code: "BAD_REQUEST" });
    }
    const status = fe.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return reply.status(status).send({ message: fe.message, code: fe.code ?? "BAD_REQUEST" });
    }
    request.log.error({ err }, "unhandled error");
    return reply.status(500).send({ message: "internal server error", code: "INTERNAL" });
  });

  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ message: `no route for ${request.method} ${request.url.split("?")[0]}`, code: "NOT_FOUND" });
  });
}
