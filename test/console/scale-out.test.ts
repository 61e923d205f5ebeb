// The console on PostgreSQL + S3 (Ceph RGW): same pages, presigned URLs that point at the store.
import { scaleOutServicesReady } from "../harness/scale-out.js";

if (await scaleOutServicesReady("console/scale-out")) {
  process.env.CKPT_TEST_BACKEND = "postgres-s3";
  await import("./scale-out-suite.js");
}
