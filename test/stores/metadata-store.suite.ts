// The MetadataStore contract, as tests every backend must pass (SQLite and PostgreSQL run it
// from metadata-sqlite.test.ts and metadata-postgres.test.ts). Each test opens a fresh, empty
// store, so tests never see each other's rows.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { newId } from "../../src/domain/ids.js";
import type { FileRecord, JobRecord, JobSearch, ProjectRecord } from "../../src/domain/types.js";
import type { MetadataStore } from "../../src/stores/metadata/store.js";

export interface OpenedStore {
  store: MetadataStore;
  cleanup(): Promise<void>;
}

/** What SQLite's `new Date().toISOString()` produces; every backend must return exactly this shape. */
const ISO_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Long enough that the next timestamp is in a later millisecond. */
const nextMillisecond = (): Promise<void> => sleep(3);

function assertTimestamps(record: object, fields: string[]): void {
  for (const field of fields) {
    const value = (record as Record<string, unknown>)[field];
    assert.equal(typeof value, "string", `${field} should be a string, got ${typeof value}`);
    assert.match(value as string, ISO_MS_UTC, `${field}`);
  }
}

const sha = (): string => randomBytes(32).toString("hex");

interface Fixture {
  orgId: string;
  project: ProjectRecord;
  job: JobRecord;
}

async function seed(store: MetadataStore, orgName = "acme"): Promise<Fixture> {
  const org = await store.ensureOrganisation(orgName);
  const project = await store.upsertProject(org.id, "llama-finetune");
  const job = await store.createJob({ id: newId(), orgId: org.id, projectId: project.id, name: "run-1", spec: {}, priority: 0 });
  return { orgId: org.id, project, job };
}

async function commitNew(store: MetadataStore, jobId: string, relativeName: string, nodeRank = 0, sizeBytes = 10): Promise<FileRecord> {
  const result = await store.commitFile({ jobId, nodeRank, relativeName, sizeBytes, sha256: sha() });
  assert.ok(typeof result === "object", `commit of ${relativeName} answered ${String(result)}`);
  return result.file;
}

