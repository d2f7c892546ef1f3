// shape.ts: reshape (free: shares storage), permute/transpose, expand, slice, concat/stack,
// index-select/embedding and clone. All non-free ops are one strided-copy or gather kernel;
// their gradients are the adjoint copies (accumulating where inputs overlap).
import { record } from '../autograd.js';
import { native } from '../native.js';
import { checkShape, empty, formatShape, numelOf, type Tensor, viewAs } from '../tensor.js';
import { sumTo } from './elementwise.js';
import { broadcastStrides, checkInt, checkSame, checkTensor, contiguousStrides, normAxis } from './util.js';

/** Same data, new shape (one dim may be -1). Free: shares storage. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  checkTensor('reshape', x, 'x');
  if (!Array.isArray(shape)) throw new TypeError('reshape: shape must be an array');
  const n = x.numel;
  const neg = shape.filter((s) => s === -1).length;
  if (neg > 1) throw new Error(`reshape: only one dim may be -1, got ${formatShape(shape)}`);
  let s = shape;
  if (neg === 1) {
    const known = shape.reduce((a, b) => (b === -1 ? a : a * b), 1);
    if (known === 0 || n % known !== 0) {
      throw new Error(`reshape: cannot reshape ${formatShape(x.shape)} (${n} elements) into ${formatShape(shape)}`);
    }
    s = shape.map((v) => (v === -1 ? n / known : v));
  }
  checkShape(s, 'reshape');
  if (numelOf(s) !== n) {
    throw new Error(`reshape: cannot reshape ${formatShape(x.shape)} (${n} elements) into ${formatShape(shape)}`);
  }
  const out = viewAs(x, s);
  return record(out, 'reshape', [x], (g) => [viewAs(g, x.shape)]);
}

export const view = reshape;

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  checkTensor('flatten', x, 'x');
  if (x.ndim === 0) return reshape(x, [1]);
  const a = normAxis('flatten', startDim, x.ndim);
  const b = normAxis('flatten', endDim, x.ndim);
  const shape = [...x.shape.slice(0, a), numelOf(x.shape.slice(a, b + 1)), ...x.shape.slice(b + 1)];
  return reshape(x, shape);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  checkTensor('unsqueeze', x, 'x');
  const a = normAxis('unsqueeze', axis, x.ndim + 1);
  const shape = [...x.shape];
  shape.splice(a, 0, 1);
  return reshape(x, shape);
}

export function squeeze(x: Tensor, axis?: number): Tensor {
  checkTensor('squeeze', x, 'x');
  if (axis === undefined)
    return reshape(
      x,
      x.shape.filter((s) => s !== 1),
    );
  const a = normAxis('squeeze', axis, x.ndim);
  if (x.shape[a] !== 1) return reshape(x, [...x.shape]);
  return reshape(
    x,
    x.shape.filter((_, i) => i !== a),
  );
}

function copyStrided(op: string, x: Tensor, shape: number[], srcOff: number, srcStr: number[]): Tensor {
  const out = empty(shape, x.dtype, x.device);
  native.stridedCopy(x._h(op), srcOff, srcStr, out._h(op), 0, contiguousStrides(shape), shape, false);
  return out;
}

/** Reorders dims: out.shape[i] = x.shape[dims[i]]. A copy. */
export function permute(x: Tensor, dims: number[]): Tensor {
  checkTensor('permute', x, 'x');
  if (!Array.isArray(dims) || dims.length !== x.ndim) {
    throw new Error(`permute: dims must list all ${x.ndim} axes of ${formatShape(x.shape)}, got ${String(dims)}`);
  }
  const d = dims.map((a) => normAxis('permute', a, x.ndim));
  if (new Set(d).size !== d.length) throw new Error(`permute: dims [${dims.join(', ')}] repeat an axis`);
  const st = contiguousStrides(x.shape);
  const shape = d.map((a) => x.shape[a] as number);
  const out = copyStrided(
    'permute',
    x,
    shape,
    0,
    d.map((a) => st[a] as number),
  );
  const inv = new Array<number>(d.length);
  d.forEach((a, i) => {
    inv[a] = i;
  });
  return record(out, 'permute', [x], (g) => [permute(g, inv)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  checkTensor('transpose', x, 'x');
  const ia = normAxis('transpose', a, x.ndim);
  const ib = normAxis('transpose', b, x.ndim);
  const dims = Array.from({ length: x.ndim }, (_, i) => i);
  dims[ia] = ib;
  dims[ib] = ia;
  return permute(x, dims);
}

/** Broadcasts x to `shape` (materialised copy). */
export function expand(x: Tensor, shape: number[]): Tensor {
  checkTensor('expand', x, 'x');
  checkShape(shape, 'expand');
  const off = shape.length - x.ndim;
  if (off < 0 || x.shape.some((s, i) => s !== 1 && s !== shape[off + i])) {
    throw new Error(`expand: cannot expand ${formatShape(x.shape)} to ${formatShape(shape)}`);
  }
  const out = copyStrided('expand', x, shape, 0, broadcastStrides(x.shape, shape));
  return record(out, 'expand', [x], (g) => [sumTo(g, x.shape)]);
}

/** Elements start, start+step, ... below end along `axis` (negative start/end count from the end). */
export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  checkTensor('slice', x, 'x');
  const a = normAxis('slice', axis, x.ndim);
  const n = x.shape[a] as number;
  checkInt('slice', step, 'step', 1);
  checkInt('slice', start, 'start');
  if (end !== undefined) checkInt('slice', end, 'end');
  let s = start < 0 ? start + n : start;
  let e = end === undefined ? n : end < 0 ? end + n : end;
  s = Math.min(Math.max(s, 0), n);
  e = Math.min(Math.max(e, s), n);
  const len = Math.ceil((e - s) / step);
  const shape = [...x.shape];
  shape[a] = len;
  const st = contiguousStrides(x.shape);
  const srcStr = [...st];
  srcStr[a] = (st[a] as number) * step;
  const off = s * (st[a] as number);
  const out = copyStrided('slice', x, shape, off, srcStr);
  return record(out, 'slice', [x], (g) => {
    const dx = empty(x.shape, g.dtype, g.device, true);
    native.stridedCopy(g._h('slice'), 0, contiguousStrides(shape), dx._h('slice'), off, srcStr, shape, true);
    return [dx];
  });
}

/** Joins tensors along an existing axis. */
export function concat(ts: Tensor[], axis = 0): Tensor {
  const op = 'concat';
  if (!Array.isArray(ts) || ts.length === 0) throw new Error(`${op}: need a non-empty array of tensors`);
  ts.forEach((t, i) => {
    checkTensor(op, t, `tensors[${i}]`);
  });
  const first = ts[0] as Tensor;
  const a = normAxis(op, axis, first.ndim);
  ts.forEach((t, i) => {
    checkSame(op, first, t, ['tensors[0]', `tensors[${i}]`]);
    if (t.ndim !== first.ndim || t.shape.some((s, d) => d !== a && s !== first.shape[d])) {
      throw new Error(
        `${op}: tensors[${i}] has shape ${formatShape(t.shape)}, incompatible with ${formatShape(first.shape)} along axis ${a}`,
      );
    }
  });
  const shape = [...first.shape];
  shape[a] = ts.reduce((n, t) => n + (t.shape[a] as number), 0);
  const out = empty(shape, first.dtype, first.device);
  const ost = contiguousStrides(shape);
  const offsets: number[] = [];
  let at = 0;
  for (const t of ts) {
    offsets.push(at);
    native.stridedCopy(
      t._h(op),
      0,
      contiguousStrides(t.shape),
      out._h(op),
      at * (ost[a] as number),
      ost,
      [...t.shape],
      false,
    );
    at += t.shape[a] as number;
  }
  return record(out, op, ts, (g) =>
    ts.map((t, i) =>
      t.requiresGrad ? slice(g, a, offsets[i] as number, (offsets[i] as number) + (t.shape[a] as number)) : null,
    ),
  );
}

/** Joins tensors along a new axis. */
export function stack(ts: Tensor[], axis = 0): Tensor {
  if (!Array.isArray(ts) || ts.length === 0) throw new Error('stack: need a non-empty array of tensors');
  const parts = ts.map((t, i) => unsqueeze(checkTensor('stack', t, `tensors[${i}]`), axis));
  const out = concat(parts, axis);
  for (const p of parts) p.dispose();
  return out;
}

/** x.index_select(axis, index): index is a 1-D i32 tensor. */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  return gatherAlong(x, axis, index, true);
}

