/**
 * What S3BlobStore.put costs on a real S3 (a throwaway Ceph RGW on loopback, memstore):
 * a 64 MiB body put (a) with its digest declared (multipart straight to the key), (b) with no
 * digest (multipart to a staging key, then CopyObject and DeleteObject), against (c) one plain
 * PutObject of the same bytes from memory, the floor. Median of alternating rounds.
 *
 * (d) lib-storage's Upload of the same stream (no verification) is there for reference.
 *
 *   node dist/bench/s3-put.js [--mib 64] [--rounds 5] [--part-mib 8] [--concurrency 4]
 */
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { performance } from "node:perf_hooks";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { S3BlobStore } from "../src/stores/blobs/s3/blob-store.js";
import { startRgw } from "../test/harness/rgw.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const mib = arg("mib", 64);
  const rounds = arg("rounds", 5);
  const partSize = arg("part-mib", 8) * 1024 * 1024;
  const concurrency = arg("concurrency", 4);
  const rgw = await startRgw();
  if (!rgw) throw new Error("Ceph RGW is not installed");
  try {
    const bucket = await rgw.createBucket();
    const client = new S3Client(rgw.s3Config);
    const store = new S3BlobStore({
      bucket,
      prefix: "bench/",
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      partSizeBytes: partSize,
      partConcurrency: concurrency,
    });
    await store.init();
    const data = randomBytes(mib * 1024 * 1024);
    const sha256 = createHash("sha256").update(data).digest("hex");
    const body = (): Readable => Readable.from((function* () { for (let i = 0; i < data.length; i += 1 << 20) yield data.subarray(i, i + (1 << 20)); })(), { objectMode: false });
    const variants: Record<string, () => Promise<unknown>> = {
      "put, digest declared (multipart to the key)": () => store.put("k/declared", body(), { expectedSize: data.length, expectedSha256: sha256 }),
      "put, no digest (staging + CopyObject + delete)": () => store.put("k/staged", body(), { expectedSize: data.length }),
      "lib-storage Upload of the stream (reference)": () =>
        new Upload({ client, params: { Bucket: bucket, Key: "bench/k/lib", Body: body() }, partSize, queueSize: concurrency }).done(),
      "plain PutObject from memory (floor)": () =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: "bench/k/plain", Body: data, ContentLength: data.length })),
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
    for (const run of Object.values(variants)) await run(); // warm up
    for (let r = 0; r < rounds; r++) {
      for (const [name, run] of Object.entries(variants)) {
        const t0 = performance.now();
        await run();
        times[name]!.push(performance.now() - t0);
      }
    }
    console.log(`${mib} MiB, parts of ${partSize >> 20} MiB x ${concurrency}, median of ${rounds} rounds, RGW (memstore) on loopback:`);
    for (const [name, ts] of Object.entries(times)) {
      const ms = median(ts);
      console.log(`  ${name.padEnd(50)} ${ms.toFixed(0).padStart(6)} ms  ${((mib / ms) * 1000).toFixed(0).padStart(5)} MiB/s`);
    }
    await store.close();
    client.destroy();
  } finally {
    await rgw.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
