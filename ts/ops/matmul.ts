// matmul.ts: batched matmul with broadcast batch dims and transpose flags, and linear.
// A 2-D right operand shared by a batch of left operands folds the batch into M (one GEMM),
// forward and backward, which is the layout of every Linear layer. bf16 CUDA operands (outside
// or inside autocast) give a bf16 result: a bf16 GEMM with f32 accumulation, rounded once.

import { isAutocast } from '../autocast.js';
import { record } from '../autograd.js';
import { native } from '../native.js';
import { empty, formatShape, numelOf, type Tensor, viewAs } from '../tensor.js';
import { add, castRaw, sumTo } from './elementwise.js';
import { reshape } from './shape.js';
import { broadcastShapes, checkFloat, checkSame, checkTensor, contiguousStrides } from './util.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

function batchStrides(batch: readonly number[], outBatch: number[], matSize: number): number[] {
  const st = contiguousStrides(batch).map((s) => s * matSize);
  const r = new Array<number>(outBatch.length).fill(0);
  const off = outBatch.length - batch.length;
  for (let i = 0; i < batch.length; i++) r[off + i] = batch[i] === 1 && outBatch[off + i] !== 1 ? 0 : (st[i] as number);
  return r;
}

/** @internal matmul of >= 2-D operands without recording; `bf16` runs it as a bf16 GEMM with
 * f32 accumulation (autocast on CUDA). */
function matmulRaw(a: Tensor, b: Tensor, tA: boolean, tB: boolean, bf16 = false): Tensor {
  const op = 'matmul';
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const M = tA ? ac : ar;
  const K = tA ? ar : ac;
  const Kb = tB ? bc : br;
  const N = tB ? br : bc;
  if (K !== Kb) {
    throw new Error(
      `${op}: inner dimensions differ: a ${formatShape(a.shape)}${tA ? 'ᵀ' : ''} has K=${K}, b ${formatShape(b.shape)}${tB ? 'ᵀ' : ''} has K=${Kb}`,
    );
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const outBatch = broadcastShapes(op, aBatch, bBatch, ['a batch', 'b batch']);
  const out = empty([...outBatch, M, N], a.dtype, a.device);
  if (bf16) {
    const a16 = castRaw(a, 'bf16');
    const b16 = castRaw(b, 'bf16');
    try {
      native.matmulBf16(
        a16._h(op),
        b16._h(op),
        out._h(op),
        outBatch,
        batchStrides(aBatch, outBatch, ar * ac),
        batchStrides(bBatch, outBatch, br * bc),
        M,
        N,
        K,
        tA,
        tB,
      );
    } finally {
      a16.dispose();
      b16.dispose();
    }
    return out;
  }
  native.matmul(
    a._h(op),
    b._h(op),
    out._h(op),
    outBatch,
    batchStrides(aBatch, outBatch, ar * ac),
    batchStrides(bBatch, outBatch, br * bc),
    M,
    N,
    K,
    tA,
    tB,
  );
  return out;
}

/**
 * a @ b with numpy broadcasting of batch dims; transA/transB multiply by the transposed last
 * two dims without copying. 1-D operands are treated as a row (a) or a column (b) and squeezed.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  checkTensor(op, a, 'a');
  checkTensor(op, b, 'b');
  checkSame(op, a, b, ['a', 'b']);
  checkFloat(op, a, 'a');
  if (a.ndim === 0 || b.ndim === 0) throw new Error(`${op}: operands must be at least 1-D`);
  const tA = opts.transA ?? false;
  const tB = opts.transB ?? false;
  if (a.ndim === 1 || b.ndim === 1) {
    const a2 = a.ndim === 1 ? reshape(a, [1, a.shape[0] as number]) : a;
    const b2 = b.ndim === 1 ? reshape(b, [b.shape[0] as number, 1]) : b;
    const r = matmul(a2, b2, { transA: a.ndim === 1 ? false : tA, transB: b.ndim === 1 ? false : tB });
    const shape = [...r.shape];
    if (b.ndim === 1) shape.splice(shape.length - 1, 1);
    if (a.ndim === 1) shape.splice(shape.length - (b.ndim === 1 ? 1 : 2), 1);
    const out = reshape(r, shape);
    for (const t of [a2, b2, r]) if (t !== a && t !== b) t.dispose();
    return out;
  }
  // bf16 autocast: decided once at forward time, so the backward GEMMs match the forward
  const bf16 = isAutocast() && a.device === 'cuda' && a.dtype === 'f32';
  const out = matmulRaw(a, b, tA, tB, bf16);
  return record(
    out,
    op,
    [a, b],
    (g, [sa, sb]) => {
      let da: Tensor | null = null;
      let db: Tensor | null = null;
      if (a.requiresGrad) {
        if (b.ndim === 2 && a.ndim > 2 && !tA) {
          // fold the batch: (batch*M, N) x op(B)ᵀ
          const g2 = viewAs(g, [numelOf(g.shape.slice(0, -1)), g.shape[g.ndim - 1] as number]);
          const r = matmulRaw(g2, sb, false, !tB, bf16);
          da = viewAs(r, a.shape);
          g2.dispose();
          r.dispose();
        } else {
          const full = tA ? matmulRaw(sb, g, tB, true, bf16) : matmulRaw(g, sb, false, !tB, bf16);
          da = sumTo(full, a.shape);
          full.dispose();
        }
      }
      if (b.requiresGrad) {
        if (b.ndim === 2 && a.ndim > 2 && !tA) {
          // dop(B) = A_flatᵀ g_flat, one GEMM over the folded batch
          const rows = numelOf(a.shape.slice(0, -1));
          const a2 = viewAs(sa, [rows, a.shape[a.ndim - 1] as number]);
          const g2 = viewAs(g, [rows, g.shape[g.ndim - 1] as number]);
          db = tB ? matmulRaw(g2, a2, true, false, bf16) : matmulRaw(a2, g2, true, false, bf16);
          a2.dispose();
          g2.dispose();
        } else {
          const full = tB ? matmulRaw(g, sa, true, tA, bf16) : matmulRaw(sa, g, !tA, false, bf16);
          db = sumTo(full, b.shape);
          full.dispose();
        }
      }
      return [da, db];
    },
    [a, b],
  );
}

/** y = x Wᵀ + b with W (out, in) as in PyTorch's nn.Linear; x (..., in). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const op = 'linear';
  checkTensor(op, x, 'x');
  checkTensor(op, weight, 'weight');
  if (weight.ndim !== 2) throw new Error(`${op}: weight must be 2-D (out, in), got ${formatShape(weight.shape)}`);
  if (x.shape[x.ndim - 1] !== weight.shape[1]) {
    throw new Error(
      `${op}: x ${formatShape(x.shape)} has ${x.shape[x.ndim - 1]} features, weight ${formatShape(weight.shape)} expects ${weight.shape[1]}`,
    );
  }
  const y = matmul(x, weight, { transB: true });
  if (!bias) return y;
  checkTensor(op, bias, 'bias');
  if (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0]) {
    throw new Error(`${op}: bias must have shape [${weight.shape[0]}], got ${formatShape(bias.shape)}`);
  }
  const out = add(y, bias);
  y.dispose();
  return out;
}
