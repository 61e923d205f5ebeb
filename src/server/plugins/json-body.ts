import type { FastifyInstance } from "fastify";
import { badRequest } from "../../domain/errors.js";

/**
 * How deep a JSON body may nest. Job specs are kept verbatim and serialised again to be stored,
 * and JSON.stringify recurses: a body of 10,000 nested arrays (20 KB, far under the size limit)
 * would overflow the stack there. Real bodies (Baseten's job specs) nest a handful of levels.
 */
const MAX_JSON_DEPTH = 64;

/** Replaces the JSON parser of `app`'s scope with Fastify's own, behind a nesting-depth check. */
export function limitJsonDepth(app: FastifyInstance, maxDepth = MAX_JSON_DEPTH): void {
  // Fastify's default: secure-json-parse, refusing __proto__ and constructor.prototype keys.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (jsonDepthExceeds(body as string, maxDepth)) return done(badRequest(`JSON body nests deeper than ${maxDepth} levels`), undefined);
    parseJson(request, body as string, done);
  });
}

/** True when the brackets of `text`, outside strings, nest deeper than `maxDepth`. One pass, no parse. */
function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return false;
}
