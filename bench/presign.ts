/**
 * Presigned-URL throughput: our S3Presigner vs @aws-sdk/s3-request-presigner
 * getSignedUrl, on the same 10,000 object keys with the same endpoint and
 * credentials.
 *
 *   node dist/bench/presign.js [--quick]
 *
 * Rounds alternate (ours, SDK, ours, SDK, ...) so drift in machine load hits
 * both sides alike; the reported rate is the median round. A full run does
 * 5 rounds over all 10,000 keys; --quick does 3 rounds over 1,000-key slices
 * of them (the SDK side takes seconds per 10,000). Before timing, the two
 * are checked to produce identical URLs for a sample of the keys, so the
 * comparison is like for like.
 */
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { S3Presigner } from "../src/stores/blobs/sigv4-presign.js";

export interface PresignBenchResult {
  ckptPerSec: number;
  sdkPerSec: number;
  ratio: number;
}

const KEY_COUNT = 10_000;
const ENDPOINT = "https://s3.us-east-1.amazonaws.com";
const REGION = "us-east-1";
const BUCKET = "ckpt-bench";
const EXPIRES = 3600;
const CREDENTIALS = {
  accessKeyId: "ASIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  // Temporary credentials are the common case in production, and the token
  // is the longest query parameter.
  sessionToken: "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "x".repeat(600) + "==",
};

/** Checkpoint-shaped keys: deep prefixes, some needing escaping. */
function benchKeys(): string[] {
  const keys: string[] = [];
  for (let i = 0; i < KEY_COUNT; i++) {
    const run = `run-${i % 37}`;
    const step = `step-${String((i % 500) * 100).padStart(8, "0")}`;
    const file = i % 10 === 0 ? `optimizer state ${i}.pt` : `model-${String(i).padStart(5, "0")}-of-10000.safetensors`;
    keys.push(`org/project/${run}/checkpoints/${step}/${file}`);
  }
  return keys;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export async function runPresignBench(opts: { quick: boolean }): Promise<PresignBenchResult> {
  const keys = benchKeys();
  const rounds = opts.quick ? 3 : 5;
  const roundKeys = opts.quick ? 1000 : KEY_COUNT;
  // Round r uses keys [r * roundKeys, (r + 1) * roundKeys), wrapping around.
  const slice = (r: number): string[] => {
    const start = (r * roundKeys) % KEY_COUNT;
    return keys.slice(start, start + roundKeys);
  };
  // Ours finishes 10k keys in tens of ms, too short to time reliably, so a
  // round of ours repeats the full key set until it has run this long.
  const minOursRoundMs = opts.quick ? 150 : 400;

  const presigner = new S3Presigner({ endpoint: ENDPOINT, region: REGION, forcePathStyle: false, credentials: CREDENTIALS });
  const client = new S3Client({
    endpoint: ENDPOINT,
    region: REGION,
    forcePathStyle: false,
    credentials: CREDENTIALS,
    // Otherwise the SDK adds checksum parameters our URLs do not carry.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });

  // Same URLs, or the race is meaningless. (x-id is the SDK operation marker.)
  const now = new Date();
  for (const key of keys.slice(0, 50)) {
    const ours = presigner.presign({ method: "GET", bucket: BUCKET, key, expiresInSeconds: EXPIRES, now, query: { "x-id": "GetObject" } });
    const sdk = await getSignedUrl(client, new GetObjectCommand({ Bucket: BUCKET, Key: key }), { expiresIn: EXPIRES, signingDate: now });
    if (ours !== sdk) throw new Error(`presign bench: URLs differ for ${key}\n  ours: ${ours}\n  sdk:  ${sdk}`);
  }

  let sink = 0; // consumed below so no work can be optimised away
  const oursRound = (roundKeys: string[]): number => {
    let urls = 0;
    const start = performance.now();
    let elapsed = 0;
    do {
      for (const key of roundKeys) {
        sink += presigner.presign({ method: "GET", bucket: BUCKET, key, expiresInSeconds: EXPIRES }).length;
      }
      urls += roundKeys.length;
      elapsed = performance.now() - start;
    } while (elapsed < minOursRoundMs);
    return (urls / elapsed) * 1000;
  };
  const sdkRound = async (roundKeys: string[]): Promise<number> => {
    const start = performance.now();
    for (const key of roundKeys) {
      const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: BUCKET, Key: key }), { expiresIn: EXPIRES });
      sink += url.length;
    }
    return (roundKeys.length / (performance.now() - start)) * 1000;
  };

  // Warm-up: JIT, and the SDK's lazily resolved config and providers.
  oursRound(keys.slice(0, 1000));
  await sdkRound(keys.slice(0, opts.quick ? 300 : 1000));

  const ours: number[] = [];
  const sdk: number[] = [];
  for (let r = 0; r < rounds; r++) {
    ours.push(oursRound(slice(r)));
    sdk.push(await sdkRound(slice(r)));
  }
  if (sink === 0) throw new Error("unreachable");

  const ckptPerSec = median(ours);
  const sdkPerSec = median(sdk);
  return { ckptPerSec, sdkPerSec, ratio: ckptPerSec / sdkPerSec };
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const quick = process.argv.includes("--quick");
  const { ckptPerSec, sdkPerSec, ratio } = await runPresignBench({ quick });
  const fmt = (n: number): string => Math.round(n).toLocaleString("en-US").padStart(10);
  console.log(
    quick
      ? `presign (quick): 3 alternating rounds of 1,000 of the ${KEY_COUNT.toLocaleString("en-US")} keys, median URLs/s`
      : `presign: 5 alternating rounds of ${KEY_COUNT.toLocaleString("en-US")} keys, median URLs/s`,
  );
  console.log(`  ckpt S3Presigner          ${fmt(ckptPerSec)} URLs/s`);
  console.log(`  @aws-sdk getSignedUrl     ${fmt(sdkPerSec)} URLs/s`);
  console.log(`  ratio                     ${ratio.toFixed(1).padStart(10)}x`);
}
