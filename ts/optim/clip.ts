// clip.ts: gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: the norm over all
// gradients together; when it exceeds maxNorm every gradient is scaled in place by
// maxNorm / (norm + 1e-6). A non-finite norm is returned without touching the gradients.
import { noGrad } from '../autograd.js';
import { tidy } from '../memory.js';
import { abs, add, affine, cast, maximum, square } from '../ops/elementwise.js';
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
      // One reduction per gradient. CPU partials accumulate in f64; CUDA partials accumulate on
      // the device in f32 (bf16 gradients widened first) and are read once: one stream sync per
      // call, not one per parameter.
      let acc: Tensor | null = null;
      let accDevice: Tensor | null = null;
      const combine = (a: Tensor | null, r: Tensor) => (a === null ? r : normType === 2 ? add(a, r) : maximum(a, r));
      for (const g of grads) {
        if (g.numel === 0) continue;
        const gw = g.dtype === 'bf16' ? cast(g, 'f32') : g;
        const r = normType === 2 ? sum(square(gw)) : max(abs(gw));
        if (r.device !== 'cpu') accDevice = combine(accDevice, r);
        else acc = combine(acc, r.dtype === 'f64' ? r : r.to('f64'));
      }
      if (accDevice !== null) acc = combine(acc, accDevice.to('cpu').to('f64'));
      const total = acc === null ? 0 : acc.item();
      const norm = normType === 2 ? Math.sqrt(total) : total;
      if (!Number.isFinite(norm)) return norm;
      const coef = maxNorm / (norm + 1e-6);
      if (coef < 1) for (const g of grads) g.copy_(affine(g, coef, 0));
      return norm;
    }),
  );
}
