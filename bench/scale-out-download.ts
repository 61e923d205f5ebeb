/**
 * Scenario 8, scale-out download: the same checkpoint as objects in Ceph RGW, fetched onto the
 * same tmpfs by `ckpt download` (through presigned GET URLs from a Baseten-shaped listing, as
 * ckpt's S3 backend and Baseten hand out), `rclone copy` and `aws s3 cp --recursive` (both with
 * bucket credentials), rotating order, medians; wall, CPU and peak RSS from /usr/bin/time.
 *
 *   node dist/bench/scale-out-download.js [--quick] [--profile DIR]
 *
 * Full: 4 x 256 MiB + 200 x 30 KB, 3 rounds; quick: 4 x 64 MiB + 200 x 30 KB, 2 rounds. Skipped
 * when radosgw (test/harness/rgw.ts), rclone or aws is missing. A fourth side, the download engine
 * alone (bench/transfer-sides.ts: no CLI start-up), shows what the CLI costs. rclone: --transfers 16
 * --multi-thread-streams 8 (its own defaults are 4 transfers); aws: its defaults (10 requests).
 * --profile writes a V8 CPU profile of one extra `ckpt download` run into DIR (for
 * bench/cpuprofile-summary.ts).
 */
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { randomFillSync } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRgw } from "../test/harness/rgw.js";
import { CKPT_CLI, MiB, onCleanup, run, tempDir } from "./lib.js";
import { fmt, median, row, type Row } from "./report.js";
import { startListing, timed, type Measured } from "./transfer.js";

