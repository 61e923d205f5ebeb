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
  [extra: string]: unknown;
}
