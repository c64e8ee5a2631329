import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { StateStore } from "@idpo/bus";
import { type Job, JobSchema } from "@idpo/proto";

/** A stored job with the revision its compare-and-set writes must name. */
export interface StoredJob {
  job: Job;
  revision: number;
}

/** KV key of a job: `jobs.<job_id>` (the mesh plan's naming). */
export function jobKey(jobId: string): string {
  return `jobs.${jobId}`;
}

/** Jobs in the KV store, as binary Job protos, written with compare-and-set. */
export class JobStore {
  constructor(private readonly state: StateStore) {}

  /** The job and its revision, or undefined. */
  async get(jobId: string): Promise<StoredJob | undefined> {
    const e = await this.state.get(jobKey(jobId));
    if (!e) return undefined;
    return { job: decodeJob(e.value, e.key), revision: e.revision };
  }

  /** Creates a job; throws RevisionConflictError if the id is taken. Returns the revision. */
  create(job: Job): Promise<number> {
    return this.state.create(jobKey(job.jobId), toBinary(JobSchema, job));
  }

  /** Writes a job only if it is still at `revision`; throws RevisionConflictError otherwise. */
  update(job: Job, revision: number): Promise<number> {
    return this.state.update(jobKey(job.jobId), toBinary(JobSchema, job), revision);
  }

  /** Every stored job (undecodable values are skipped and reported through `onBad`). */
  async list(onBad?: (key: string, err: Error) => void): Promise<StoredJob[]> {
    const out: StoredJob[] = [];
    for (const key of await this.state.keys("jobs.")) {
      const e = await this.state.get(key);
      if (!e) continue;
      try {
        out.push({ job: decodeJob(e.value, key), revision: e.revision });
      } catch (err) {
        onBad?.(key, err as Error);
      }
    }
    return out;
  }
}

function decodeJob(bytes: Uint8Array, key: string): Job {
  try {
    return fromBinary(JobSchema, bytes);
  } catch (e) {
    throw new Error(`state key ${key} does not hold a Job (${(e as Error).message})`);
  }
}
