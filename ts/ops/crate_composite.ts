// crate_composite.ts: the CRATE operators written with the primitive ops only (matmul, softmax,
// where, relu, ...). They are the unfused reference the fused kernels are tested against, and
// the "composite path" the benchmarks compare with. Same signatures as the fused ops.
import { tidy } from '../memory.js';
import type { Tensor } from '../tensor.js';
import { tensor } from './creation.js';
import * as E from './elementwise.js';
import { matmul } from './matmul.js';
import { softmax } from './nn.js';
import { sum } from './reduce.js';
import { permute, reshape, slice } from './shape.js';

export interface MssaOptions {
  /** number of heads H; P has H·p columns */
  heads: number;
  /** score scale, default p^-1/2 */
  scale?: number;
  /** mask keys after the query (causal CRATE) */
  causal?: boolean;
  /** (B, N): 1 = attend, 0 = masked key (BERT-style padding); same dtype as P */
  keyMask?: Tensor | null;
}

/** MSSA core on P = X·Uᵀ (B, N, H·p): concat_h softmax(scale·P_h P_hᵀ + mask) P_h. */
export function mssaComposite(P: Tensor, o: MssaOptions): Tensor {
  return tidy(() => {
    const [B, N, HP] = P.shape as [number, number, number];
    const H = o.heads;
    const p = HP / H;
    const Ph = permute(reshape(P, [B, N, H, p]), [0, 2, 1, 3]); // (B, H, N, p)
    let S = E.mul(matmul(Ph, Ph, { transB: true }), o.scale ?? 1 / Math.sqrt(p)); // (B, H, N, N)
    if (o.causal) {
      const allow = new Float64Array(N * N);
      for (let i = 0; i < N; i++) for (let j = 0; j <= i; j++) allow[i * N + j] = 1;
      S = E.where(tensor(allow, { shape: [N, N], dtype: P.dtype }), S, Number.NEGATIVE_INFINITY);
    }
    if (o.keyMask) S = E.where(reshape(o.keyMask, [B, 1, 1, N]), S, Number.NEGATIVE_INFINITY);
    const O = matmul(softmax(S, -1), Ph); // (B, H, N, p)
    return reshape(permute(O, [0, 2, 1, 3]), [B, N, HP]);
  });
}

/** CRATE ISTA step, unfused: ReLU(Y + η(Y·W − Y·Wᵀ·W) − ηλ). Y (..., d), W (d, d). */
export function istaComposite(Y: Tensor, W: Tensor, eta: number, lambda: number): Tensor {
  return tidy(() => {
    const YW = matmul(Y, W);
    const YWtW = matmul(matmul(Y, W, { transB: true }), W);
    return E.relu(E.add(E.add(Y, E.mul(E.sub(YW, YWtW), eta)), -eta * lambda));
  });
}

/** CRATE-α two-step overcomplete ISTA, unfused. Y (..., d), D and D1 (d, m). Output (..., d). */
export function istaOvercompleteComposite(Y: Tensor, D: Tensor, D1: Tensor, eta: number, lambda: number): Tensor {
  return tidy(() => {
    const A1 = E.relu(E.add(E.mul(matmul(Y, D), eta), -eta * lambda));
    const resid = E.sub(matmul(A1, D, { transB: true }), Y); // A1·Dᵀ − Y
    const A2 = E.relu(E.add(E.sub(A1, E.mul(matmul(resid, D), eta)), -eta * lambda));
    return matmul(A2, D1, { transB: true });
  });
}

/** Causal-CRATE tied overcomplete ISTA, unfused. Y (..., d), W (m, d). Output (..., d). */
export function istaTiedComposite(Y: Tensor, W: Tensor, eta: number, lambda: number): Tensor {
  return tidy(() => {
    const YWt = matmul(Y, W, { transB: true }); // (.., m)
    const A0 = E.relu(E.add(E.mul(YWt, eta), -eta * lambda));
    const A0WWt = matmul(matmul(A0, W), W, { transB: true });
    const A1 = E.relu(E.add(E.add(A0, E.mul(E.sub(YWt, A0WWt), eta)), -eta * lambda));
    return matmul(A1, W);
  });
}

/** ToST vision TSSA, unfused. W (B, N, H·p), temp (H). Output (B, N, H·p). */
export function tssaComposite(W: Tensor, temp: Tensor, heads: number): Tensor {
  return tidy(() => {
    const [B, N, HP] = W.shape as [number, number, number];
    const p = HP / heads;
    const w = permute(reshape(W, [B, N, heads, p]), [0, 2, 1, 3]); // (B, H, N, p)
    const w2 = E.square(w);
    const colNorm = E.maximum(E.sqrt(sum(w2, 2, true)), 1e-12); // (B, H, 1, p)
    const wn2 = E.square(E.div(w, colNorm));
    const logits = E.mul(sum(wn2, 3), reshape(temp, [1, heads, 1])); // (B, H, N)
    const Pi = softmax(logits, 1); // over heads
    const piTilde = E.div(Pi, E.add(sum(Pi, 2, true), 1e-8)); // (B, H, N)
    const m = sum(E.mul(w2, reshape(piTilde, [B, heads, N, 1])), 2, true); // (B, H, 1, p)
    const g = E.pow(E.add(m, 1), -1);
    const y = E.neg(E.mul(E.mul(w, reshape(Pi, [B, heads, N, 1])), g));
    return reshape(permute(y, [0, 2, 1, 3]), [B, N, HP]);
  });
}

/**
 * ToST causal TSSA, unfused, with cumulative sums over time written as products with a
 * lower-triangular ones matrix (O(T²·p), fine for block sizes of a few thousand). W (B, T, H·p),
 * temp (H), denomBias (H, Tmax ≥ T). Output (B, T, H·p). Formulas: native/include/crate/tssa.h.
 */
export function tssaCausalComposite(W: Tensor, temp: Tensor, denomBias: Tensor, heads: number): Tensor {
  return tidy(() => {
    const [B, T, HP] = W.shape as [number, number, number];
    const p = HP / heads;
    const tri = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) tri[i * T + j] = 1;
    const L = tensor(tri, { shape: [T, T], dtype: W.dtype, device: W.device }); // cumsum over t
    const w = permute(reshape(W, [B, T, heads, p]), [0, 2, 1, 3]); // (B, H, T, p)
    const w2 = E.square(w);
    const csum = matmul(L, w2); // Σ_{s≤t} W², (B, H, T, p)
    const bias = reshape(slice(denomBias, 1, 0, T), [1, heads, T]); // enters once per feature
    const u = E.add(sum(E.div(w2, E.maximum(csum, 1e-12)), 3), E.mul(bias, p)); // (B, H, T)
    const Pi = softmax(E.mul(u, reshape(temp, [1, heads, 1])), 1); // over heads
    const Pi4 = reshape(Pi, [B, heads, T, 1]);
    const m = E.div(matmul(L, E.mul(w2, Pi4)), E.add(matmul(L, Pi4), 1e-8));
    const y = E.neg(E.div(E.mul(w, Pi4), E.add(m, 1)));
    return reshape(permute(y, [0, 2, 1, 3]), [B, T, HP]);
  });
}