/** indexSelect; `checked` false skips the CUDA index check and its host wait (embeddingValidated). */
function gatherAlong(x: Tensor, axis: number, index: Tensor, checked: boolean): Tensor {
  const op = 'indexSelect';
  checkTensor(op, x, 'x');
  checkTensor(op, index, 'index');
  if (index.dtype !== 'i32' || index.ndim !== 1) {
    throw new TypeError(`${op}: index must be a 1-D i32 tensor, got ${index.dtype} ${formatShape(index.shape)}`);
  }
  const a = normAxis(op, axis, x.ndim);
  const outer = numelOf(x.shape.slice(0, a));
  const dim = x.shape[a] as number;
  const inner = numelOf(x.shape.slice(a + 1));
  const k = index.numel;
  const shape = [...x.shape];
  shape[a] = k;
  const out = empty(shape, x.dtype, x.device);
  native.gather(x._h(op), index._h(op), out._h(op), outer, dim, inner, k, checked);
  return record(
    out,
    op,
    [x],
    (g, [idx]) => {
      const dx = empty(x.shape, g.dtype, g.device, true);
      native.indexAdd(g._h(op), idx._h(op), dx._h(op), outer, dim, inner, k);
      return [dx];
    },
    [index],
  );
}

/** Rows of `weight` (V, D) picked by integer ids of any shape: out (...ids.shape, D). */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  return embeddingRows(weight, ids, true);
}

/**
 * @internal embedding for ids the caller has already validated (a language model's token ids,
 * checked on the host): on CUDA the gather skips its index check and the host wait it costs. An
 * out-of-range id would give a zero row there instead of an error; the CPU checks anyway.
 */
export function embeddingValidated(weight: Tensor, ids: Tensor): Tensor {
  return embeddingRows(weight, ids, false);
}

function embeddingRows(weight: Tensor, ids: Tensor, checked: boolean): Tensor {
  checkTensor('embedding', weight, 'weight');
  checkTensor('embedding', ids, 'ids');
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be 2-D (V, D), got ${formatShape(weight.shape)}`);
  const flat = ids.ndim === 1 ? ids : reshape(ids, [ids.numel]);
  const rows = gatherAlong(weight, 0, flat, checked);
  if (flat !== ids) flat.dispose();
  const out = reshape(rows, [...ids.shape, weight.shape[1] as number]);
  rows.dispose();
  return out;
}

/** A copy with its own storage (differentiable). */
export function clone(x: Tensor): Tensor {
  checkTensor('clone', x, 'x');
  const out = copyStrided('clone', x, [...x.shape], 0, contiguousStrides(x.shape));
  return record(out, 'clone', [x], (g) => [viewAs(g, g.shape)]);
}
