// autocast.ts: bf16 mixed precision on CUDA. Inside autocast(fn), matrix products of f32 CUDA
// tensors (matmul, linear, and their gradients) run as bf16 GEMMs with f32 accumulation and f32
// outputs, like PyTorch's autocast for matmul-class ops; every other op, the parameters (the f32
// master weights), the gradients and the optimizer state stay f32. A GEMM recorded inside
// autocast runs its backward GEMMs in bf16 too, wherever backward() is called. CPU tensors are
// unaffected (the CPU has no bf16 kernels).

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
