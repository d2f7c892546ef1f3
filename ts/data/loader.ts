// loader.ts: the DataLoader: seeded shuffling that depends only on (seed, epoch), batching with
// dropLast, decode + augmentation (TransformSpec[] or a function), and optional prefetching of the
// next batch in a worker thread (buffers transferred both ways) with a synchronous fallback.
// Tensors are created on the main thread only. `position` says where to resume mid-epoch.
import { Worker } from 'node:worker_threads';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor.js';
import { type BatchJob, type BatchResult, processBatch } from './batch.js';
import { collate, type Dataset, type SampleData } from './dataset.js';
import { Rng } from './rng.js';
import { type TransformFn, type TransformSpec, transformedShape } from './transforms.js';

export interface DataLoaderOptions {
  batchSize: number;
  /** Shuffle each epoch with an order that depends only on (seed, epoch). Default false. */
  shuffle?: boolean;
  /** Seed of the shuffle and of the augmentations. Default 0. */
  seed?: number;
  /** Drop the last batch when it is smaller than batchSize. Default false. */
  dropLast?: boolean;
  /**
   * Decode + augmentation per sample. A TransformSpec[] can run in the prefetch worker; a function
   * always runs on the main thread.
   */
  transform?: TransformSpec[] | TransformFn;
  /** Prepare the next batch in a worker thread while the current one is used. Default false. */
  prefetch?: boolean;
}

export interface Batch {
  /** f32 (B, ...sampleShape) (i32 / f64 when the dataset holds Int32Array / Float64Array and there is no transform). */
  x: Tensor;
  /** i32 (B). */
  y: Tensor;
  epoch: number;
  /** The batch's index in the epoch. */
  index: number;
  /** The dataset indices in the batch. */
  indices: Int32Array;
  /** Disposes x and y. */
  dispose(): void;
}

/** The next batch the loader will produce: resume with loader.resume(position). */
export interface LoaderPosition {
  epoch: number;
  batch: number;
}

/** A batch ready for tensor creation. */
interface Prepared {
  res: BatchResult;
  y: Int32Array;
  indices: Int32Array;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: boolean;
  private readonly transform: TransformSpec[] | TransformFn | null;
  private pos: LoaderPosition = { epoch: 0, batch: 0 };
  private worker: PrefetchWorker | null = null;
  private note: string | null = null;
  private nextId = 1;

  constructor(
    readonly dataset: Dataset,
    opts: DataLoaderOptions,
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize <= 0) {
      throw new RangeError(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    const seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(seed)) throw new TypeError(`DataLoader: seed must be an integer, got ${seed}`);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.seed = seed;
    this.dropLast = opts.dropLast ?? false;
    this.prefetch = opts.prefetch ?? false;
    this.transform = opts.transform ?? null;
    if (Array.isArray(this.transform)) transformedShape(this.transform, dataset.sampleShape);
    else if (this.transform !== null && typeof this.transform !== 'function') {
      throw new TypeError('DataLoader: transform must be a TransformSpec[] or a function');
    }
  }

  /** Batches per epoch. */
  get numBatches(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The next batch to be produced (after the last batch of epoch e: epoch e + 1, batch 0). */
  get position(): LoaderPosition {
    const { epoch, batch } = this.pos;
    return batch >= this.numBatches ? { epoch: epoch + 1, batch: 0 } : { epoch, batch };
  }

  /** How batches are prepared: 'worker' once a worker runs, else 'sync'; `prefetchNote` says why not. */
  get prefetchMode(): 'worker' | 'sync' {
    return this.worker?.alive ? 'worker' : 'sync';
  }
  get prefetchNote(): string | null {
    return this.note;
  }

  /** The order of dataset indices in `epoch` (a seeded permutation of (seed, epoch) when shuffling). */
  order(epoch: number): Int32Array {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`DataLoader: bad epoch ${epoch}`);
    const n = this.dataset.length;
    if (!this.shuffle) return Int32Array.from({ length: n }, (_, i) => i);
    return new Rng([this.seed, epoch, 0x5f1]).permutation(n);
  }

