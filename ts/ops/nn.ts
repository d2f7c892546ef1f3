// nn.ts: fused neural-net ops: softmax / log-softmax, layerNorm, crossEntropy (class indices,
// label smoothing, ignore index) and dropout, each with a native backward.
import { record } from '../autograd.js';
import { native } from '../native.js';
import { empty, formatShape, numelOf, type Tensor } from '../tensor.js';
import { bernoulli, full, scalar } from './creation.js';
import { affine, cast, div, maximum, mul, ne } from './elementwise.js';
import { sum } from './reduce.js';
import { permute } from './shape.js';
import { checkFloat, checkNumber, checkSame, checkTensor, normAxis } from './util.js';

function softmaxImpl(op: string, x: Tensor, axis: number, log: boolean): Tensor {
  checkTensor(op, x, 'x');
  checkFloat(op, x, 'x');
  if (x.ndim === 0) throw new Error(`${op}: needs at least one dim`);
  const a = normAxis(op, axis, x.ndim);
  if (a !== x.ndim - 1) {
    const dims = Array.from({ length: x.ndim }, (_, i) => i);
    dims[a] = x.ndim - 1;
    dims[x.ndim - 1] = a;
    const xt = permute(x, dims);
    const yt = softmaxImpl(op, xt, -1, log);
    const y = permute(yt, dims);
    xt.dispose();
    yt.dispose();
    return y;
  }
  const cols = x.shape[a] as number;
  const rows = cols === 0 ? 0 : x.numel / cols;
  const y = empty(x.shape, x.dtype, x.device);
  native.softmax(x._h(op), y._h(op), rows, cols, log);
  return record(
    y,
    op,
    [x],
    (g, [sy]) => {
      const dx = empty(x.shape, x.dtype, x.device);
      native.softmaxBackward(sy._h(op), g._h(op), dx._h(op), rows, cols, log);
      return [dx];
    },
    [y],
  );
}

/** Softmax along `axis` (default the last). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl('softmax', x, axis, false);
}
/** log(softmax(x)) computed stably. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl('logSoftmax', x, axis, true);
}

/** LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias. */
export function layerNorm(x: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const op = 'layerNorm';
  checkTensor(op, x, 'x');
  checkFloat(op, x, 'x');
  checkNumber(op, eps, 'eps');
  if (!(eps >= 0)) throw new RangeError(`${op}: eps must be >= 0, got ${eps}`);
  if (x.ndim === 0) throw new Error(`${op}: x must have at least one dim`);
  const cols = x.shape[x.ndim - 1] as number;
  for (const [t, name] of [
    [weight, 'weight'],
    [bias, 'bias'],
  ] as const) {
    if (t === null || t === undefined) continue;
    checkTensor(op, t, name);
    checkSame(op, x, t, ['x', name]);
    if (t.ndim !== 1 || t.shape[0] !== cols) {
      throw new Error(
        `${op}: ${name} must have shape [${cols}] to match x ${formatShape(x.shape)}, got ${formatShape(t.shape)}`,
      );
    }
  }
  const rows = cols === 0 ? 0 : x.numel / cols;
  const y = empty(x.shape, x.dtype, x.device);
  // bf16 x: the saved statistics stay f32 (a bf16 rstd would cost the backward 8 bits)
  const statDtype = statsDtype(x);
  const mean = empty([rows], statDtype, x.device);
  const rstd = empty([rows], statDtype, x.device);
  native.layerNorm(
    x._h(op),
    weight?._h(op) ?? null,
    bias?._h(op) ?? null,
    y._h(op),
    mean._h(op),
    rstd._h(op),
    rows,
    cols,
    eps,
  );
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record<Tensor[]>(
    y,
    op,
    inputs,
    (g, saved) => {
      const [sx, sm, sr, sw] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const dx = empty(x.shape, x.dtype, x.device);
      const dw = weight?.requiresGrad ? empty([cols], x.dtype, x.device, true) : null;
      const db = bias?.requiresGrad ? empty([cols], x.dtype, x.device, true) : null;
      native.layerNormBackward(
        sx._h(op),
        sw ? sw._h(op) : null,
        sm._h(op),
        sr._h(op),
        g._h(op),
        dx._h(op),
        dw?._h(op) ?? null,
        db?._h(op) ?? null,
        rows,
        cols,
      );
      const r: (Tensor | null)[] = [x.requiresGrad ? dx : null];
      if (!x.requiresGrad) dx.dispose();
      if (weight) r.push(dw);
      if (bias) r.push(db);
      return r;
    },
    weight ? [x, mean, rstd, weight] : [x, mean, rstd],
    [mean, rstd],
  );
}

/** dtype of the saved row statistics (LayerNorm mean / rstd, cross-entropy lse) and of the
 * cross-entropy loss: f32 for bf16 inputs, else the input's dtype. */
function statsDtype(x: Tensor): Tensor['dtype'] {
  return x.dtype === 'bf16' ? 'f32' : x.dtype;
}

