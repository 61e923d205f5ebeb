import type { TestContext } from "node:test";
import { startTestServer, type TestServer } from "../../harness/server.js";
import { startProxy, type Proxy } from "./http-proxy.js";

/**
 * A real ckpt server whose presigned URLs point at a proxy in front of it, so every download
 * byte passes the proxy (to be counted or disturbed). API calls made with `proxy.url` as the
 * base URL pass it too. Both stop when the test ends.
 */
export async function startProxiedServer(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<{ server: TestServer; proxy: Proxy }> {
  const proxy = await startProxy();
  const server = await startTestServer({ env: { CKPT_PUBLIC_URL: proxy.url, ...env } });
  proxy.setTarget(server.baseUrl);
  t.after(async () => {
    await proxy.close();
    await server.stop();
  });
  return { server, proxy };
}
