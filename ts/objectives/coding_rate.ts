// coding_rate.ts: the rate-reduction objectives of CRATE / MCR² / ToST built from the fused
// batched log-det (ops/crate.ts logdetGram) and primitive ops, plus the authors' measurement
// functions (per-layer R^c and sparsity) exactly as vis_utils computes them (spec 1.8, 1.9).
// Row layout throughout: tokens/samples are rows, features are columns (Z (…, N, d)).
import { noGrad } from '../autograd.js';
import { tidy } from '../memory.js';
import { logdetGram, logdetGramHeads } from '../ops/crate.js';
import { tensor } from '../ops/creation.js';
import * as E from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { mean, std, sum } from '../ops/reduce.js';
import { reshape, unsqueeze } from '../ops/shape.js';
import { formatShape, type Tensor } from '../tensor.js';

/** R(Z) = ½ logdet(I + d/(Nε²)·ZᵀZ) for Z (…, N, d) (the book's column form). Output (…). */
export function codingRate(Z: Tensor, eps = 0.5): Tensor {
  const [N, d] = Z.shape.slice(-2) as [number, number];
  return logdetGram(Z, d / (N * eps * eps));
}

/**
 * R^c(Z | U_1..U_K) = ½ Σ_k logdet(I + p/(Nε²)·(Z U_k)ᵀ(Z U_k)) for Z (B, N, d) and the subspace
 * bases U (K, d, p). Output (B).
 */
export function compressionRate(Z: Tensor, U: Tensor, eps = 0.5): Tensor {
  if (Z.ndim !== 3 || U.ndim !== 3 || U.shape[1] !== Z.shape[2]) {
    throw new Error(
      `compressionRate: need Z (B, N, d) and U (K, d, p), got ${formatShape(Z.shape)} and ${formatShape(U.shape)}`,
    );
  }
  const [, N] = Z.shape as [number, number, number];
  const p = U.shape[2] as number;
  return tidy(() => {
    const proj = matmul(unsqueeze(Z, 1), unsqueeze(U, 0)); // (B, K, N, p)
    return sum(logdetGram(proj, p / (N * eps * eps)), 1); // (B)
  });
}

/** ΔR = R(Z) − R^c(Z | U). Output (B). */
export function rateReduction(Z: Tensor, U: Tensor, eps = 0.5): Tensor {
  return tidy(() => E.sub(codingRate(Z, eps), compressionRate(Z, U, eps)));
}

/** Sparse rate reduction ΔR − λ‖Z‖₁ (ℓ₀ relaxed to ℓ₁, per sample). Output (B). */
export function sparseRateReduction(Z: Tensor, U: Tensor, lambda: number, eps = 0.5): Tensor {
  return tidy(() => E.sub(rateReduction(Z, U, eps), E.mul(sum(E.abs(Z), [1, 2]), lambda)));
}

/**
 * Label-based MCR² loss (ryanchankh/mcr2 `MaximalCodingRateReduction`, theoretical form):
 * features W (m, p) as rows, labels (m) i32. R = ½logdet(I + p/(m·eps)·WᵀW);
 * R^c = Σ_j (trΠ_j/m)·½logdet(I + p/((trΠ_j+1e-8)·eps)·WᵀΠ_jW). Returns −(R − R^c), plus parts.
 */
