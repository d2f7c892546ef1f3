// prefetch_worker.ts: the DataLoader's worker thread. It receives raw batches (their buffers
// transferred, not copied), decodes and augments them with processBatch and transfers the
// float32 result back. It loads no native code and creates no tensors.
import { parentPort } from 'node:worker_threads';
import { type BatchJob, processBatch } from './batch.js';

if (parentPort) {
  const port = parentPort;
  port.on('message', (job: BatchJob) => {
    try {
      const r = processBatch(job);
      const transfer = r.x.buffer instanceof ArrayBuffer ? [r.x.buffer] : [];
      port.postMessage({ type: 'done', result: r }, transfer);
    } catch (e) {
      port.postMessage({ type: 'failed', id: job.id, message: (e as Error)?.message ?? String(e) });
    }
  });
  port.postMessage({ type: 'ready' });
}
