import { createHash } from "node:crypto";
import type { TestServer } from "../harness/server.js";

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** Minimal JSON client for tests: raw status and body, no SDK in between. */
export function api(baseUrl: string, key: string | null, scheme = "Api-Key") {
  const call = async <T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> => {
    const h: Record<string, string> = { ...headers };
    if (key !== null) h.authorization = `${scheme} ${key}`;
    let payload: string | Buffer | undefined;
    if (Buffer.isBuffer(body)) payload = body;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h["content-type"] ??= "application/json";
    }
    const response = await fetch(baseUrl + path, { method, headers: h, body: payload });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: response.status, headers: response.headers, body: parsed as T };
  };
  return {
    call,
    get: <T = any>(path: string) => call<T>("GET", path),
    post: <T = any>(path: string, body?: unknown) => call<T>("POST", path, body ?? {}),
    patch: <T = any>(path: string, body: unknown) => call<T>("PATCH", path, body),
    del: <T = any>(path: string) => call<T>("DELETE", path),
    put: <T = any>(path: string, bytes: Buffer, headers: Record<string, string> = {}) => call<T>("PUT", path, bytes, headers),
  };
}
export type Api = ReturnType<typeof api>;

export const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** An organisation with a key, a project and a job: the starting point of most tests. */
export async function setupJob(server: TestServer, org = "acme", projectName = "llama") {
  const key = await server.createKey(org);
  const client = api(server.baseUrl, key);
  const project = (await client.post("/v1/training_projects", { training_project: { name: projectName } })).body.training_project;
  const job = (await client.post(`/v1/training_projects/${project.id}/jobs`, { training_job: { name: "run" } })).body.training_job;
  const jobPath = `/v1/training_projects/${project.id}/jobs/${job.id}`;
  const upload = (rank: number, name: string, bytes: Buffer, headers: Record<string, string> = {}) =>
    client.put(`${jobPath}/checkpoint_files/${rank}/${name.split("/").map(encodeURIComponent).join("/")}`, bytes, headers);
  return { key, client, project, job, jobPath, upload };
}

/** Walks every page the way Baseten's own Python client does: page_size 1000, stop on a falsy token. */
export async function listAllLikeBaseten(client: Api, jobPath: string, pageSize = 1000) {
  const files: any[] = [];
  let token: number | null = 0;
  let pages = 0;
  for (;;) {
    const r: ApiResponse = await client.get(`${jobPath}/checkpoint_files?page_size=${pageSize}&page_token=${token}`);
    if (r.status !== 200) throw new Error(`listing failed: ${r.status} ${JSON.stringify(r.body)}`);
    files.push(...r.body.presigned_urls);
    pages++;
    token = r.body.next_page_token;
    if (!token) break;
  }
  return { files, pages };
}
