import { hostname, userInfo } from "node:os";
import type { AuditEntry } from "./types.js";
import type { MetadataStore } from "../stores/metadata/store.js";

/** The actions ckpt itself records; each is a dotted lowercase name. */
export const AUDIT_ACTIONS = {
  keyCreated: "api_key.created",
  keyRevoked: "api_key.revoked",
  projectDeleted: "project.deleted",
  jobDeleted: "job.deleted",
  fileDeleted: "file.deleted",
  urlSecretRotated: "url_secret.rotated",
  aliasMoved: "alias.moved",
  aliasRemoved: "alias.removed",
  retentionApplied: "retention.applied",
} as const;

/** Who did it: an API caller, or someone running `ckpt admin` on the server's machine. */
export type AuditActor = { orgId: string; keyId: string } | { admin: string } | { system: string };

/** The local admin CLI, named by the OS user and host running it. */
export function adminActor(): AuditActor {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return { admin: `${user}@${hostname()}` };
}

export interface AuditRecord {
  action: string;
  /** The organisation concerned; defaults to the caller's. */
  orgId?: string | null;
  subject?: string | null;
  details?: AuditEntry["details"];
}

/** An API key in its plaintext form (`ckpt_<id>.<secret>`): never allowed into the log. */
const PLAINTEXT_KEY = /ckpt_[a-z0-9]+\.[A-Za-z0-9_-]{16,}/;

/**
 * The one way anything is written to the audit log. Subjects and details are ids, names and
 * flags; anything that looks like a plaintext API key is refused (a bug, not a client error).
 */
export async function recordAudit(store: MetadataStore, actor: AuditActor, record: AuditRecord): Promise<AuditEntry> {
  if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/.test(record.action)) throw new Error(`audit action must be dotted lowercase words (got ${JSON.stringify(record.action)})`);
  const details = record.details ?? {};
  for (const value of [record.subject, ...Object.values(details)])
    if (typeof value === "string" && PLAINTEXT_KEY.test(value)) throw new Error("refusing to write a secret to the audit log");
  const byKey = "keyId" in actor;
  return store.appendAudit({
    action: record.action,
    keyId: byKey ? actor.keyId : null,
    actor: byKey ? `key ${actor.keyId}` : "admin" in actor ? `admin CLI (${actor.admin})` : `server (${actor.system})`,
    orgId: record.orgId !== undefined ? record.orgId : byKey ? actor.orgId : null,
    subject: record.subject ?? null,
    details,
  });
}
