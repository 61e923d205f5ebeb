/** The one error type of the SDK: an HTTP status (0 when no response came) and the server's message. */
export class CkptApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
    readonly url?: string,
  ) {
    super(message);
    this.name = "CkptApiError";
  }
}

/** Builds a CkptApiError from a failed response, taking the server's `message` where it sent one. */
export async function apiErrorFrom(response: Response, what: string): Promise<CkptApiError> {
  let message = `${what}: HTTP ${response.status}`;
  let code: string | undefined;
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text) as { message?: unknown; detail?: unknown; code?: unknown; error?: unknown };
      const detail = body.message ?? body.detail ?? body.error;
      if (typeof detail === "string") message = `${what}: ${detail} (HTTP ${response.status})`;
      if (typeof body.code === "string") code = body.code;
    } catch {
      if (text.trim()) message = `${what}: ${text.trim().slice(0, 300)} (HTTP ${response.status})`;
    }
  } catch {
    /* body unreadable: keep the status line */
  }
  return new CkptApiError(response.status, message, code);
}
