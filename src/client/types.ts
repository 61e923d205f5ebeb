/** API objects as the server (ckpt or Baseten) sends them. Only the fields the SDK relies on are required. */

export interface CheckpointFile {
  url: string;
  relative_file_name: string;
  node_rank: number;
  size_bytes: number;
  last_modified: string;
}

export interface CheckpointFilesPage {
  presigned_urls: CheckpointFile[];
  next_page_token?: number | null;
  total_count: number;
}

export interface TrainingProjectSummary {
  id: string;
  name: string;
}

export interface TrainingJob {
  id: string;
  created_at: string;
  current_status: string;
  error_message?: string | null;
  updated_at: string;
  training_project_id: string;
  training_project?: TrainingProjectSummary;
  name?: string | null;
  checkpoint_sync_status?: "SYNCING" | "COMPLETED" | null;
  priority?: number;
  [extra: string]: unknown;
}

export interface TrainingProject {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  latest_job?: TrainingJob | null;
  [extra: string]: unknown;
}

export interface TrainingJobCheckpoint {
  checkpoint_id: string;
  created_at: string;
  checkpoint_type: string;
  size_bytes: number;
  sync_status?: string | null;
  training_job_id: string;
  /** ckpt extensions (absent on Baseten). */
  state?: "WRITING" | "COMPLETE" | "INCOMPLETE";
  file_count?: number;
  aliases?: string[];
  pinned?: boolean;
  completed_at?: string | null;
  completed_by?: string | null;
  [extra: string]: unknown;
}

/** ckpt extension: a project-scoped name for one (job, checkpoint). */
export interface CheckpointAlias {
  name: string;
  training_job_id: string;
  checkpoint_id: string;
  updated_at: string;
}

/** One move of an alias; null ids: it was removed. */
export interface CheckpointAliasMove {
  version: number;
  training_job_id: string | null;
  checkpoint_id: string | null;
  changed_at: string;
}

/** ckpt extension: a project's retention policy (null rule: not set). */
export interface RetentionPolicy {
  keep_last: number | null;
  keep_best: number | null;
  metric: string | null;
  mode: "min" | "max" | null;
  max_age_seconds: number | null;
  auto: boolean;
}

export interface RetentionEntry {
  training_job_id: string;
  checkpoint_id: string;
  state: string;
  size_bytes: number;
  file_count: number;
  created_at: string;
}

export interface RetentionPlan {
  policy: RetentionPolicy;
  delete: RetentionEntry[];
  keep: (RetentionEntry & { reasons: string[] })[];
  bytes_freed: number;
}