export function mcr2Loss(
  W: Tensor,
  labels: Tensor,
  numClasses: number,
  eps = 0.01,
): { loss: Tensor; R: number; Rc: number } {
  if (W.ndim !== 2 || labels.ndim !== 1 || labels.shape[0] !== W.shape[0] || labels.dtype !== 'i32') {
    throw new Error(
      `mcr2Loss: need W (m, p) and i32 labels (m), got ${formatShape(W.shape)} and ${formatShape(labels.shape)} ${labels.dtype}`,
    );
  }
  const [m, p] = W.shape as [number, number];
  const lab = labels.dataSync();
  const counts = new Array<number>(numClasses).fill(0);
  for (const l of lab) {
    if (l < 0 || l >= numClasses) throw new RangeError(`mcr2Loss: label ${l} out of range [0, ${numClasses})`);
    counts[l] = (counts[l] as number) + 1;
  }
  let Rv = 0;
  let Rcv = 0;
  const loss = tidy(() => {
    const R = logdetGram(W, p / (m * eps));
    // Π_j as 0/1 row masks (hard labels), stacked as (K, m, 1).
    const masks = new Float64Array(numClasses * m);
    lab.forEach((l, i) => {
      masks[l * m + i] = 1;
    });
    const Pi = tensor(masks, { shape: [numClasses, m, 1], dtype: W.dtype });
    const Wj = E.mul(unsqueeze(W, 0), Pi); // (K, m, p): rows outside class j are zero
    const alphas = tensor(
      counts.map((c) => p / ((c + 1e-8) * eps)),
      { dtype: W.dtype },
    );
    const Rj = logdetGram(Wj, alphas); // (K)
    const weights = tensor(
      counts.map((c) => c / m),
      { dtype: W.dtype },
    );
    const Rc = sum(E.mul(Rj, weights));
    Rv = R.item();
    Rcv = Rc.item();
    return E.neg(E.sub(R, Rc));
  });
  return { loss, R: Rv, Rc: Rcv };
}

/**
 * ToST's variational compression term R^var = ½ Σ_k (N_k/N) Σ_i log(1 + (d/ε²)(1/N_k)(U_kᵀZDiag(π_k)ZᵀU_k)_ii)
 * for Z (B, N, d), U (K, d, p), memberships Pi (B, K, N) (rows sum to 1 over K). Output (B).
 */
export function variationalCompression(Z: Tensor, U: Tensor, Pi: Tensor, eps = 0.5): Tensor {
  const [, N, d] = Z.shape as [number, number, number];
  return tidy(() => {
    const proj = matmul(unsqueeze(Z, 1), unsqueeze(U, 0)); // (B, K, N, p)
    const Nk = E.add(sum(Pi, 2), 1e-8); // (B, K)
    const weighted = sum(E.mul(E.square(proj), unsqueeze(Pi, 3)), 2); // (B, K, p)
    const inner = E.div(weighted, unsqueeze(Nk, 2));
    const f = sum(E.log(E.add(E.mul(inner, d / (eps * eps)), 1)), 2); // (B, K)
    return E.mul(sum(E.mul(E.div(Nk, N), f), 1), 0.5);
  });
}

export interface MeanStd {
  mean: number;
  std: number;
}

/**
 * The authors' per-layer R^c measurement (vis_utils/coding_rate.py CodingRate): X = qkv(LN(Z^ℓ))
 * as (B, N, H·p); each token's per-head p-vector L2-normalised; R^c_b = ½Σ_h logdet(I_N +
 * p/(N·eps)·X_h X_hᵀ) with eps = 0.01 (it plays ε²); mean and std (unbiased, as torch.std) over b.
 */
export function measureCodingRate(X: Tensor, heads: number, eps = 0.01): MeanStd {
  return noGrad(() =>
    tidy(() => {
      const [B, N, HP] = X.shape as [number, number, number];
      const p = HP / heads;
      const x = reshape(X, [B, N, heads, p]);
      const norm = E.maximum(E.sqrt(sum(E.square(x), 3, true)), 1e-12); // F.normalize eps
      const xn = reshape(E.div(x, norm), [B, N, HP]);
      const perSample = sum(logdetGramHeads(xn, p / (N * eps), heads), 1); // (B)
      return {
        mean: mean(perSample).item(),
        std: B > 1 ? std(perSample).item() : 0,
      };
    }),
  );
}

/**
 * The authors' sparsity measurement (vis_utils/plot.py cal_sparsity) on an ISTA output Z (B, N, D):
 * per-sample fraction of exact zeros, mean/std over the batch. The paper plots 1 − mean (= ‖Z‖₀/ND).
 */
export function measureSparsity(Z: Tensor): MeanStd {
  return noGrad(() =>
    tidy(() => {
      const B = Z.shape[0] as number;
      const zeros = E.eq(Z, 0);
      const frac = mean(reshape(zeros, [B, -1]), 1);
      return { mean: mean(frac).item(), std: B > 1 ? std(frac).item() : 0 };
    }),
  );
}
