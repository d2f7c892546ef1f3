// clip.ts: gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: the norm over all
// gradients together; when it exceeds maxNorm every gradient is scaled in place by
// maxNorm / (norm + 1e-6). A non-finite norm is returned without touching the gradients.
import { noGrad } from '../autograd.js';
import { tidy } from '../memory.js';
import { abs, add, affine, maximum, square } from '../ops/elementwise.js';
import { max, sum } from '../ops/reduce.js';
import type { Tensor } from '../tensor.js';

/**
 * Clips the gradients of `params` (those without a gradient are skipped) to a total norm of at
 * most maxNorm. normType is 2 (default) or Infinity. Returns the total norm before clipping.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, opts: { normType?: number } = {}): number {
  const normType = opts.normType ?? 2;
  if (!(maxNorm >= 0)) throw new RangeError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  if (normType !== 2 && normType !== Number.POSITIVE_INFINITY) {
    throw new RangeError(`clipGradNorm: normType must be 2 or Infinity, got ${normType}`);
  }
  const grads: Tensor[] = [];
  for (const p of params) if (p.grad && !p.grad.isDisposed) grads.push(p.grad);
  if (grads.length === 0) return 0;
  return noGrad(() =>
    tidy(() => {
      // One reduction per gradient, accumulated in f64 (on the CPU for CUDA gradients).
      let acc: Tensor | null = null;
      for (const g of grads) {
        if (g.numel === 0) continue;
        const r = normType === 2 ? sum(square(g)) : max(abs(g));
        // f64 lives on the CPU only: a CUDA partial (one scalar) is read over first
        const rc = r.device === 'cpu' ? r : r.to('cpu');
        const r64 = rc.dtype === 'f64' ? rc : rc.to('f64');
        acc = acc === null ? r64 : normType === 2 ? add(acc, r64) : maximum(acc, r64);
      }
      const total = acc === null ? 0 : acc.item();
      const norm = normType === 2 ? Math.sqrt(total) : total;
      if (!Number.isFinite(norm)) return norm;
      const coef = maxNorm / (norm + 1e-6);
      if (coef < 1) for (const g of grads) g.copy_(affine(g, coef, 0));
      return norm;
    }),
  );
}
