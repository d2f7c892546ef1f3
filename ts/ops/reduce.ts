// reduce.ts: sum / mean / max / min / var / std over axes, with keepdim. sum and max are
// native reductions with hand-written backward; mean, var and std are composites.
import { record } from '../autograd.js';
import { native } from '../native.js';
import { empty, type Tensor, viewAs } from '../tensor.js';
import { affine, div, eq, mul, sqrt, square, sub } from './elementwise.js';
import { expand } from './shape.js';
import { checkTensor, normAxes } from './util.js';

const REDUCE = { sum: 0, max: 1, min: 2 } as const;

function keptShape(shape: readonly number[], axes: number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((s, i) => {
    if (!axes.includes(i)) out.push(s);
    else if (keepdim) out.push(1);
  });
  return out;
}

function reduceRaw(op: string, code: number, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const out = empty(keptShape(x.shape, axes, keepdim), x.dtype, x.device);
  const reduced = x.shape.map((_, i) => (axes.includes(i) ? 1 : 0));
  if (x.ndim === 0) {
    native.stridedCopy(x._h(op), 0, [], out._h(op), 0, [], [], false);
    return out;
  }
  if (code !== REDUCE.sum && axes.some((a) => x.shape[a] === 0)) {
    throw new Error(`${op}: cannot reduce over an empty axis (shape [${x.shape.join(', ')}])`);
  }
  native.reduce(code, x._h(op), [...x.shape], reduced, out._h(op));
  return out;
}

/** @internal Sum without recording (used by gradient code). */
export function reduceSum(x: Tensor, axes: number[], keepdim = false): Tensor {
  return reduceRaw('sum', REDUCE.sum, x, axes, keepdim);
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  checkTensor('sum', x, 'x');
  const ax = normAxes('sum', axes, x.ndim);
  const out = reduceRaw('sum', REDUCE.sum, x, ax, keepdim);
  return record(out, 'sum', [x], (g) => {
    const gk = viewAs(g, keptShape(x.shape, ax, true));
    const r = expand(gk, [...x.shape]);
    gk.dispose();
    return [r];
  });
}

function extreme(name: 'max' | 'min', x: Tensor, axes: number | number[] | undefined, keepdim: boolean): Tensor {
  checkTensor(name, x, 'x');
  const ax = normAxes(name, axes, x.ndim);
  const out = reduceRaw(name, REDUCE[name], x, ax, keepdim);
  if (x.dtype === 'i32') return out;
  return record(
    out,
    name,
    [x],
    (g, [sx, so]) => {
      // Ties share the gradient equally (like torch.amax).
      const ks = keptShape(x.shape, ax, true);
      const ok = viewAs(so, ks);
      const mask = eq(sx, ok);
      const count = reduceSum(mask, ax, true);
      const gk = viewAs(g, ks);
      const share = div(gk, count);
      const r = mul(mask, share);
      for (const t of [ok, mask, count, gk, share]) t.dispose();
      return [r];
    },
    [x, out],
  );
}
/** Maximum over `axes`; the gradient is shared equally among tied maxima. */
export const max = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extreme('max', x, axes, keepdim);
export const min = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extreme('min', x, axes, keepdim);

function countOf(x: Tensor, ax: number[]): number {
  return ax.reduce((n, a) => n * (x.shape[a] as number), 1);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  checkTensor('mean', x, 'x');
  const ax = normAxes('mean', axes, x.ndim);
  const s = sum(x, ax, keepdim);
  const r = affine(s, 1 / countOf(x, ax), 0);
  s.dispose();
  return r;
}

/** Variance over `axes` with Bessel's correction by default (correction = 1, like torch.var). */
export function variance(
  x: Tensor,
  axes?: number | number[],
  opts: { keepdim?: boolean; correction?: number } = {},
): Tensor {
  checkTensor('var', x, 'x');
  const ax = normAxes('var', axes, x.ndim);
  const n = countOf(x, ax) - (opts.correction ?? 1);
  const m = mean(x, ax, true);
  const d = sub(x, m);
  const d2 = square(d);
  const s = sum(d2, ax, opts.keepdim ?? false);
  const r = affine(s, 1 / Math.max(n, 0), 0);
  for (const t of [m, d, d2, s]) t.dispose();
  return r;
}

export function std(
  x: Tensor,
  axes?: number | number[],
  opts: { keepdim?: boolean; correction?: number } = {},
): Tensor {
  const v = variance(x, axes, opts);
  const r = sqrt(v);
  v.dispose();
  return r;
}
