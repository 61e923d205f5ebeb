import type * as Runtime from "../server/runtime.js";

/**
 * The server's stores for the admin commands, loaded when a command runs: `ckpt --help`
 * registers every command and should not pay for Fastify, SQLite, PostgreSQL and the AWS SDK.
 */
export async function openMetadataStore(...args: Parameters<typeof Runtime.openMetadataStore>): ReturnType<typeof Runtime.openMetadataStore> {
  return (await import("../server/runtime.js")).openMetadataStore(...args);
}

export async function openRuntime(...args: Parameters<typeof Runtime.openRuntime>): ReturnType<typeof Runtime.openRuntime> {
  return (await import("../server/runtime.js")).openRuntime(...args);
}

export async function rotateKeyring(...args: Parameters<typeof Runtime.rotateKeyring>): Promise<ReturnType<typeof Runtime.rotateKeyring>> {
  return (await import("../server/runtime.js")).rotateKeyring(...args);
}
