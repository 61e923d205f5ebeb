import { badRequest, conflict, insufficientStorage } from "./errors.js";
import { BlobIntegrityError, BlobNoSpaceError, BlobPathConflictError } from "../stores/blobs/store.js";

/** Maps the blob stores' failures to the API's: integrity 400, path conflict 409, disk full 507. */
export async function translateBlobErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof BlobIntegrityError) throw badRequest(err.message);
    if (err instanceof BlobPathConflictError) throw conflict(err.message);
    if (err instanceof BlobNoSpaceError) throw insufficientStorage(err.message);
    throw err;
  }
}