  /** Iterates one epoch from `startBatch` (default 0). Dispose each batch's x and y when done. */
  async *epoch(e: number, opts: { startBatch?: number } = {}): AsyncGenerator<Batch, void, undefined> {
    const order = this.order(e);
    const nb = this.numBatches;
    const start = opts.startBatch ?? 0;
    if (!Number.isInteger(start) || start < 0 || start > nb) {
      throw new RangeError(`DataLoader: startBatch ${start} out of range [0, ${nb}]`);
    }
    this.pos = { epoch: e, batch: start };
    const useWorker = this.prefetch && typeof this.transform !== 'function' ? this.ensureWorker() : null;
    if (this.prefetch && typeof this.transform === 'function') {
      this.note = 'a transform function cannot run in a worker; batches are prepared on the main thread';
    }
    const produce = (b: number): Promise<Prepared> => {
      const indices = order.slice(b * this.batchSize, Math.min((b + 1) * this.batchSize, order.length));
      return this.prepare(useWorker, indices, e, b * this.batchSize);
    };
    let pending: Promise<Prepared> | null = start < nb ? produce(start) : null;
    try {
      for (let b = start; b < nb; b++) {
        const cur = await (pending as Promise<Prepared>);
        pending = null;
        if (useWorker && b + 1 < nb) pending = produce(b + 1);
        const batch = this.toTensors(cur, e, b);
        this.pos = { epoch: e, batch: b + 1 };
        yield batch;
        if (!useWorker && b + 1 < nb) pending = produce(b + 1);
      }
    } finally {
      pending?.catch(() => {});
    }
  }

  /** Continues from a saved position (default: the current one). */
  resume(pos: LoaderPosition = this.position): AsyncGenerator<Batch, void, undefined> {
    return this.epoch(pos.epoch, { startBatch: pos.batch });
  }

  /** Stops the prefetch worker (a new one starts when needed). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    await w?.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private ensureWorker(): PrefetchWorker | null {
    if (this.worker?.alive) return this.worker;
    // CRATE_DATA_WORKERS=0 never starts worker threads.
    if (process.env.CRATE_DATA_WORKERS === '0') {
      this.note = 'worker threads disabled by CRATE_DATA_WORKERS=0';
      return null;
    }
    try {
      this.worker = PrefetchWorker.start();
      return this.worker;
    } catch (e) {
      this.note = `could not start a worker thread (${(e as Error).message}); batches are prepared on the main thread`;
      return null;
    }
  }

  private async prepare(
    worker: PrefetchWorker | null,
    indices: Int32Array,
    epoch: number,
    position: number,
  ): Promise<Prepared> {
    const raw = await collate(this.dataset, indices);
    const job: BatchJob = {
      id: this.nextId++,
      x: raw.x,
      n: indices.length,
      sampleShape: raw.sampleShape,
      transform: Array.isArray(this.transform) ? this.transform : null,
      seed: this.seed,
      epoch,
      position,
    };
    if (worker?.alive) {
      try {
        return { res: await worker.run(job), y: raw.y, indices };
      } catch (e) {
        if (!(e instanceof WorkerStartError)) throw e;
        this.note = `${e.message}; batches are prepared on the main thread`;
        // The job's buffer may have been transferred: collate again.
        job.x = (await collate(this.dataset, indices)).x;
      }
    }
    const fn = typeof this.transform === 'function' ? this.transform : undefined;
    return { res: processBatch(job, fn), y: raw.y, indices };
  }

  private toTensors({ res, y, indices }: Prepared, epoch: number, index: number): Batch {
    const x = tensor(res.x, { shape: [indices.length, ...res.sampleShape] });
    let yt: Tensor;
    try {
      yt = tensor(y, { dtype: 'i32' });
    } catch (e) {
      x.dispose();
      throw e;
    }
    return {
      x,
      y: yt,
      epoch,
      index,
      indices,
      dispose() {
        x.dispose();
        yt.dispose();
      },
    };
  }
}

// ------------------------------------------------------------------ the worker thread
class WorkerStartError extends Error {}

/**
 * When the library runs from its TypeScript sources (tests), the worker loads them through a
 * module hook that transpiles .ts with the `typescript` package; the built library loads .js.
 */
const TS_HOOKS = `
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
let ts;
export async function initialize(d) { ts = createRequire(d.base)('typescript'); }
export async function resolve(spec, ctx, next) {
  try { return await next(spec, ctx); } catch (e) {
    if (spec.endsWith('.js') && ctx.parentURL && ctx.parentURL.endsWith('.ts')) return next(spec.slice(0, -3) + '.ts', ctx);
    throw e;
  }
}
export async function load(url, ctx, next) {
  if (!url.endsWith('.ts')) return next(url, ctx);
  const file = fileURLToPath(url);
  const out = ts.transpileModule(readFileSync(file, 'utf8'), { fileName: file, compilerOptions: {
    module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}`;
const TS_BOOT = `
const { register } = require('node:module');
const { workerData } = require('node:worker_threads');
register('data:text/javascript,' + encodeURIComponent(workerData.hooks), { data: { base: workerData.base } });
import(workerData.entry).catch((e) => { setImmediate(() => { throw e; }); });
`;

type Pending = { resolve: (r: BatchResult) => void; reject: (e: Error) => void };

class PrefetchWorker {
  alive = true;
  private readonly pending = new Map<number, Pending>();
  private readyFlag = false;

