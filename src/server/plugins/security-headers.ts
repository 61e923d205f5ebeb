import type { FastifyInstance } from "fastify";

/**
 * Responses are JSON or raw bytes, never pages; these headers keep a browser that opens one
 * from sniffing it into something executable, framing it or caching credentials-bearing data.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
};

export function installSecurityHeaders(app: FastifyInstance, options: { hsts?: boolean } = {}): void {
  app.addHook("onSend", async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    // Only over TLS: a browser remembers it for the host, and a plain-HTTP server would lock it out.
    if (options.hsts) reply.header("strict-transport-security", "max-age=31536000");
    if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
    return payload;
  });
}

/** The same headers, for responses written outside Fastify's hooks (the blob download fast path). */
export function securityHeaders(options: { hsts?: boolean } = {}): Record<string, string> {
  return options.hsts ? { ...SECURITY_HEADERS, "strict-transport-security": "max-age=31536000" } : { ...SECURITY_HEADERS };
}

/** The headers of an error answered outside the hooks (framework and client errors). */
export function errorSecurityHeaders(): Record<string, string> {
  return { ...SECURITY_HEADERS, "cache-control": "no-store" };
}

/** The same, as raw header lines, for responses written straight to a socket. */
export function securityHeaderLines(): string {
  return Object.entries(errorSecurityHeaders())
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
}
