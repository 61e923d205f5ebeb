/**
 * Talks to the API on the same origin. The key lives in sessionStorage only (gone when the tab
 * closes), travels only in the Authorization header, and is never put in a URL or logged.
 */
const KEY_STORAGE = "ckpt.console.apiKey";

export function storedKey(): string | null {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key === null || key === "" ? null : key;
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Thrown when the server refuses the key; the app answers by showing the sign-in form. */
export class SignedOut extends ApiError {}

let onSignedOut: (message: string) => void = () => {};
export function whenSignedOut(handler: (message: string) => void): void {
  onSignedOut = handler;
}

export interface RequestOptions {
  method?: "GET" | "PUT" | "DELETE" | "POST";
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  signal?: AbortSignal;
  /** Use this key instead of the stored one (signing in). */
  key?: string;
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const key = options.key ?? storedKey();
  if (key === null) {
    onSignedOut("");
    throw new SignedOut(401, "not signed in");
  }
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(name, String(value));
  const headers: Record<string, string> = { authorization: `Api-Key ${key}`, accept: "application/json" };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    throw new ApiError(0, "the server could not be reached");
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = typeof (body as { message?: unknown })?.message === "string" ? (body as { message: string }).message : `HTTP ${response.status}`;
    const code = typeof (body as { code?: unknown })?.code === "string" ? (body as { code: string }).code : undefined;
    if (response.status === 401) {
      if (options.key === undefined) {
        forgetKey();
        onSignedOut(`The server refused the API key (${message}). Sign in again.`);
      }
      throw new SignedOut(401, message, code);
    }
    throw new ApiError(response.status, message, code);
  }
  return body as T;
}

const enc = encodeURIComponent;
export const paths = {
  projects: () => "/v1/training_projects",
  project: (p: string) => `/v1/training_projects/${enc(p)}`,
  jobs: (p: string) => `/v1/training_projects/${enc(p)}/jobs`,
  job: (p: string, j: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}`,
  checkpoints: (p: string, j: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}/checkpoints`,
  files: (p: string, j: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}/checkpoint_files`,
  logs: (p: string, j: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}/logs`,
  pin: (p: string, j: string, c: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}/checkpoints/${enc(c)}/pin`,
  tensors: (p: string, j: string, c: string) => `/v1/training_projects/${enc(p)}/jobs/${enc(j)}/checkpoints/${enc(c)}/tensors`,
  aliases: (p: string) => `/v1/training_projects/${enc(p)}/aliases`,
  alias: (p: string, name: string) => `/v1/training_projects/${enc(p)}/aliases/${enc(name)}`,
  retentionPlan: (p: string) => `/v1/training_projects/${enc(p)}/retention/plan`,
};

// Shapes the console reads. Fields added by ckpt extensions are optional: a server (or Baseten)
// without them still renders, with "—" in their place.
export interface Project {
  id: string;
  name: string;
  created_at: string;
  updated_at?: string;
  latest_job?: Job | null;
}

export interface Job {
  id: string;
  name?: string | null;
  created_at: string;
  current_status: string;
  checkpoint_sync_status?: string | null;
  error_message?: string | null;
  user?: { email?: string | null } | null;
}

export interface Checkpoint {
  checkpoint_id: string;
  created_at: string;
  size_bytes: number;
  checkpoint_type?: string;
  state?: string;
  file_count?: number;
  aliases?: string[];
  pinned?: boolean;
  completed_at?: string | null;
  parameter_count?: number | null;
}

export interface CheckpointFile {
  url: string;
  relative_file_name: string;
  node_rank: number;
  size_bytes: number;
  last_modified: string;
}

export interface FilesPage {
  presigned_urls: CheckpointFile[];
  next_page_token?: number | null;
  total_count: number;
}

export interface Alias {
  name: string;
  training_job_id: string;
  checkpoint_id: string;
  updated_at?: string;
}

export interface TensorFile {
  node_rank: number;
  relative_file_name: string;
  format?: string;
  parameter_count?: number | null;
  error?: string | null;
  tensors?: { name: string; dtype: string; shape: number[] }[];
}

export interface TensorsPage {
  checkpoint_id: string;
  parameter_count?: number | null;
  bytes_by_dtype?: Record<string, number>;
  files: TensorFile[];
  missing_from_index?: unknown[];
  next_page_token?: number | string | null;
}

export interface LogLine {
  timestamp: string;
  message: string;
  replica?: string | null;
  level?: string | null;
}
