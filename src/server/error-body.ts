/**
 * The one shape of every error the server sends: `{ message, code }`, plus `request_id` where the
 * answer leaves outside Fastify's reply (whose onSend hook adds it otherwise, see plugins/request-id.ts)
 * and any extra fields a route documents (readiness adds its checks).
 */
export interface ErrorBody {
  message: string;
  code: string;
  request_id?: string;
}

export function errorBody<Extra extends object = object>(code: string, message: string, extra?: Extra & { request_id?: string }): ErrorBody & Extra {
  return { message, code, ...extra } as ErrorBody & Extra;
}

/** The body as JSON text, for answers written straight to a socket or a node:http response. */
export function errorJson(code: string, message: string, requestId?: string): string {
  return JSON.stringify(requestId === undefined ? errorBody(code, message) : errorBody(code, message, { request_id: requestId }));
}
