/**
 * The one error type of ckpt. Every failure that reaches a client is an ApiError with an HTTP
 * status and a human-readable `message` (Baseten's clients print `message`), so routes and
 * services never build error responses themselves.
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const badRequest = (message: string) => new ApiError(400, "BAD_REQUEST", message);
export const unauthorized = (message = "missing or invalid API key") => new ApiError(401, "UNAUTHORIZED", message);
export const notFound = (what: string) => new ApiError(404, "NOT_FOUND", `${what} not found`);
export const conflict = (message: string) => new ApiError(409, "CONFLICT", message);
export const insufficientStorage = (message: string) => new ApiError(507, "INSUFFICIENT_STORAGE", message);
