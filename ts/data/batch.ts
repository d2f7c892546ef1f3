// batch.ts: the decode + augment step of the DataLoader for one raw batch. The same function runs
// on the main thread (synchronous fallback) and in the prefetch worker, and each sample's
// augmentation draws from sampleRng(seed, epoch, position), so both give identical batches.
import type { SampleData } from './dataset.js';
import { sampleRng } from './rng.js';
import { type TransformFn, type TransformSpec, transformBatch } from './transforms.js';

/** Typed arrays the tensor layer takes as they are. */
export type BatchData = Float32Array | Float64Array | Int32Array;

export interface BatchJob {
  id: number;
  x: SampleData;
  n: number;
  sampleShape: number[];
  transform: TransformSpec[] | null;
  seed: number;
  epoch: number;
  /** Position in the epoch's order of the batch's first sample. */
  position: number;
}

export interface BatchResult {
  id: number;
  x: BatchData;
  sampleShape: number[];
}

/**
 * Decodes and augments: with a transform, samples are read by value into float32 and run through
 * it; without, Float32/Float64/Int32 data pass through and other integer types become float32.
 */
export function processBatch(job: BatchJob, fn?: TransformFn): BatchResult {
  const transform = fn ?? job.transform;
  if (transform && (typeof transform === 'function' || transform.length > 0)) {
    const r = transformBatch(transform, job.x, job.n, job.sampleShape, (k) =>
      sampleRng(job.seed, job.epoch, job.position + k),
    );
    return { id: job.id, x: r.data, sampleShape: r.sampleShape };
  }
  const x = job.x;
  const out: BatchData =
    x instanceof Float32Array || x instanceof Float64Array || x instanceof Int32Array ? x : Float32Array.from(x);
  return { id: job.id, x: out, sampleShape: job.sampleShape };
}
