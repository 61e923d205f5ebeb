import { CkptClient, type ClientOptions } from "./api.js";

/**
 * How a free function of the SDK reaches the API: either a client you already made, or the
 * options to make one (base URL, key, and optionally your own `fetch`).
 */
export type Connection = { client: CkptClient } | ClientOptions;

export function clientFor(connection: Connection): CkptClient {
  return "client" in connection ? connection.client : new CkptClient(connection);
}