export interface CrossEntropyOptions {
  labelSmoothing?: number;
  ignoreIndex?: number;
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of logits (N, C) (or (..., C)) against i32 class indices (N) (or (...)).
 * Label smoothing ε mixes the one-hot target with the uniform (PyTorch semantics); targets equal
 * to ignoreIndex (default -100) contribute nothing and are excluded from the mean.
 * bf16 logits (cuda) give an f32 loss (every reduction; PyTorch would return bf16) and a bf16
 * gradient.
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  checkTensor(op, logits, 'logits');
  checkTensor(op, target, 'target');
  checkFloat(op, logits, 'logits');
  if (target.dtype !== 'i32') throw new TypeError(`${op}: target must be i32 class indices, got ${target.dtype}`);
  if (logits.ndim < 1) throw new Error(`${op}: logits must be at least 1-D`);
  const classes = logits.shape[logits.ndim - 1] as number;
  const lead = logits.shape.slice(0, -1);
  if (target.ndim !== lead.length || target.shape.some((s, i) => s !== lead[i])) {
    throw new Error(
      `${op}: target shape ${formatShape(target.shape)} must equal logits shape without the class dim, ${formatShape(lead)}`,
    );
  }
  const smoothing = opts.labelSmoothing ?? 0;
  if (!(smoothing >= 0 && smoothing <= 1))
    throw new RangeError(`${op}: labelSmoothing must be in [0, 1], got ${smoothing}`);
  const ignore = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new Error(`${op}: reduction must be mean, sum or none`);
  const rows = numelOf(lead);
  // bf16 logits: the loss (every reduction) and the saved lse are f32; the gradient is bf16
  const lossDtype = statsDtype(logits);
  const lossRow = empty(lead, lossDtype, logits.device);
  const lse = empty([rows], lossDtype, logits.device);
  // cuda: the loss sum and the row count stay on the device (no stream sync inside the step); the
  // cpu sums the row losses in f64 on the host (free there)
  const onDevice = logits.device !== 'cpu';
  const counted = native.crossEntropy(
    logits._h(op),
    target._h(op),
    lossRow._h(op),
    lse._h(op),
    rows,
    classes,
    smoothing,
    ignore,
    !onDevice,
  );
  let out: Tensor;
  let scale = 1; // cpu: 1/count (mean) or 1
  let rowScale: Tensor | null = null; // cuda (mean, sum): the per-row weight of g, a device scalar
  if (reduction === 'none') {
    out = lossRow;
  } else if (onDevice) {
    out = sum(lossRow);
    lossRow.dispose();
    if (reduction === 'mean') {
      const isCounted = ne(target, ignore);
      const flags = cast(isCounted, lossDtype);
      const count = sum(flags);
      const total = out;
      out = div(total, count); // every row ignored: 0 / 0 = NaN, as on the cpu
      const one = scalar(1, { device: logits.device, dtype: lossDtype });
      const countAtLeast1 = maximum(count, one);
      rowScale = div(one, countAtLeast1);
      for (const t of [isCounted, flags, count, total, one, countAtLeast1]) t.dispose();
    } else rowScale = scalar(1, { device: logits.device, dtype: lossDtype });
  } else {
    const d = lossRow.dataSync();
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[i] as number;
    scale = reduction === 'mean' ? 1 / Math.max(counted, 1) : 1;
    out = empty([], lossDtype, logits.device);
    native.fill(out._h(op), counted === 0 && reduction === 'mean' ? Number.NaN : s * scale);
    lossRow.dispose();
  }
  const saved: Tensor[] = rowScale ? [logits, target, lse, rowScale] : [logits, target, lse];
  return record(
    out,
    op,
    [logits],
    (g, [sl, st, slse, sScale]) => {
      // per-row upstream weight: g (none), g * scale broadcast (mean/sum)
      let gRow: Tensor;
      if (reduction === 'none') gRow = g;
      else if (sScale) {
        const gs = mul(g, sScale as Tensor);
        const ones = full([rows], 1, { device: logits.device, dtype: lossDtype });
        gRow = mul(ones, gs);
        gs.dispose();
        ones.dispose();
      } else {
        gRow = empty([rows], lossDtype, logits.device);
        native.fill(gRow._h(op), (g.dataSync()[0] as number) * scale);
      }
      const dx = empty(logits.shape, logits.dtype, logits.device);
      native.crossEntropyBackward(
        (sl as Tensor)._h(op),
        (st as Tensor)._h(op),
        (slse as Tensor)._h(op),
        gRow._h(op),
        dx._h(op),
        rows,
        classes,
        smoothing,
        ignore,
      );
      if (gRow !== g) gRow.dispose();
      return [dx];
    },
    saved,
    rowScale ? [lse, rowScale] : [lse],
  );
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p) when training. */
export function dropout(x: Tensor, p: number, opts: { training?: boolean; seed?: number } = {}): Tensor {
  const op = 'dropout';
  checkTensor(op, x, 'x');
  if (!(p >= 0 && p < 1)) throw new RangeError(`${op}: p must be in [0, 1), got ${p}`);
  if (opts.training === false || p === 0) return affine(x, 1, 0);
  const keepMask = bernoulli([...x.shape], 1 - p, {
    dtype: x.dtype,
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
  });
  const scaled = affine(keepMask, 1 / (1 - p), 0);
  keepMask.dispose();
  const out = mul(x, scaled);
  scaled.dispose();
  return out;
}
