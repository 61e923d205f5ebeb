/** Where one local file goes: a job's checkpoint file of one node rank. */
export interface FileUploadTarget {
  projectId: string;
  jobId: string;
  nodeRank: number;
  /** The checkpoint file's name, '/'-separated. */
  relativeName: string;
  /** The local file. */
  path: string;
}

export function jobPath(target: { projectId: string; jobId: string }): string {
  return `/v1/training_projects/${encodeURIComponent(target.projectId)}/jobs/${encodeURIComponent(target.jobId)}`;
}

/** ckpt's streamed-upload route of one file. */
export function checkpointFilePath(target: Omit<FileUploadTarget, "path">): string {
  const name = target.relativeName.split("/").map(encodeURIComponent).join("/");
  return `${jobPath(target)}/checkpoint_files/${target.nodeRank}/${name}`;
}
