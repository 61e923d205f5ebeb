import type { TestContext } from "node:test";
import { startTestServer, type TestServer } from "../../harness/server.js";
import { startProxy, type Proxy } from "./http-proxy.js";

/**
 * A real ckpt server whose presigned URLs point at a proxy in front of it, so every download
 * byte passes the proxy (to be counted or disturbed). On PostgreSQL + S3 the URLs are S3's,
 * signed for the proxy's address (CKPT_S3_PUBLIC_ENDPOINT), and the proxy passes them on to
 * the S3 server. API calls made with `proxy.url` as the base URL pass it too. Both stop when
 * the test ends.
 */
export async function startProxiedServer(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<{ server: TestServer; proxy: Proxy }> {
  const proxy = await startProxy();
  let server: TestServer;
  try {
    server = await startTestServer({ env: { CKPT_PUBLIC_URL: proxy.url, CKPT_S3_PUBLIC_ENDPOINT: proxy.url, ...env } });
  } catch (err) {
    await proxy.close();
    throw err;
  }
  proxy.setTarget(server.baseUrl, { origin: server.blobOrigin, pathPrefix: server.blobPathPrefix });
  t.after(async () => {
    await proxy.close();
    await server.stop();
  });
  return { server, proxy };
}
