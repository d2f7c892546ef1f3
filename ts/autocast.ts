// autocast.ts: bf16 mixed precision on CUDA. Inside autocast(fn), the matmul-class ops on f32 CUDA
// tensors run in bf16 with f32 accumulation and give f32 results, like PyTorch's autocast: matmul
// and linear (bf16 GEMMs, f32 out) and their gradients, mssa (the bf16 tensor-core attention
// kernels, as PyTorch autocasts SDPA) and the ISTA ops (bf16 GEMMs inside), both on bf16 copies
// of their inputs with recorded casts so gradients reach the f32 tensors. Every other op (TSSA,
// the coding rate, the row ops: memory-bound or f64 inside), the parameters (the f32 master
// weights), the gradients and the optimizer state stay f32. An op recorded inside autocast runs
// its backward in bf16 too, wherever backward() is called. CPU tensors are unaffected.

let depth = 0;

/** Runs fn with bf16 autocast on; nests; returns fn's result (await it for async fns). */
export function autocast<T>(fn: () => T, opts: { dtype?: 'bf16' } = {}): T {
  if (opts.dtype !== undefined && opts.dtype !== 'bf16') {
    throw new TypeError(`autocast: dtype must be 'bf16', got ${String(opts.dtype)}`);
  }
  depth++;
  try {
    const r = fn();
    if (r instanceof Promise) {
      return r.finally(() => {
        depth--;
      }) as T;
    }
    depth--;
    return r;
  } catch (e) {
    depth--;
    throw e;
  }
}

/** Whether autocast is on for the current synchronous scope. */
export function isAutocast(): boolean {
  return depth > 0;
}
