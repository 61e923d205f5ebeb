/**
 * ckpt's client SDK: importable on its own (`import { downloadCheckpoint } from "ckpt/client"`);
 * it pulls in none of the server's dependencies. Works against a ckpt server and against
 * Baseten's API (`https://api.baseten.co`).
 */
export { CkptClient, BASETEN_API_URL, type ClientOptions } from "./api.js";
export type { Connection } from "./connection.js";
export { CkptApiError } from "./errors.js";
export { uploadFolder, UploadPlanError, type UploadFolderOptions, type UploadFolderSummary, type UploadEvent } from "./upload/upload-folder.js";
export { uploadFile, UploadRoute, type UploadFileOptions, type UploadPath } from "./upload/upload-file.js";
export { uploadCheckpointFile, SMALL_FILE_BYTES } from "./upload/streamed-upload.js";
export { uploadFileDirect } from "./upload/direct-upload.js";
export type { FileUploadTarget } from "./upload/target.js";
export { sha256OfFile } from "./upload/digest.js";
export { CheckpointSync } from "./sync/checkpoint-sync.js";
export { DEFAULT_SYNC_TUNING } from "./sync/types.js";
export type { CheckpointSyncOptions, SyncEvent, SyncFailure, SyncSummary, SyncTuning } from "./sync/types.js";
export { listCheckpointFiles } from "./list-checkpoint-files.js";
export { listCheckpoints } from "./list-checkpoints.js";
export { listJobs } from "./list-jobs.js";
export { listProjects } from "./list-projects.js";
export { getJob } from "./get-job.js";
export { LogShipper, type LogShipperOptions, type LogShipSummary, type OutputStream } from "./logs/log-shipper.js";
export { getLoadCheckpointPlan, loadCheckpoints, LoadCheckpointError, type LoadCheckpointPlan, type LoadedCheckpoints } from "./load-checkpoints.js";
export { resolveCheckpointRef } from "./checkpoint-ref.js";
export { writeDownloadManifest, verifyDownload, MANIFEST_FILE_NAME } from "./download-manifest.js";
export { downloadCheckpoint } from "./download/download-checkpoint.js";
export { DEFAULT_RETRY_POLICY, DEFAULT_TUNING } from "./download/types.js";
export type {
  DownloadCheckpointOptions,
  DownloadEvent,
  DownloadSelection,
  DownloadSummary,
  DownloadTuning,
  FileRef,
  PlannedEntry,
  RetryPolicy,
} from "./download/types.js";
export type { ProgressSnapshot } from "./download/progress.js";
export type * from "./types.js";
export { inspectCheckpoint, FIRST_READ_BYTES, type CheckpointInspection, type InspectCheckpointOptions } from "./inspect-checkpoint.js";
export { diffCheckpoints, type CheckpointDiff, type FileChange, type TensorChange, type TensorRef } from "./diff-checkpoints.js";