export async function runScaleOutDownloadBench(opts: { quick: boolean; profileDir?: string }): Promise<Row[]> {
  const large = opts.quick ? 64 * MiB : 256 * MiB;
  const rounds = Number(process.env.BENCH_ROUNDS ?? (opts.quick ? 2 : 3));
  const which = (tool: string) => process.env.PATH!.split(":").some((d) => existsSync(join(d, tool)));
  const missing = ["rclone", "aws"].filter((t) => !which(t));
  if (missing.length) return [row({ scenario: "8. scale-out download", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: `skipped: ${missing.join(", ")} not installed` })];
  const rgw = await startRgw();
  if (!rgw) return [row({ scenario: "8. scale-out download", ckpt: Number.NaN, anchor: Number.NaN, unit: "", note: "skipped: radosgw is not available" })];
  const stopRgw = onCleanup(() => rgw.stop());
  const root = existsSync("/dev/shm") ? `/dev/shm/ckpt-bench-s3-${process.pid}` : tempDir("s3-bench").path;
  const removeRoot = onCleanup(async () => rmSync(root, { recursive: true, force: true }));
  try {
    const bucket = await rgw.createBucket();
    const source = join(root, "source");
    const files: { name: string; size: number }[] = [];
    const block = Buffer.allocUnsafe(large);
    const add = (name: string, size: number) => {
      mkdirSync(join(source, name, ".."), { recursive: true });
      randomFillSync(block, 0, size);
      writeFileSync(join(source, name), block.subarray(0, size));
      files.push({ name, size });
    };
    for (let i = 0; i < 4; i++) add(`checkpoint-1000/model-0000${i + 1}-of-00004.safetensors`, large);
    for (let i = 0; i < 200; i++) add(`checkpoint-1000/extra/part-${String(i).padStart(4, "0")}.json`, 30_000);
    const total = files.reduce((s, f) => s + f.size, 0);
    const awsEnv = {
      AWS_ACCESS_KEY_ID: rgw.accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
      AWS_DEFAULT_REGION: rgw.region,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_REQUEST_CHECKSUM_CALCULATION: "when_required",
      AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
    };
    await run("aws", ["--endpoint-url", rgw.endpoint, "s3", "cp", "--recursive", "--only-show-errors", source, `s3://${bucket}/`], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...awsEnv },
    });
    rmSync(source, { recursive: true, force: true });

    const client = new S3Client(rgw.s3Config);
    const listing = await startListing(files, () => rgw.endpoint, (name) => getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: name }), { expiresIn: 3600 }));
    const out = (name: string) => {
      const dir = join(root, name);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      return dir;
    };
    const rcloneEnv = {
      RCLONE_CONFIG_RGW_TYPE: "s3",
      RCLONE_CONFIG_RGW_PROVIDER: "Ceph",
      RCLONE_CONFIG_RGW_ENDPOINT: rgw.endpoint,
      RCLONE_CONFIG_RGW_ACCESS_KEY_ID: rgw.accessKeyId,
      RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY: rgw.secretAccessKey,
      RCLONE_CONFIG_RGW_REGION: rgw.region,
    };
    const ckptEnv = { CKPT_API_URL: listing.url, CKPT_API_KEY: "bench" };
    const ckptArgs = (dir: string) => [CKPT_CLI, "download", "--project", "proj", "--job", "job", "--out", dir, "--quiet"];
    const sides: Record<string, () => Promise<Measured>> = {
      ckpt: () => timed(process.execPath, ckptArgs(out("ckpt")), ckptEnv),
      // The engine alone, without the CLI's start-up.
      engine: () => timed(process.execPath, [fileURLToPath(new URL("./transfer-sides.js", import.meta.url)), "engine", listing.url, out("engine")]),
      rclone: () => timed("rclone", ["copy", "--transfers", "16", "--multi-thread-streams", "8", `rgw:${bucket}`, out("rclone")], rcloneEnv),
      aws: () => timed("aws", ["--endpoint-url", rgw.endpoint, "s3", "cp", "--recursive", "--only-show-errors", `s3://${bucket}/`, out("aws")], awsEnv),
    };
    const names = Object.keys(sides);
    const results: Record<string, Measured[]> = Object.fromEntries(names.map((n) => [n, []]));
    for (let round = 0; round < rounds; round++)
      for (const name of names.map((_, i) => names[(i + round) % names.length]!)) {
        const m = await sides[name]!();
        results[name]!.push(m);
        console.error(`   round ${round + 1} ${name}: ${fmt(m.wall)} s wall, ${fmt(m.user)} user + ${fmt(m.sys)} sys, ${fmt(m.rssMiB)} MiB`);
        rmSync(join(root, name), { recursive: true, force: true });
      }
    if (opts.profileDir) await timed(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${opts.profileDir}`, ...ckptArgs(out("profile"))], ckptEnv);
    await listing.close();
    const wall = (n: string) => median(results[n]!.map((m) => m.wall));
    const cpu = (n: string) => fmt(median(results[n]!.map((m) => m.user + m.sys)));
    const speed = (n: string) => total / MiB / wall(n);
    const label = `4 x ${large / MiB} MiB + 200 x 30 KB`;
    const note = (n: string) =>
      `${opts.quick ? "quick mode: 64 MiB shards; " : ""}median of ${rounds} rotating rounds; wall ${fmt(wall("ckpt"))} vs ${fmt(wall(n))} s; client CPU ${cpu("ckpt")} vs ${cpu(n)} s`;
    return [
      row({ scenario: `8. scale-out download from Ceph RGW, ${label}: ckpt (presigned URLs) vs rclone copy`, ckpt: speed("ckpt"), anchor: speed("rclone"), unit: "MiB/s", target: ">= 1.0x", meets: (r) => r >= 1, note: note("rclone") }),
      row({
        scenario: "8. scale-out download from Ceph RGW: the download engine alone (SDK, no CLI) vs rclone copy",
        ckpt: speed("engine"),
        anchor: speed("rclone"),
        unit: "MiB/s",
        note: `wall ${fmt(wall("engine"))} vs ${fmt(wall("rclone"))} s; CPU ${cpu("engine")} vs ${cpu("rclone")} s; no CLI start-up`,
      }),
      row({ scenario: `8. scale-out download from Ceph RGW: ckpt vs aws s3 cp --recursive`, ckpt: speed("ckpt"), anchor: speed("aws"), unit: "MiB/s", target: ">= 1.0x", meets: (r) => r >= 1, note: note("aws") }),
    ];
  } finally {
    await removeRoot();
    await stopRgw();
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { runScenarios } = await import("./run.js");
  const profileAt = process.argv.indexOf("--profile");
  const profileDir = profileAt === -1 ? undefined : process.argv[profileAt + 1];
  await runScenarios([["scale-out-download", (o) => runScaleOutDownloadBench({ ...o, profileDir })]], process.argv.includes("--quick"));
}