  private constructor(private readonly worker: Worker) {
    worker.unref();
    worker.on('message', (m: { type: string; result?: BatchResult; id?: number; message?: string }) => {
      if (m.type === 'ready') {
        this.readyFlag = true;
      } else if (m.type === 'done' && m.result) {
        this.settle(m.result.id, (p) => p.resolve(m.result as BatchResult));
      } else if (m.type === 'failed') {
        this.settle(m.id as number, (p) => p.reject(new Error(`DataLoader worker: ${m.message}`)));
      }
    });
    const die = (why: string): void => {
      if (!this.alive) return;
      this.alive = false;
      const err = this.readyFlag
        ? new Error(`DataLoader worker died: ${why}`)
        : new WorkerStartError(`the prefetch worker failed to start (${why})`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', (e) => die(e.message));
    worker.on('exit', (code) => die(`exit code ${code}`));
  }

  static start(): PrefetchWorker {
    const fromSource = import.meta.url.endsWith('.ts');
    const entry = new URL(fromSource ? './prefetch_worker.ts' : './prefetch_worker.js', import.meta.url);
    const w = fromSource
      ? new Worker(TS_BOOT, {
          eval: true,
          workerData: { entry: entry.href, hooks: TS_HOOKS, base: import.meta.url },
        })
      : new Worker(entry);
    return new PrefetchWorker(w);
  }

  private settle(id: number, f: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    f(p);
  }

  run(job: BatchJob): Promise<BatchResult> {
    if (!this.alive) return Promise.reject(new WorkerStartError('the prefetch worker is not running'));
    return new Promise<BatchResult>((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject });
      // Keep the process alive while a batch is in flight.
      this.worker.ref();
      const x = ownBuffer(job.x);
      this.worker.postMessage({ ...job, x }, [x.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.alive = false;
    for (const p of this.pending.values()) p.reject(new Error('DataLoader closed'));
    this.pending.clear();
    await this.worker.terminate();
  }
}

/** A typed array that owns its whole ArrayBuffer (so transferring it moves nothing else). */
function ownBuffer(x: SampleData): SampleData {
  if (x.byteOffset === 0 && x.byteLength === x.buffer.byteLength && x.buffer instanceof ArrayBuffer) return x;
  return x.slice() as SampleData;
}
