/**
 * The floor for serving files from Node.js: the least a Node server can do to answer a GET of a
 * file (no signature check, no database, no framework): stat, then fs.createReadStream piped
 * into the response. The serving scenario measures it beside ckpt and nginx, to tell the cost of
 * ckpt's route apart from the cost of serving files from a single Node.js process at all.
 *
 *   node dist/bench/static-floor.js --port P --data-dir D     (serves D/blobs/... at /blobs/...)
 */
import { createReadStream, stat } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string" }, "data-dir": { type: "string" } } });
const root = values["data-dir"]!;

createServer((req, res) => {
  const url = req.url ?? "/";
  if (url === "/healthz") return void res.end("ok");
  const q = url.indexOf("?");
  let path: string;
  try {
    path = join(root, decodeURIComponent(q === -1 ? url : url.slice(0, q)));
  } catch {
    res.statusCode = 400;
    return void res.end();
  }
  if (!path.startsWith(join(root, "blobs") + "/")) {
    res.statusCode = 404;
    return void res.end();
  }
  stat(path, (err, st) => {
    if (err || !st.isFile()) {
      res.statusCode = 404;
      return void res.end();
    }
    res.writeHead(200, { "content-length": st.size, "content-type": "application/octet-stream" });
    createReadStream(path, { highWaterMark: Math.min(1 << 20, Math.max(1, st.size)) }).pipe(res);
  });
}).listen(Number(values.port), "127.0.0.1");

const stop = () => process.exit(0);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
