import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { CkptClient } from "../../../src/client/api.js";
import type { TestServer } from "../../harness/server.js";

export interface FixtureFile {
  rank: number;
  name: string;
  content: Buffer;
}

export interface SeededJob {
  client: CkptClient;
  apiKey: string;
  projectId: string;
  projectName: string;
  jobId: string;
}

export const MiB = 1 << 20;

/** Random bytes of a given size (random, so a misplaced part cannot compare equal by accident). */
export function bytes(size: number): Buffer {
  return randomBytes(size);
}

export function sha256(content: Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

/**
 * A project and job on the test server holding `files`, uploaded through the API (the ckpt
 * upload extension). `apiUrl` is where the client talks to (the server, or a proxy in front).
 */
export async function seedJob(server: TestServer, files: FixtureFile[], options: { apiUrl?: string; projectName?: string } = {}): Promise<SeededJob> {
  const apiKey = await server.createKey("org");
  const client = new CkptClient({ apiUrl: options.apiUrl ?? server.baseUrl, apiKey });
  const projectName = options.projectName ?? `project-${randomBytes(4).toString("hex")}`;
  const project = await client.upsertProject(projectName);
  const job = await client.createJob(project.id, {});
  for (const file of files) await putFile(server, apiKey, project.id, job.id, file);
  return { client, apiKey, projectId: project.id, projectName, jobId: job.id };
}

/** Uploads (or replaces) one file with a plain PUT, straight to the server. */
export async function putFile(server: TestServer, apiKey: string, projectId: string, jobId: string, file: FixtureFile): Promise<void> {
  const name = file.name.split("/").map(encodeURIComponent).join("/");
  const response = await fetch(`${server.baseUrl}/v1/training_projects/${projectId}/jobs/${jobId}/checkpoint_files/${file.rank}/${name}`, {
    method: "PUT",
    headers: { authorization: `Api-Key ${apiKey}`, "content-type": "application/octet-stream", "x-ckpt-sha256": sha256(file.content) },
    body: file.content,
  });
  if (response.status !== 201) throw new Error(`upload of ${file.name} failed: ${response.status} ${await response.text()}`);
}

/** Every regular file under `dir` (relative '/'-separated path -> content), hidden ones included; links are not followed. */
export function readTree(dir: string): Map<string, Buffer> {
  const tree = new Map<string, Buffer>();
  const walk = (current: string): void => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) tree.set(relative(dir, path).split(sep).join("/"), readFileSync(path));
    }
  };
  walk(dir);
  return tree;
}

/** What `dest` must contain after downloading `files` in the rank-<n>/ layout. */
export function expectedTree(files: FixtureFile[]): Map<string, Buffer> {
  return new Map(files.map((f) => [`rank-${f.rank}/${f.name}`, f.content]));
}

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = "ckpt-dl-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