/** Registers the conformance tests for one backend. `open` returns a fresh, empty store. */
export function metadataStoreSuite(name: string, open: () => Promise<OpenedStore>): void {
  const withStore = (body: (store: MetadataStore) => Promise<void>) => async () => {
    const { store, cleanup } = await open();
    try {
      await body(store);
    } finally {
      await cleanup();
    }
  };

  describe(`MetadataStore conformance: ${name}`, () => {
    test("every record has exactly the domain type's fields", withStore(async (store) => {
      const keys = (o: object | null | undefined): string[] => Object.keys(o ?? { missing: 1 }).sort();
      const { orgId, project, job } = await seed(store);
      await store.insertApiKey({ keyId: "key00001", orgId, secretHash: randomBytes(32) });
      const file = await commitNew(store, job.id, "ckpt-1/a.bin");
      assert.deepEqual(keys(await store.ensureOrganisation("acme")), ["createdAt", "id", "name"]);
      assert.deepEqual(keys(await store.findApiKey("key00001")), ["createdAt", "keyId", "orgId", "orgName", "ownerEmail", "revokedAt", "secretHash"]);
      assert.deepEqual(keys(project), ["createdAt", "id", "name", "orgId", "updatedAt"]);
      assert.deepEqual(keys(await store.getJob(orgId, project.id, job.id)), [
        "checkpointSyncStatus", "createdAt", "createdByEmail", "errorMessage", "fileCount", "id", "name",
        "orgId", "priority", "projectId", "spec", "status", "updatedAt",
      ]);
      const fileKeys = ["blobKey", "createdAt", "jobId", "lastModified", "nodeRank", "relativeName", "seq", "sha256", "sizeBytes"];
      assert.deepEqual(keys(file), fileKeys);
      assert.deepEqual(keys((await store.listFiles(job.id, 0, 1))[0]), fileKeys);
      assert.deepEqual(keys((await store.summarizeCheckpoints(job.id))[0]), [
        "checkpointId", "completedAt", "completedBy", "createdAt", "fileCount", "hasAdapterConfig", "hasIndex",
        "lastModified", "pinned", "requirementsPending", "sizeBytes", "state", "trainerState",
      ]);
      await store.markJobDeleted(orgId, project.id, job.id);
      assert.deepEqual(keys((await store.jobsPendingPurge())[0]), ["jobId", "projectId"]);
    }));

    // --- Organisations and keys -----------------------------------------------------------------

    test("ensureOrganisation creates once and then finds by name", withStore(async (store) => {
      const a = await store.ensureOrganisation("acme");
      assertTimestamps(a, ["createdAt"]);
      assert.equal(a.name, "acme");
      assert.deepEqual(await store.ensureOrganisation("acme"), a);
      const b = await store.ensureOrganisation("globex");
      assert.notEqual(b.id, a.id);
    }));

    test("ensureOrganisation called concurrently for one name yields one organisation", withStore(async (store) => {
      const orgs = await Promise.all(Array.from({ length: 10 }, () => store.ensureOrganisation("acme")));
      assert.equal(new Set(orgs.map((o) => o.id)).size, 1);
    }));

    test("api keys: insert, find with the org name, list in creation order, revoke once", withStore(async (store) => {
      const acme = await store.ensureOrganisation("acme");
      const globex = await store.ensureOrganisation("globex");
      const hash1 = randomBytes(32);
      const hash2 = randomBytes(32);
      await store.insertApiKey({ keyId: "zzkey001", orgId: acme.id, secretHash: hash1 });
      await nextMillisecond();
      await store.insertApiKey({ keyId: "aakey002", orgId: globex.id, secretHash: hash2 });

      const found = await store.findApiKey("zzkey001");
      assert.ok(found);
      assert.equal(found.orgId, acme.id);
      assert.equal(found.orgName, "acme");
      assert.ok(Buffer.isBuffer(found.secretHash));
      assert.ok(found.secretHash.equals(hash1));
      assert.equal(found.revokedAt, null);
      assertTimestamps(found, ["createdAt"]);
      assert.equal(await store.findApiKey("nokey000"), null);

      const listed = await store.listApiKeys();
      assert.deepEqual(listed.map((k) => [k.keyId, k.orgName]), [["zzkey001", "acme"], ["aakey002", "globex"]]);

      assert.equal(await store.revokeApiKey("zzkey001"), true);
      assert.equal(await store.revokeApiKey("zzkey001"), false, "revoking twice");
      assert.equal(await store.revokeApiKey("nokey000"), false, "unknown key");
      const revoked = await store.findApiKey("zzkey001");
      assertTimestamps(revoked!, ["createdAt", "revokedAt"]);
      assert.equal((await store.findApiKey("aakey002"))?.revokedAt, null, "other keys untouched");
    }));

    // --- Projects -------------------------------------------------------------------------------

    test("upsertProject is idempotent by name within an org and distinct across orgs", withStore(async (store) => {
      const acme = await store.ensureOrganisation("acme");
      const globex = await store.ensureOrganisation("globex");
      const first = await store.upsertProject(acme.id, "llama");
      assertTimestamps(first, ["createdAt", "updatedAt"]);
      assert.deepEqual([first.orgId, first.name], [acme.id, "llama"]);
      await nextMillisecond();
      const again = await store.upsertProject(acme.id, "llama");
      assert.equal(again.id, first.id);
      assert.equal(again.createdAt, first.createdAt);
      assert.ok(again.updatedAt > first.updatedAt, "upserting an existing project touches updatedAt");
      assert.deepEqual(await store.getProject(acme.id, first.id), again);

      const theirs = await store.upsertProject(globex.id, "llama");
      assert.notEqual(theirs.id, first.id);
      assert.equal(theirs.orgId, globex.id);
    }));

    test("upsertProject called concurrently for one name yields one project", withStore(async (store) => {
      const acme = await store.ensureOrganisation("acme");
      const projects = await Promise.all(Array.from({ length: 10 }, () => store.upsertProject(acme.id, "llama")));
      assert.equal(new Set(projects.map((p) => p.id)).size, 1);
      assert.equal((await store.listProjects(acme.id)).length, 1);
    }));

    test("listProjects returns the org's live projects in creation order", withStore(async (store) => {
      const acme = await store.ensureOrganisation("acme");
      const globex = await store.ensureOrganisation("globex");
      const names = ["b-second", "a-first", "c-third"];
      const made: ProjectRecord[] = [];
      for (const n of names) {
        made.push(await store.upsertProject(acme.id, n));
        await nextMillisecond();
      }
      await store.upsertProject(globex.id, "other");
      assert.deepEqual((await store.listProjects(acme.id)).map((p) => p.name), names);
      assert.deepEqual((await store.listProjects(globex.id)).map((p) => p.name), ["other"]);
      assert.deepEqual(await store.listProjects("no-such-org"), []);
    }));

    test("another org cannot reach a project or its jobs by id", withStore(async (store) => {
      const { orgId, project, job } = await seed(store, "acme");
      const intruder = await store.ensureOrganisation("intruder");
      assert.equal(await store.getProject(intruder.id, project.id), null);
      assert.deepEqual(await store.listProjects(intruder.id), []);
      assert.equal(await store.markProjectDeleted(intruder.id, project.id), null);
      assert.equal(await store.getJob(intruder.id, project.id, job.id), null);
      assert.deepEqual(await store.listJobs(intruder.id, project.id), []);
      assert.equal(await store.latestJob(intruder.id, project.id), null);
      assert.equal((await store.latestJobs(intruder.id, [project.id])).size, 0);
      assert.equal(await store.updateJob(intruder.id, project.id, job.id, { status: "TRAINING_JOB_FAILED" }), null);
      assert.equal(await store.markJobDeleted(intruder.id, project.id, job.id), false);
      // ...and nothing above changed the owner's rows
      assert.ok(await store.getProject(orgId, project.id));
      const still = await store.getJob(orgId, project.id, job.id);
      assert.equal(still?.status, "TRAINING_JOB_CREATED");
    }));

    // --- Jobs -----------------------------------------------------------------------------------

    test("createJob returns the new job with its spec verbatim", withStore(async (store) => {
      const org = await store.ensureOrganisation("acme");
      const project = await store.upsertProject(org.id, "llama");
      // key order matters: the spec is echoed back as sent
      const spec = { zeta: 1, alpha: { b: [1, 2.5, { y: null, x: "s" }], a: true }, name: "run-1", "ünï": "ok" };
      const id = newId();
      const job = await store.createJob({ id, orgId: org.id, projectId: project.id, name: "run-1", spec, priority: 3 });
      assert.deepEqual(
        { ...job, createdAt: "", updatedAt: "", spec: null },
        {
          id,
          projectId: project.id,
          orgId: org.id,
          name: "run-1",
          status: "TRAINING_JOB_CREATED",
          errorMessage: null,
          checkpointSyncStatus: null,
          priority: 3,
          spec: null,
          createdAt: "",
          updatedAt: "",
          fileCount: 0,
          createdByEmail: null,
        },
      );
      assertTimestamps(job, ["createdAt", "updatedAt"]);
      assert.equal(JSON.stringify(job.spec), JSON.stringify(spec));
      const fetched = await store.getJob(org.id, project.id, id);
      assert.deepEqual(fetched, job);
      assert.equal(JSON.stringify(fetched?.spec), JSON.stringify(spec));
      const unnamed = await store.createJob({ id: newId(), orgId: org.id, projectId: project.id, name: null, spec: {}, priority: 0 });
      assert.equal(unnamed.name, null);
    }));

    test("listJobs is newest first; latestJob and latestJobs agree with it", withStore(async (store) => {
      const org = await store.ensureOrganisation("acme");
      const p1 = await store.upsertProject(org.id, "one");
      const p2 = await store.upsertProject(org.id, "two");
      const empty = await store.upsertProject(org.id, "empty");
      const ids: string[] = [];
      // created back to back, often within one millisecond: ties still break by creation order
      for (let i = 0; i < 5; i++) {
        ids.push((await store.createJob({ id: newId(), orgId: org.id, projectId: p1.id, name: `j${i}`, spec: {}, priority: 0 })).id);
      }
      const other = await store.createJob({ id: newId(), orgId: org.id, projectId: p2.id, name: null, spec: {}, priority: 0 });
      assert.deepEqual((await store.listJobs(org.id, p1.id)).map((j) => j.id), [...ids].reverse());
      assert.equal((await store.latestJob(org.id, p1.id))?.id, ids[4]);
      assert.equal(await store.latestJob(org.id, empty.id), null);
      const latest = await store.latestJobs(org.id, [p1.id, p2.id, empty.id]);
      assert.deepEqual([...latest.keys()].sort(), [p1.id, p2.id].sort());
      assert.equal(latest.get(p1.id)?.id, ids[4]);
      assert.equal(latest.get(p2.id)?.id, other.id);
      assert.equal((await store.latestJobs(org.id, [])).size, 0);
    }));

    test("api keys keep their owner email; jobs keep the email of who created them", withStore(async (store) => {
      const { orgId, project } = await seed(store);
      await store.insertApiKey({ keyId: "keyemail1", orgId, secretHash: randomBytes(32), ownerEmail: "ada@example.com" });
      await store.insertApiKey({ keyId: "keynomail", orgId, secretHash: randomBytes(32) });
      assert.equal((await store.findApiKey("keyemail1"))?.ownerEmail, "ada@example.com");
      assert.equal((await store.findApiKey("keynomail"))?.ownerEmail, null);
      assert.deepEqual((await store.listApiKeys()).map((k) => k.ownerEmail), ["ada@example.com", null]);
      const job = await store.createJob({ id: newId(), orgId, projectId: project.id, name: null, spec: {}, priority: 0, createdByEmail: "ada@example.com" });
      assert.equal(job.createdByEmail, "ada@example.com");
      assert.equal((await store.getJob(orgId, project.id, job.id))?.createdByEmail, "ada@example.com");
      assert.equal((await store.updateJob(orgId, project.id, job.id, { priority: 2 }))?.createdByEmail, "ada@example.com");
    }));

    test("getProjectById finds a live project of any organisation, and nothing else", withStore(async (store) => {
      const { project } = await seed(store, "acme");
      const other = await seed(store, "globex");
      assert.deepEqual(await store.getProjectById(project.id), await store.getProject(project.orgId, project.id));
      assert.equal((await store.getProjectById(other.project.id))?.orgId, other.orgId);
      assert.equal(await store.getProjectById("nosuchpj"), null);
      await store.markProjectDeleted(project.orgId, project.id);
      assert.equal(await store.getProjectById(project.id), null, "a deleted project");
    }));

    // --- Job search -----------------------------------------------------------------------------

    const search = (over: Partial<JobSearch> = {}): JobSearch => ({
      projectId: null,
      jobId: null,
      statuses: null,
      orderBy: { field: "created_at", order: "desc" },
      limit: 1000,
      ...over,
    });

    test("searchJobs filters by project, job and statuses, within the organisation only", withStore(async (store) => {
      const { orgId, project, job: first } = await seed(store, "acme");
      const sibling = await store.upsertProject(orgId, "sibling");
      const running = await store.createJob({ id: newId(), orgId, projectId: project.id, name: "r", spec: {}, priority: 0 });
      await store.updateJob(orgId, project.id, running.id, { status: "TRAINING_JOB_RUNNING" });
      const inSibling = await store.createJob({ id: newId(), orgId, projectId: sibling.id, name: "s", spec: {}, priority: 0 });
      const other = await seed(store, "globex");
      const deleted = await store.createJob({ id: newId(), orgId, projectId: project.id, name: "d", spec: {}, priority: 0 });
      await store.markJobDeleted(orgId, project.id, deleted.id);

      const ids = async (s: JobSearch, org = orgId) => (await store.searchJobs(org, s)).map(({ job }) => job.id);
      assert.deepEqual(await ids(search()), [inSibling.id, running.id, first.id], "every live job of the org, newest first");
      assert.deepEqual(await ids(search({ projectId: project.id })), [running.id, first.id]);
      assert.deepEqual(await ids(search({ jobId: inSibling.id })), [inSibling.id]);
      assert.deepEqual(await ids(search({ jobId: inSibling.id, projectId: project.id })), [], "filters combine with AND");
      assert.deepEqual(await ids(search({ statuses: ["TRAINING_JOB_RUNNING", "TRAINING_JOB_DEPLOYING"] })), [running.id]);
      assert.deepEqual(await ids(search({ statuses: [] })), [inSibling.id, running.id, first.id], "an empty list filters nothing");
      assert.deepEqual(await ids(search({ jobId: other.job.id })), [], "another organisation's job");
      assert.deepEqual(await ids(search({ projectId: other.project.id })), [], "another organisation's project");
      assert.deepEqual(await ids(search({ jobId: deleted.id })), [], "a deleted job");
      assert.deepEqual(await ids(search(), other.orgId), [other.job.id]);
      const found = (await store.searchJobs(orgId, search({ jobId: running.id })))[0];
      assert.deepEqual(found?.job, await store.getJob(orgId, project.id, running.id), "the same job record getJob answers");
      assert.deepEqual(found?.project, await store.getProject(orgId, project.id), "and its project, as getProject answers it");
      assert.deepEqual((await store.searchJobs(orgId, search({ jobId: inSibling.id })))[0]?.project, await store.getProject(orgId, sibling.id));
    }));

    test("searchJobs orders by created_at both ways, ties in creation order, and stops at the limit", withStore(async (store) => {
      const org = await store.ensureOrganisation("acme");
      const project = await store.upsertProject(org.id, "p");
      const ids: string[] = [];
      // back to back, often within one millisecond: ties must still come in creation order
      for (let i = 0; i < 6; i++) ids.push((await store.createJob({ id: newId(), orgId: org.id, projectId: project.id, name: null, spec: {}, priority: 0 })).id);
      const order = async (s: JobSearch) => (await store.searchJobs(org.id, s)).map(({ job }) => job.id);
      assert.deepEqual(await order(search({ orderBy: { field: "created_at", order: "asc" } })), ids);
      assert.deepEqual(await order(search()), [...ids].reverse());
      assert.deepEqual(await order(search({ limit: 2 })), [ids[5], ids[4]]);
      assert.deepEqual(await order(search({ limit: 2, orderBy: { field: "created_at", order: "asc" } })), [ids[0], ids[1]]);
    }));

    test("every search is answered from an index, never a scan of all jobs (query plan)", withStore(async (store) => {
      // Many jobs of another organisation, few of ours: the plan must reach ours without
      // reading theirs, whatever the filters.
      const busy = await store.ensureOrganisation("busy");
      const busyProject = await store.upsertProject(busy.id, "bulk");
      const created: Promise<JobRecord>[] = [];
      for (let i = 0; i < 1500; i++)
        created.push(store.createJob({ id: newId(), orgId: busy.id, projectId: busyProject.id, name: null, spec: {}, priority: 0 }));
      for (let i = 0; i < created.length; i += 100) await Promise.all(created.slice(i, i + 100));
      const { orgId, project, job } = await seed(store, "acme");
      const searches: [string, JobSearch][] = [
        ["no filter", search()],
        ["no filter, ascending", search({ orderBy: { field: "created_at", order: "asc" } })],
        ["job id", search({ jobId: job.id })],
        ["project id", search({ projectId: project.id })],
        ["statuses", search({ statuses: ["TRAINING_JOB_RUNNING", "TRAINING_JOB_CREATED", "TRAINING_JOB_DEPLOYING"] })],
        ["all filters", search({ projectId: project.id, jobId: job.id, statuses: ["TRAINING_JOB_CREATED"] })],
      ];
      for (const [what, s] of searches) {
        const plan = await store.explainSearchJobs(orgId, s);
        // SQLite: "SEARCH jobs USING INDEX ..." (a full scan reads "SCAN jobs"); PostgreSQL:
        // "Index Scan" / "Bitmap Index Scan" on a jobs index (a full scan reads "Seq Scan on jobs").
        assert.match(plan, /USING (COVERING )?INDEX \w+|USING PRIMARY KEY|Index (Only )?Scan( Backward)? using \w+ on jobs|Bitmap Index Scan on \w+/, `${what}: ${plan}`);
        assert.doesNotMatch(plan, /^\s*SCAN jobs\s*$|SCAN jobs$|Seq Scan on jobs/m, `${what}: ${plan}`);
        assert.deepEqual((await store.searchJobs(orgId, s)).map((found) => found.job.id), [job.id], what);
      }
    }));

    test("getJob is scoped by org and project", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const sibling = await store.upsertProject(orgId, "sibling");
      assert.deepEqual(await store.getJob(orgId, project.id, job.id), job);
      assert.equal(await store.getJob(orgId, sibling.id, job.id), null, "wrong project");
      assert.equal(await store.getJob(orgId, project.id, "nosuchjb"), null);
    }));

    test("updateJob changes only the given fields and touches updatedAt", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      await nextMillisecond();
      const running = await store.updateJob(orgId, project.id, job.id, { status: "TRAINING_JOB_RUNNING" });
      assert.ok(running);
      assert.equal(running.status, "TRAINING_JOB_RUNNING");
      assert.ok(running.updatedAt > job.updatedAt);
      assert.equal(running.createdAt, job.createdAt);
      assertTimestamps(running, ["createdAt", "updatedAt"]);

      const failed = await store.updateJob(orgId, project.id, job.id, {
        status: "TRAINING_JOB_FAILED",
        errorMessage: "OOM on rank 3",
        syncStatus: "SYNCING",
        priority: 7,
      });
      assert.deepEqual(
        [failed?.status, failed?.errorMessage, failed?.checkpointSyncStatus, failed?.priority],
        ["TRAINING_JOB_FAILED", "OOM on rank 3", "SYNCING", 7],
      );
      const partly = await store.updateJob(orgId, project.id, job.id, { errorMessage: null, syncStatus: "COMPLETED" });
      assert.deepEqual(
        [partly?.status, partly?.errorMessage, partly?.checkpointSyncStatus, partly?.priority],
        ["TRAINING_JOB_FAILED", null, "COMPLETED", 7],
      );
      assert.deepEqual(await store.getJob(orgId, project.id, job.id), partly);
      assert.equal(await store.updateJob(orgId, project.id, "nosuchjb", { priority: 1 }), null);
    }));

    test("markJobDeleted hides the job at once; purgeJob then removes it and its files", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const keep = await store.createJob({ id: newId(), orgId, projectId: project.id, name: "keep", spec: {}, priority: 0 });
      await commitNew(store, job.id, "ckpt-1/model.safetensors");
      await commitNew(store, keep.id, "ckpt-1/model.safetensors");

      assert.equal(await store.markJobDeleted(orgId, project.id, job.id), true);
      assert.equal(await store.markJobDeleted(orgId, project.id, job.id), false, "already deleted");
      assert.equal(await store.getJob(orgId, project.id, job.id), null);
      assert.deepEqual((await store.listJobs(orgId, project.id)).map((j) => j.id), [keep.id]);
      assert.equal((await store.latestJob(orgId, project.id))?.id, keep.id);
      assert.equal(await store.updateJob(orgId, project.id, job.id, { priority: 1 }), null);
      assert.deepEqual(await store.jobsPendingPurge(), [{ projectId: project.id, jobId: job.id }]);

      await store.purgeJob(job.id);
      assert.deepEqual(await store.jobsPendingPurge(), []);
      assert.equal(await store.getFile(job.id, 0, "ckpt-1/model.safetensors"), null);
      assert.deepEqual(await store.listFiles(job.id, 0, 10), []);
      assert.ok(await store.getFile(keep.id, 0, "ckpt-1/model.safetensors"), "other jobs' files stay");
      await store.purgeJob(job.id); // idempotent
    }));

    test("purgeJob leaves a live job and its files alone", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      await commitNew(store, job.id, "a.bin");
      await store.purgeJob(job.id);
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 1);
      assert.equal((await store.listFiles(job.id, 0, 10)).length, 1);
    }));

    test("markProjectDeleted hides the project and its jobs; purgeDeletedProjects waits for them", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const second = await store.createJob({ id: newId(), orgId, projectId: project.id, name: null, spec: {}, priority: 0 });
      const bystander = await store.upsertProject(orgId, "bystander"); // live, no jobs: must survive
      await commitNew(store, job.id, "ckpt-1/a.bin");

      const marked = await store.markProjectDeleted(orgId, project.id);
      assert.ok(marked);
      assert.deepEqual([...marked.jobIds].sort(), [job.id, second.id].sort());
      assert.equal(await store.markProjectDeleted(orgId, project.id), null, "already deleted");
      assert.equal(await store.getProject(orgId, project.id), null);
      assert.deepEqual((await store.listProjects(orgId)).map((p) => p.id), [bystander.id]);
      assert.equal(await store.getJob(orgId, project.id, job.id), null);
      assert.equal(await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "late.bin", sizeBytes: 1, sha256: null }), "job-gone");
      assert.deepEqual(
        (await store.jobsPendingPurge()).map((p) => p.jobId).sort(),
        [job.id, second.id].sort(),
      );

      await store.purgeDeletedProjects(); // jobs not purged yet: the project row must stay (FKs)
      for (const id of marked.jobIds) await store.purgeJob(id);
      await store.purgeDeletedProjects();
      await store.purgeDeletedProjects(); // idempotent
      assert.deepEqual(await store.jobsPendingPurge(), []);
      assert.deepEqual((await store.listProjects(orgId)).map((p) => p.id), [bystander.id]);
      assert.ok(await store.getProject(orgId, bystander.id));

      // the name is free again: a new project, not the deleted one
      const reborn = await store.upsertProject(orgId, project.name);
      assert.notEqual(reborn.id, project.id);
      assert.deepEqual(await store.listJobs(orgId, reborn.id), []);
    }));

    // --- Files ----------------------------------------------------------------------------------

    test("commitFile gives new files dense positions; a replacement keeps its position", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const names = ["ckpt-1/config.json", "ckpt-1/model.safetensors", "README.md"];
      const committed: FileRecord[] = [];
      for (const n of names) committed.push(await commitNew(store, job.id, n));
      assert.deepEqual(committed.map((f) => f.seq), [0, 1, 2]);
      const first = committed[0]!;
      assert.equal(first.jobId, job.id);
      assert.equal(first.nodeRank, 0);
      assert.equal(first.relativeName, "ckpt-1/config.json");
      assert.equal(first.sizeBytes, 10);
      assert.match(first.sha256 ?? "", /^[0-9a-f]{64}$/);
      assertTimestamps(first, ["createdAt", "lastModified"]);
      assert.equal(first.createdAt, first.lastModified);
      assert.deepEqual(await store.getFile(job.id, 0, "ckpt-1/config.json"), first);

      const afterThree = await store.getJob(orgId, project.id, job.id);
      assert.equal(afterThree?.fileCount, 3);
      assert.ok(afterThree!.updatedAt >= job.updatedAt);

      await nextMillisecond();
      const switched = await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "ckpt-1/model.safetensors", sizeBytes: 99, sha256: null });
      assert.ok(typeof switched === "object");
      assert.deepEqual(switched.replaced, committed[1], "the switch answers the version it replaced");
      const replaced = switched.file;
      assert.equal(replaced.seq, 1);
      assert.equal(replaced.sizeBytes, 99);
      assert.equal(replaced.sha256, null);
      assert.equal(replaced.createdAt, committed[1]!.createdAt);
      assert.ok(replaced.lastModified > committed[1]!.lastModified);
      assert.deepEqual(await store.getFile(job.id, 0, "ckpt-1/model.safetensors"), replaced);
      const afterReplace = await store.getJob(orgId, project.id, job.id);
      assert.equal(afterReplace?.fileCount, 3, "a replacement is not a new file");
      assert.ok(afterReplace!.updatedAt > afterThree!.updatedAt, "a replacement touches the job");

      // the same name on another rank is another file
      const rank1 = await commitNew(store, job.id, "ckpt-1/model.safetensors", 1);
      assert.equal(rank1.seq, 3);
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 4);
    }));

    test("listFiles pages by position, including past the end", withStore(async (store) => {
      const { job } = await seed(store);
      for (let i = 0; i < 7; i++) await commitNew(store, job.id, `ckpt/f${i}.bin`, i % 2);
      const all = await store.listFiles(job.id, 0, 100);
      assert.deepEqual(all.map((f) => f.seq), [0, 1, 2, 3, 4, 5, 6]);
      assert.deepEqual(all.map((f) => f.relativeName), Array.from({ length: 7 }, (_, i) => `ckpt/f${i}.bin`));
      assert.deepEqual(await store.listFiles(job.id, 0, 3), all.slice(0, 3));
      assert.deepEqual(await store.listFiles(job.id, 3, 3), all.slice(3, 6));
      assert.deepEqual(await store.listFiles(job.id, 6, 3), all.slice(6));
      assert.deepEqual(await store.listFiles(job.id, 7, 3), []);
      assert.deepEqual(await store.listFiles(job.id, 1000, 3), []);
      assert.deepEqual(await store.listFiles(job.id, 2, 0), []);
      assert.deepEqual(await store.listFiles("nosuchjb", 0, 10), []);
      for (const f of all) assertTimestamps(f, ["createdAt", "lastModified"]);
    }));

    test("getFile finds by (job, rank, name) and nothing else", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const other = await store.createJob({ id: newId(), orgId, projectId: project.id, name: null, spec: {}, priority: 0 });
      const file = await commitNew(store, job.id, "ckpt-1/a.bin", 2);
      assert.deepEqual(await store.getFile(job.id, 2, "ckpt-1/a.bin"), file);
      assert.equal(await store.getFile(job.id, 0, "ckpt-1/a.bin"), null, "other rank");
      assert.equal(await store.getFile(job.id, 2, "ckpt-1/A.bin"), null, "names are case-sensitive");
      assert.equal(await store.getFile(other.id, 2, "ckpt-1/a.bin"), null, "other job");
    }));

    test("findPathConflict finds a file named like a folder of the name, or one inside it, in that rank only", withStore(async (store) => {
      const { job } = await seed(store);
      await commitNew(store, job.id, "ckpt/a", 0);
      await commitNew(store, job.id, "deep/x/y/z.bin", 0);
      await commitNew(store, job.id, "ckpt0", 0);
      await commitNew(store, job.id, "ckpt-1/file", 0);
      assert.equal(await store.findPathConflict(job.id, 0, "ckpt/a/b"), "ckpt/a", "a file where a folder would be");
      assert.equal(await store.findPathConflict(job.id, 0, "deep/x"), "deep/x/y/z.bin", "a folder where a file would be");
      assert.equal(await store.findPathConflict(job.id, 0, "deep"), "deep/x/y/z.bin");
      assert.equal(await store.findPathConflict(job.id, 1, "ckpt/a/b"), null, "other rank");
      assert.equal(await store.findPathConflict(job.id, 0, "ckpt/a"), null, "the same name is a replacement, not a conflict");
      assert.equal(await store.findPathConflict(job.id, 0, "ckpt/b"), null);
      // Neighbours in sort order that are not inside: "ckpt0", "ckpt-1/…" against "ckpt".
      assert.equal(await store.findPathConflict(job.id, 0, "ckpt"), "ckpt/a");
      assert.equal(await store.findPathConflict(job.id, 0, "ckpt-1/file/x"), "ckpt-1/file");
      assert.equal(await store.findPathConflict(job.id, 0, "dee"), null);
    }));

    test("sizes beyond 32 bits come back as exact numbers", withStore(async (store) => {
      const { job } = await seed(store);
      const big = 5 * 2 ** 40 + 7; // 5 TiB and change
      const file = await commitNew(store, job.id, "ckpt-1/huge.bin", 0, big);
      assert.equal(file.sizeBytes, big);
      assert.equal((await store.getFile(job.id, 0, "ckpt-1/huge.bin"))?.sizeBytes, big);
      assert.equal((await store.listFiles(job.id, 0, 1))[0]?.sizeBytes, big);
      await commitNew(store, job.id, "ckpt-1/huge.bin", 1, big);
      const [summary] = await store.summarizeCheckpoints(job.id);
      assert.equal(summary?.sizeBytes, 2 * big);
      assert.equal(typeof summary?.fileCount, "number");
    }));

    test("too-many-files refuses a new file at the limit but still allows replacements", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const commit = (relativeName: string, sizeBytes = 1) =>
        store.commitFile({ jobId: job.id, nodeRank: 0, relativeName, sizeBytes, sha256: null, maxFilesPerJob: 3 });
      for (const n of ["a", "b", "c"]) assert.equal(typeof (await commit(n)), "object");
      assert.equal(await commit("d"), "too-many-files");
      const replaced = await commit("b", 42);
      assert.ok(typeof replaced === "object");
      assert.deepEqual([replaced.file.seq, replaced.file.sizeBytes], [1, 42]);
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 3);
      assert.deepEqual((await store.listFiles(job.id, 0, 10)).map((f) => f.relativeName), ["a", "b", "c"]);
      assert.equal(await store.getFile(job.id, 0, "d"), null);
    }));

    test("commitFile answers job-gone for a deleted or unknown job", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      await commitNew(store, job.id, "a.bin");
      assert.equal(await store.markJobDeleted(orgId, project.id, job.id), true);
      const commit = (jobId: string, relativeName: string) =>
        store.commitFile({ jobId, nodeRank: 0, relativeName, sizeBytes: 1, sha256: null });
      assert.equal(await commit(job.id, "b.bin"), "job-gone", "new file");
      assert.equal(await commit(job.id, "a.bin"), "job-gone", "replacement");
      assert.equal(await commit("nosuchjb", "a.bin"), "job-gone", "unknown job");
      assert.equal(await store.getFile(job.id, 0, "b.bin"), null);
    }));

    test("50 concurrent commits of distinct names take positions exactly 0..49", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.commitFile({ jobId: job.id, nodeRank: i % 4, relativeName: `ckpt-${i % 5}/shard-${i}.bin`, sizeBytes: i, sha256: null }),
        ),
      );
      const seqs = results.map((r) => (typeof r === "object" ? r.file.seq : -1)).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 50 }, (_, i) => i));
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 50);
      const listed = await store.listFiles(job.id, 0, 100);
      assert.deepEqual(listed.map((f) => f.seq), seqs);
      assert.equal(new Set(listed.map((f) => `${f.nodeRank}/${f.relativeName}`)).size, 50);
    }));

    test("concurrent commits against the limit admit exactly that many new files", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: `f${i}`, sizeBytes: 1, sha256: null, maxFilesPerJob: 12 }),
        ),
      );
      assert.equal(results.filter((r) => r === "too-many-files").length, 18);
      const seqs = results.flatMap((r) => (typeof r === "object" ? [r.file.seq] : [])).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 12 }, (_, i) => i));
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 12);
    }));

    test("concurrent commits of one new name insert it once", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "same.bin", sizeBytes: i, sha256: null }),
        ),
      );
      assert.ok(results.every((r) => typeof r === "object" && r.file.seq === 0));
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 1);
    }));

    // --- Versions: the row switch is the commit ----------------------------------------------

    test("the row switch answers the version it replaced; of concurrent switches of one name each unreferences a different version", withStore(async (store) => {
      const { job } = await seed(store);
      const keyOf = (i: number) => `training_projects/p/jobs/${job.id}/versions/rank-0/ckpt/c/${String(i).padStart(20, "0")}/m.bin`;
      const legacy = await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.bin", sizeBytes: 1, sha256: null });
      assert.ok(typeof legacy === "object" && legacy.replaced === null && legacy.file.blobKey === null, "a row without a key: the legacy key");
      const first = await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.bin", sizeBytes: 2, sha256: null, blobKey: keyOf(0) });
      assert.ok(typeof first === "object");
      assert.equal(first.replaced?.blobKey, null, "replacing a legacy row answers its null key");
      assert.equal(first.file.blobKey, keyOf(0));
      assert.equal((await store.getFile(job.id, 0, "c/m.bin"))?.blobKey, keyOf(0));

      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.bin", sizeBytes: 100 + i, sha256: null, blobKey: keyOf(i + 1) })),
      );
      const replacedKeys = results.map((r) => (typeof r === "object" ? r.replaced?.blobKey : "refused"));
      const listed = await store.getFile(job.id, 0, "c/m.bin");
      // Every version but the one listed now was replaced exactly once: none leaks, none is deleted twice.
      assert.deepEqual([...replacedKeys, listed!.blobKey].sort(), Array.from({ length: 13 }, (_, i) => keyOf(i)).sort());
      const winner = results.find((r) => typeof r === "object" && r.file.blobKey === listed!.blobKey);
      assert.ok(winner && typeof winner === "object");
      assert.equal(listed!.sizeBytes, winner.file.sizeBytes, "the row describes the version it names");
      // The replaced record is the row as it was: its size goes with its key.
      for (const r of results) if (typeof r === "object" && r.replaced?.blobKey) assert.equal(r.replaced.sizeBytes, r.replaced.blobKey === keyOf(0) ? 2 : 100 + Number(r.replaced.blobKey.split("/").at(-2)) - 1);
    }));

    test("referencedBlobKeys: rows (legacy and versioned) and blob writes in flight, one batch", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      const v = (id: string, name = "c/m.bin") => `training_projects/${project.id}/jobs/${job.id}/versions/rank-0/ckpt/c/${id.padStart(20, "0")}/${name.slice(2)}`;
      const legacyKey = `training_projects/${project.id}/jobs/${job.id}/rank-0/c/old.bin`;
      await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/old.bin", sizeBytes: 1, sha256: null });
      await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.bin", sizeBytes: 1, sha256: null, blobKey: v("1") });
      await store.beginBlobWrite(v("2"), job.id);
      const ref = (key: string, relativeName: string, legacy: boolean, nodeRank = 0) => ({ key, jobId: job.id, nodeRank, relativeName, legacy });
      const refs = [
        ref(legacyKey, "c/old.bin", true),
        ref(v("1"), "c/m.bin", false),
        ref(v("2"), "c/m.bin", false),
        ref(v("3"), "c/m.bin", false), // no row, no write: an orphan
        ref(`training_projects/${project.id}/jobs/${job.id}/rank-0/c/m.bin`, "c/m.bin", true), // its row has a key: the legacy key is no longer its
        ref(`training_projects/${project.id}/jobs/${job.id}/rank-1/c/old.bin`, "c/old.bin", true, 1), // other rank
      ];
      const past = new Date(Date.now() - 3_600_000).toISOString();
      assert.deepEqual([...(await store.referencedBlobKeys(refs, past))].sort(), [legacyKey, v("1"), v("2")].sort());
      const future = new Date(Date.now() + 3_600_000).toISOString();
      assert.deepEqual([...(await store.referencedBlobKeys(refs, future))].sort(), [legacyKey, v("1")].sort(), "an old write no longer protects its key");
      assert.deepEqual([...(await store.referencedBlobKeys([], past))], []);

      // The commit ends the write in the same transaction: from then on the row references the key.
      await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.bin", sizeBytes: 2, sha256: null, blobKey: v("2") });
      assert.deepEqual([...(await store.referencedBlobKeys(refs, future))].sort(), [legacyKey, v("2")].sort());
      await store.beginBlobWrite(v("4"), job.id);
      await store.endBlobWrite(v("4"));
      assert.deepEqual([...(await store.referencedBlobKeys([ref(v("4"), "c/m.bin", false)], past))], []);
      await store.beginBlobWrite(v("5"), job.id);
      await store.markJobDeleted(orgId, project.id, job.id);
      await store.purgeJob(job.id);
      assert.deepEqual([...(await store.referencedBlobKeys([...refs, ref(v("5"), "c/m.bin", false)], past))], [], "a purge takes the job's rows and writes");
    }));

    test("a file and a folder of one name: commitFile refuses whichever comes second, also when they race", withStore(async (store) => {
      const { job } = await seed(store);
      await commitNew(store, job.id, "x/a");
      assert.equal(await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "x/a/b", sizeBytes: 1, sha256: null }), "path-conflict");
      assert.equal(await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "x", sizeBytes: 1, sha256: null }), "path-conflict");
      assert.equal(typeof (await store.commitFile({ jobId: job.id, nodeRank: 1, relativeName: "x/a/b", sizeBytes: 1, sha256: null })), "object", "other rank");
      for (let round = 0; round < 5; round++) {
        const results = await Promise.all(
          [`r${round}/f`, `r${round}/f/g`].map((relativeName) => store.commitFile({ jobId: job.id, nodeRank: 0, relativeName, sizeBytes: 1, sha256: null })),
        );
        assert.deepEqual(results.map((r) => (typeof r === "object" ? "ok" : r)).sort(), ["ok", "path-conflict"]);
      }
    }));

    // --- Checkpoints ----------------------------------------------------------------------------

    test("summarizeCheckpoints groups by top-level folder; root files belong to no checkpoint", withStore(async (store) => {
      const { job } = await seed(store);
      assert.deepEqual(await store.summarizeCheckpoints(job.id), []);
      const put = (relativeName: string, sizeBytes: number, nodeRank = 0) => commitNew(store, job.id, relativeName, nodeRank, sizeBytes);

      const c100 = await put("checkpoint-100/model-00001.safetensors", 1000);
      await put("checkpoint-100/model-00001.safetensors", 1001, 1); // same name, rank 1
      await put("checkpoint-100/adapter_config.json", 5);
      const root = await put("training_args.bin", 7);
      await put("checkpoint-200/sub/deep/adapter_config.json", 3); // nested still counts
      await put("checkpoint-300/adapter-config.json", 2); // "_" is not a wildcard
      await put("checkpoint-300/ADAPTER_CONFIG.JSON", 2); // exact case only
      await put("checkpoint-300/x_adapter_config.json", 2); // whole file name only
      await put("checkpoint-200/optimizer.pt", 40);
      await nextMillisecond();
      const replaced = await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "checkpoint-100/model-00001.safetensors", sizeBytes: 2000, sha256: null });
      assert.ok(typeof replaced === "object");

      const summary = await store.summarizeCheckpoints(job.id);
      assert.deepEqual(
        summary.map((c) => [c.checkpointId, c.fileCount, c.sizeBytes, c.hasAdapterConfig]),
        [
          ["checkpoint-100", 3, 2000 + 1001 + 5, true],
          ["checkpoint-200", 2, 43, true],
          ["checkpoint-300", 3, 6, false],
        ],
        "ordered by each checkpoint's first file",
      );
      const first = summary[0]!;
      assertTimestamps(first, ["createdAt", "lastModified"]);
      assert.equal(first.createdAt, c100.createdAt, "createdAt is the earliest file's");
      assert.equal(first.lastModified, replaced.file.lastModified, "lastModified is the latest change");
      assert.equal((await store.getFile(job.id, 0, root.relativeName))?.sizeBytes, 7, "a root file stays listed as a file");
    }));

    test("a root adapter_config.json makes no checkpoint", withStore(async (store) => {
      const { job } = await seed(store);
      await commitNew(store, job.id, "adapter_config.json");
      assert.deepEqual(await store.summarizeCheckpoints(job.id), []);
    }));

    test("states: markers complete, changed replacements reopen, identical re-sends do not", withStore(async (store) => {
      const { job } = await seed(store);
      const commit = (relativeName: string, sizeBytes: number, sha256: string | null) =>
        store.commitFile({ jobId: job.id, nodeRank: 0, relativeName, sizeBytes, sha256 });
      const state = async (id: string) => (await store.getCheckpoint(job.id, id))?.state;
      const digest = sha();
      await commit("checkpoint-1/model.safetensors", 10, digest);
      assert.equal(await state("checkpoint-1"), "WRITING");
      await commit("checkpoint-1/trainer_state.json", 2, sha());
      const complete = await store.getCheckpoint(job.id, "checkpoint-1");
      assert.deepEqual([complete?.state, complete?.completedBy], ["COMPLETE", "marker"]);
      assert.ok(complete?.completedAt);
      await commit("checkpoint-1/model.safetensors", 10, digest);
      assert.equal(await state("checkpoint-1"), "COMPLETE", "the same bytes again");
      await commit("checkpoint-1/extra.json", 1, sha());
      assert.equal(await state("checkpoint-1"), "COMPLETE", "a late new file");
      await commit("checkpoint-1/model.safetensors", 11, sha());
      const reopened = await store.getCheckpoint(job.id, "checkpoint-1");
      assert.deepEqual([reopened?.state, reopened?.completedAt], ["WRITING", null]);
      await commit("checkpoint-1/trainer_state.json", 2, sha());
      assert.equal(await state("checkpoint-1"), "COMPLETE", "the marker written again");
      for (const marker of [".metadata", ".ckpt-complete", "COMPLETE"]) {
        await commit(`c-${marker}/a.bin`, 1, sha());
        await commit(`c-${marker}/${marker}`, 0, sha());
        assert.equal(await state(`c-${marker}`), "COMPLETE", marker);
      }
      await commit("deep/sub/trainer_state.json", 1, sha());
      assert.equal(await state("deep"), "WRITING", "a marker counts only directly in the checkpoint folder");
    }));

    test("job end, explicit completion and pins", withStore(async (store) => {
      const { job } = await seed(store);
      for (const id of ["a", "b", "c"]) await commitNew(store, job.id, `${id}/x.bin`);
      assert.equal((await store.completeCheckpoint(job.id, "a", "explicit"))?.completedBy, "explicit");
      assert.equal(await store.completeCheckpoint(job.id, "nope", "explicit"), null);
      assert.deepEqual((await store.settleCheckpoints(job.id, { state: "INCOMPLETE", completedBy: null }, ["c"])).sort(), ["b"]);
      const states = Object.fromEntries((await store.summarizeCheckpoints(job.id)).map((c) => [c.checkpointId, c.state]));
      assert.deepEqual(states, { a: "COMPLETE", b: "INCOMPLETE", c: "WRITING" });
      assert.equal((await store.setPinned(job.id, "b", true))?.pinned, true);
      assert.equal((await store.setPinned(job.id, "b", false))?.pinned, false);
      assert.equal(await store.setPinned(job.id, "zz", true), null);
    }));

    test("a safetensors index completes its checkpoint once every shard is met", withStore(async (store) => {
      const { job } = await seed(store);
      await commitNew(store, job.id, "m/model-00001-of-00002.safetensors", 0, 100);
      const present = await store.setRequirements(job.id, "m", 0, ["m/model-00001-of-00002.safetensors", "m/model-00002-of-00002.safetensors"]);
      assert.deepEqual(present, [{ relativeName: "m/model-00001-of-00002.safetensors", sizeBytes: 100 }]);
      assert.equal((await store.meetRequirement(job.id, 0, "m/model-00001-of-00002.safetensors", 99))?.requirementsPending, 2, "wrong size");
      assert.equal((await store.meetRequirement(job.id, 0, "m/model-00001-of-00002.safetensors", 100))?.requirementsPending, 1);
      await commitNew(store, job.id, "m/model-00002-of-00002.safetensors", 0, 50);
      const done = await store.meetRequirement(job.id, 0, "m/model-00002-of-00002.safetensors", 50);
      assert.deepEqual([done?.state, done?.completedBy, done?.requirementsPending], ["COMPLETE", "safetensors-index", 0]);
      await commitNew(store, job.id, "m/model-00002-of-00002.safetensors", 0, 51);
      const reopened = await store.getCheckpoint(job.id, "m");
      assert.deepEqual([reopened?.state, reopened?.requirementsPending], ["WRITING", 1], "a changed shard is unmet again");
    }));

    test("aliases move with history; deletes skip aliased, pinned and WRITING checkpoints and happen once", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      for (const id of ["a", "b", "c", "d"]) {
        await commitNew(store, job.id, `${id}/x.bin`, 0, 5);
        await commitNew(store, job.id, `${id}/y.bin`, 1, 6);
        await store.completeCheckpoint(job.id, id, "explicit");
      }
      await commitNew(store, job.id, "root.txt");
      await commitNew(store, job.id, "w/x.bin");
      assert.equal(await store.setAlias(project.id, "prod", job.id, "nope"), "checkpoint-gone");
      assert.equal((await store.setAlias(project.id, "prod", job.id, "a")) !== "checkpoint-gone", true);
      await store.setAlias(project.id, "prod", job.id, "a"); // unchanged: no history entry
      await store.setAlias(project.id, "prod", job.id, "b");
      assert.deepEqual((await store.listAliases(project.id)).map((a) => [a.name, a.checkpointId]), [["prod", "b"]]);
      await store.setPinned(job.id, "c", true);
      assert.equal(await store.beginCheckpointDelete(job.id, "b"), null, "aliased");
      assert.equal(await store.beginCheckpointDelete(job.id, "c"), null, "pinned");
      assert.equal(await store.beginCheckpointDelete(job.id, "w"), null, "writing");
      const twice = await Promise.all([store.beginCheckpointDelete(job.id, "a"), store.beginCheckpointDelete(job.id, "a")]);
      assert.equal(twice.filter((r) => r !== null).length, 1, "one of two racing deletes begins");
      assert.deepEqual(twice.find((r) => r !== null)?.nodeRanks, [0, 1]);
      assert.equal(await store.getCheckpoint(job.id, "a"), null, "gone at once");
      assert.deepEqual((await store.listFiles(job.id, 0, 100)).filter((f) => f.relativeName.startsWith("a/")), []);
      assert.equal((await store.getJob(orgId, project.id, job.id))?.fileCount, 8);
      assert.equal(await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "a/x.bin", sizeBytes: 1, sha256: null }), "checkpoint-deleting");
      assert.deepEqual((await store.checkpointDeletesPending()).map((d) => [d.projectId, d.checkpointId, d.nodeRanks]), [[project.id, "a", [0, 1]]]);
      await store.finishCheckpointDelete(job.id, "a");
      assert.deepEqual(await store.checkpointDeletesPending(), []);
      const again = await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "a/x.bin", sizeBytes: 1, sha256: null });
      assert.ok(typeof again === "object" && again.file.seq === 10, "positions are never reused");
      assert.deepEqual((await store.summarizeCheckpoints(job.id)).find((c) => c.checkpointId === "a")?.state, "WRITING");
      assert.equal(await store.removeAlias(project.id, "prod"), true);
      assert.equal(await store.removeAlias(project.id, "prod"), false);
      assert.deepEqual((await store.aliasHistory(project.id, "prod")).map((h) => [h.version, h.checkpointId]), [[1, "a"], [2, "b"], [3, null]]);
    }));

    test("retention policies are stored per project", withStore(async (store) => {
      const { project } = await seed(store);
      assert.equal(await store.getRetentionPolicy(project.id), null);
      const policy = { keepLast: 3, keepBest: 1, metric: "eval_loss", mode: null, maxAgeSeconds: 86400, auto: true };
      await store.putRetentionPolicy(project.id, policy);
      assert.deepEqual(await store.getRetentionPolicy(project.id), policy);
    }));
  });

  describe(`${name}: operations (readiness, audit log)`, () => {
    test("ping answers; the audit log keeps entries in order with their time, and filters by time and count", withStore(async (store) => {
      await store.ping();
      const stats = store.poolStats();
      if (stats !== null) assert.ok(stats.total >= stats.idle && stats.waiting >= 0);
      assert.deepEqual(await store.listAudit({}), []);
      const first = await store.appendAudit({ action: "api_key.created", keyId: null, actor: "admin CLI (root@box)", orgId: "o1", subject: "k1", details: { organisation: "acme" } });
      await nextMillisecond();
      const second = await store.appendAudit({ action: "job.deleted", keyId: "k1", actor: "key k1", orgId: "o1", subject: "j1", details: { project_id: "p1", n: 2, flag: true, none: null } });
      assertTimestamps(first, ["at"]);
      assert.ok(second.id > first.id && second.at > first.at);
      const all = await store.listAudit({});
      assert.deepEqual(all, [first, second], "read back exactly as written");
      assert.deepEqual(await store.listAudit({ since: second.at }), [second]);
      assert.deepEqual(await store.listAudit({ limit: 1 }), [first]);
      assert.deepEqual(await store.listAudit({ since: new Date(Date.parse(second.at) + 1).toISOString() }), []);
    }));
  });

  describe(`${name}: file facts`, () => {
    const facts = (format: "safetensors" | "peft_adapter_config", parameterCount: number | null, detail: string | null = null) => ({
      format,
      error: null,
      parameterCount,
      tensorCount: parameterCount === null ? 0 : 1,
      summary: JSON.stringify({ n: parameterCount }),
      detail,
    });

    test("are committed with the file, replaced with it, and read back by checkpoint", withStore(async (store) => {
      const { job } = await seed(store);
      const commit = (nodeRank: number, relativeName: string, f: ReturnType<typeof facts> | null) =>
        store.commitFile({ jobId: job.id, nodeRank, relativeName, sizeBytes: 10, sha256: sha(), facts: f });
      await commit(0, "checkpoint-1/model.safetensors", facts("safetensors", 70_000_000_000, '{"tensors":[]}'));
      await commit(1, "checkpoint-1/model.safetensors", facts("safetensors", 5));
      await commit(0, "checkpoint-1/adapter_config.json", facts("peft_adapter_config", null));
      await commit(0, "checkpoint-10/model.safetensors", facts("safetensors", 7));
      await commit(0, "checkpoint-1/notes.txt", null);
      await commit(0, "root.safetensors", facts("safetensors", 3));

      const listed = await store.listFileFacts(job.id, ["safetensors"]);
      assert.deepEqual(
        listed.map((r) => [r.checkpointId, r.nodeRank, r.relativeName, r.parameterCount]),
        [
          ["checkpoint-1", 0, "checkpoint-1/model.safetensors", 70_000_000_000],
          ["checkpoint-10", 0, "checkpoint-10/model.safetensors", 7],
          [null, 0, "root.safetensors", 3],
          ["checkpoint-1", 1, "checkpoint-1/model.safetensors", 5],
        ],
      );
      assert.equal(await store.factsDetail(job.id, 0, "checkpoint-1/model.safetensors"), '{"tensors":[]}');
      assert.equal(await store.factsDetail(job.id, 0, "checkpoint-1/notes.txt"), null);

      const inCheckpoint = await store.listCheckpointFilesWithFacts(job.id, "checkpoint-1");
      assert.deepEqual(
        inCheckpoint.map((r) => [r.file.nodeRank, r.file.relativeName, r.facts?.format ?? null]),
        [
          [0, "checkpoint-1/adapter_config.json", "peft_adapter_config"],
          [0, "checkpoint-1/model.safetensors", "safetensors"],
          [0, "checkpoint-1/notes.txt", null],
          [1, "checkpoint-1/model.safetensors", "safetensors"],
        ],
      );
      // Root files belong to no checkpoint (domain/checkpoint-id.ts): "." names none.
      assert.deepEqual(await store.listCheckpointFilesWithFacts(job.id, "."), []);

      // A replacement carries its own facts; one without facts leaves none of the old ones.
      await commit(0, "checkpoint-1/model.safetensors", facts("safetensors", 9));
      await commit(1, "checkpoint-1/model.safetensors", null);
      assert.deepEqual(
        (await store.listFileFacts(job.id, ["safetensors"])).filter((r) => r.checkpointId === "checkpoint-1").map((r) => [r.nodeRank, r.parameterCount]),
        [[0, 9]],
      );
      assert.equal(await store.factsDetail(job.id, 0, "checkpoint-1/model.safetensors"), null);
    }));

    test("go when their job is purged", withStore(async (store) => {
      const { orgId, project, job } = await seed(store);
      await store.commitFile({ jobId: job.id, nodeRank: 0, relativeName: "c/m.safetensors", sizeBytes: 1, sha256: null, facts: facts("safetensors", 1) });
      assert.ok(await store.markJobDeleted(orgId, project.id, job.id));
      await store.purgeJob(job.id);
      assert.deepEqual(await store.listFileFacts(job.id, ["safetensors"]), []);
    }));
  });
}
