// crate.ts: the fused CRATE operators on the tape: MSSA, the ISTA family, the batched log-det
// coding rate and TSSA (vision and causal). Each validates its arguments (errors name the
// argument and the shapes), runs the native kernel and records a backward that calls the
// native backward. The same math built from primitive ops is in crate_composite.ts.
// bf16 CUDA tensors: every op here (see each op's docs for which tensors stay f32). Under
// autocast, mssa and the ISTA ops run their bf16 kernels on bf16 copies of f32 inputs and return
// f32 (matmul-class ops, as PyTorch autocasts SDPA and linear); TSSA and the coding rate stay f32.
import { isAutocast } from '../autocast.js';
import { record } from '../autograd.js';
import { native } from '../native.js';
import { empty, formatShape, type Tensor } from '../tensor.js';
import type { MssaOptions } from './crate_composite.js';
import { cast } from './elementwise.js';
import { checkFloat, checkSame, checkTensor } from './util.js';

export type { MssaOptions } from './crate_composite.js';

function check3(op: string, t: Tensor, name: string, heads: number | null): [number, number, number] {
  checkTensor(op, t, name);
  checkFloat(op, t, name);
  if (t.ndim !== 3) throw new Error(`${op}: '${name}' must be (B, N, H*p), got ${formatShape(t.shape)}`);
  const [B, N, HP] = t.shape as [number, number, number];
  if (heads !== null) {
    if (!Number.isInteger(heads) || (heads as number) < 1)
      throw new Error(`${op}: heads must be a positive integer, got ${heads}`);
    if (HP % (heads as number) !== 0)
      throw new Error(`${op}: '${name}' width ${HP} is not divisible by heads=${heads}`);
  }
  return [B, N, HP];
}

/**
 * Fused multi-head subspace self-attention on the shared projection P = X·Uᵀ (B, N, H·p):
 * out = concat_h softmax(scale·P_h P_hᵀ + mask) P_h, flash-style (no N×N matrix in memory).
 * Rows whose keys are all masked give 0 (and zero gradient). bf16 P runs on cuda (bf16 tensor-core
 * tile products, f32 softmax statistics and accumulation; O and the gradient bf16).
 */
export function mssa(P: Tensor, o: MssaOptions): Tensor {
  const op = 'mssa';
  if (typeof o !== 'object' || o === null) throw new TypeError(`${op}: options { heads } are required`);
  const [B, N, HP] = check3(op, P, 'P', o.heads);
  const H = o.heads;
  const p = HP / H;
  const scale = o.scale ?? 1 / Math.sqrt(Math.max(p, 1));
  const causal = o.causal ?? false;
  const km = o.keyMask ?? null;
  if (km) {
    checkTensor(op, km, 'keyMask');
    if (km.ndim !== 2 || km.shape[0] !== B || km.shape[1] !== N) {
      throw new Error(`${op}: keyMask must be (B, N) = [${B}, ${N}], got ${formatShape(km.shape)}`);
    }
  }
  const amp = underAutocast([P], (P16) => mssa(P16, o));
  if (amp) return amp;
  const O = empty(P.shape, P.dtype, P.device);
  // bf16 P (cuda): O and the gradient are bf16, the saved logsumexp L stays f32
  const L = empty([B, H, N], P.dtype === 'bf16' ? 'f32' : P.dtype, P.device);
  native.mssaForward(P._h(op), O._h(op), L._h(op), B, N, H, p, scale, causal, km?._h(op) ?? null);
  return record<Tensor[]>(
    O,
    op,
    [P],
    (g, saved) => {
      const [sP, sO, sL, sK] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const dP = empty(P.shape, P.dtype, P.device);
      native.mssaBackward(
        sP._h(op),
        sO._h(op),
        sL._h(op),
        g._h(op),
        dP._h(op),
        B,
        N,
        H,
        p,
        scale,
        causal,
        sK?._h(op) ?? null,
      );
      return [dP];
    },
    km ? [P, O, L, km] : [P, O, L],
    [L],
  );
}

function checkWeight(op: string, W: Tensor, name: string, like: Tensor, shape: number[]): void {
  checkTensor(op, W, name);
  checkSame(op, like, W, ['Y', name]);
  if (W.ndim !== shape.length || W.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`${op}: '${name}' must have shape ${formatShape(shape)}, got ${formatShape(W.shape)}`);
  }
}

function tokens(op: string, Y: Tensor): [number, number] {
  checkTensor(op, Y, 'Y');
  checkFloat(op, Y, 'Y');
  if (Y.ndim < 1) throw new Error(`${op}: Y must be (..., d)`);
  const d = Y.shape[Y.ndim - 1] as number;
  return [d === 0 ? 0 : Y.numel / d, d];
}

/**
 * autocast (all of xs f32 on cuda): runs fn on bf16 copies (the bf16 tensor-core kernels) and
 * returns its output as f32; the casts are recorded, so gradients reach the f32 tensors. Else null.
 */
function underAutocast(xs: Tensor[], fn: (...low: Tensor[]) => Tensor): Tensor | null {
  if (!isAutocast() || xs.some((x) => x.device !== 'cuda' || x.dtype !== 'f32')) return null;
  const low = xs.map((x) => cast(x, 'bf16'));
  const out16 = fn(...low);
  const out = cast(out16, 'f32');
  for (const t of [...low, out16]) t.dispose();
  return out;
}

/**
 * CRATE ISTA step (one non-negative ISTA iteration warm-started at Y):
 * ReLU(Y + η·(Y·W − Y·Wᵀ·W) − η·λ), fused as ReLU(Y·(I + η(W − WᵀW)) − ηλ). Y (..., d), W (d, d).
 */
export function ista(Y: Tensor, W: Tensor, eta = 0.1, lambda = 0.1): Tensor {
  const op = 'ista';
  const [T, d] = tokens(op, Y);
  checkWeight(op, W, 'W', Y, [d, d]);
  const amp = underAutocast([Y, W], (y, w) => ista(y, w, eta, lambda));
  if (amp) return amp;
  const Z = empty(Y.shape, Y.dtype, Y.device);
  native.istaForward(Y._h(op), W._h(op), Z._h(op), T, d, eta, lambda);
  return record(
    Z,
    op,
    [Y, W],
    (g, [sY, sW, sZ]) => {
      const dY = empty(Y.shape, Y.dtype, Y.device);
      const dW = empty(W.shape, W.dtype, W.device);
      native.istaBackward(sY._h(op), sW._h(op), sZ._h(op), g._h(op), dY._h(op), dW._h(op), T, d, eta);
      return [dY, dW];
    },
    [Y, W, Z],
  );
}

function overcomplete(
  op: string,
  mode: 0 | 1,
  Y: Tensor,
  D: Tensor,
  D1: Tensor | null,
  eta: number,
  lambda: number,
): Tensor {
  const [T, d] = tokens(op, Y);
  checkTensor(op, D, mode === 0 ? 'D' : 'W');
  if (D.ndim !== 2) throw new Error(`${op}: dictionary must be 2-D, got ${formatShape(D.shape)}`);
  const m = (mode === 0 ? D.shape[1] : D.shape[0]) as number;
  checkWeight(op, D, mode === 0 ? 'D' : 'W', Y, mode === 0 ? [d, m] : [m, d]);
  if (D1) checkWeight(op, D1, 'D1', Y, [d, m]);
  const amp = underAutocast(D1 ? [Y, D, D1] : [Y, D], (y, dict, dec) =>
    overcomplete(op, mode, y as Tensor, dict as Tensor, dec ?? null, eta, lambda),
  );
  if (amp) return amp;
  const out = empty(Y.shape, Y.dtype, Y.device);
  const S1 = empty([T, m], Y.dtype, Y.device);
  const S2 = empty([T, m], Y.dtype, Y.device);
  const R = empty([T, d], Y.dtype, Y.device);
  native.istaOvercompleteForward(
    mode,
    Y._h(op),
    D._h(op),
    D1?._h(op) ?? null,
    out._h(op),
    S1._h(op),
    S2._h(op),
    R._h(op),
    T,
    d,
    m,
    eta,
    lambda,
  );
  const inputs = D1 ? [Y, D, D1] : [Y, D];
  return record<Tensor[]>(
    out,
    op,
    inputs,
    (g, saved) => {
      const [sY, sD, s1, s2, sR, sD1] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
      const dY = empty(Y.shape, Y.dtype, Y.device);
      const dD = empty(D.shape, D.dtype, D.device);
      const dD1 = D1 ? empty(D1.shape, D1.dtype, D1.device) : null;
      native.istaOvercompleteBackward(
        mode,
        sY._h(op),
        sD._h(op),
        sD1?._h(op) ?? null,
        s1._h(op),
        s2._h(op),
        sR._h(op),
        g._h(op),
        dY._h(op),
        dD._h(op),
        dD1?._h(op) ?? null,
        T,
        d,
        m,
        eta,
      );
      return dD1 ? [dY, dD, dD1] : [dY, dD];
    },
    D1 ? [Y, D, S1, S2, R, D1] : [Y, D, S1, S2, R],
    [S1, S2, R],
  );
}

/** CRATE-α overcomplete two-step ISTA with decoder D1: Y (..., d), D, D1 (d, m) → (..., d). */
export function istaOvercomplete(Y: Tensor, D: Tensor, D1: Tensor, eta = 0.1, lambda = 0.1): Tensor {
  return overcomplete('istaOvercomplete', 0, Y, D, D1, eta, lambda);
}
/** Causal-CRATE tied overcomplete ISTA: Y (..., d), W (m, d) → (..., d) (decoder = W). */
export function istaTied(Y: Tensor, W: Tensor, eta = 0.1, lambda = 0.1): Tensor {
  return overcomplete('istaTied', 1, Y, W, null, eta, lambda);
}

/** dtype of the coding rate's α and R (and dR): Z's, f32 for bf16 Z. */
function rateDtype(Z: Tensor): Tensor['dtype'] {
  return Z.dtype === 'bf16' ? 'f32' : Z.dtype;
}

function alphaTensor(op: string, alpha: number | Tensor, like: Tensor, shape: number[]): [Tensor, boolean] {
  const dt = rateDtype(like);
  if (typeof alpha === 'number') {
    if (!(alpha > 0) || !Number.isFinite(alpha))
      throw new RangeError(`${op}: alpha must be a finite number > 0, got ${alpha}`);
    const a = empty(shape, dt, like.device);
    native.fill(a._h(op), alpha);
    return [a, true];
  }
  checkTensor(op, alpha, 'alpha');
  if (dt !== like.dtype) {
    if (alpha.device !== like.device)
      throw new Error(`${op}: 'Z' is on ${like.device} but 'alpha' is on ${alpha.device}`);
    if (alpha.dtype !== dt)
      throw new TypeError(
        `${op}: alpha must be ${dt} for ${like.dtype} Z, got ${alpha.dtype}; cast it with .to('${dt}')`,
      );
  } else checkSame(op, like, alpha, ['Z', 'alpha']);
  if (alpha.numel !== shape.reduce((x, y) => x * y, 1)) {
    throw new Error(`${op}: alpha must have ${formatShape(shape)} values, got ${formatShape(alpha.shape)}`);
  }
  return [alpha, false];
}

/**
 * Batched coding rate R_b = ½·logdet(I + α_b·Z_b Z_bᵀ) for Z (batch..., m, n), Gram on the smaller
 * side, Cholesky in f64; α a number or a tensor with one value per matrix. Output (batch...).
 * Gradient α·(I + αZZᵀ)⁻¹Z by triangular solves. NaN/Inf input → error (code CRATE_NUMERICAL).
 * bf16 Z (cuda): f64 inside, the output (and a tensor α) f32, the gradient bf16.
 */
export function logdetGram(Z: Tensor, alpha: number | Tensor): Tensor {
  const op = 'codingRate';
  checkTensor(op, Z, 'Z');
  checkFloat(op, Z, 'Z');
  if (Z.ndim < 2) throw new Error(`${op}: Z must be (batch..., m, n), got ${formatShape(Z.shape)}`);
  const lead = Z.shape.slice(0, -2);
  const [m, n] = Z.shape.slice(-2) as [number, number];
  const batch = lead.reduce((a, b) => a * b, 1);
  return logdetCall(op, Z, alpha, lead, batch, m, n, 0);
}

/**
 * Per-head coding rate on the (B, N, H·p) layout of a projection (no transpose, on the CPU and on
 * CUDA): out (B, H) with R_bh = ½·logdet(I + α_bh·Z_bh Z_bhᵀ), Z_bh = X[b, :, h·p:(h+1)·p] (N×p).
 * bf16 X (cuda) as in logdetGram.
 */
export function logdetGramHeads(X: Tensor, alpha: number | Tensor, heads: number): Tensor {
  const op = 'codingRateHeads';
  const [B, N, HP] = check3(op, X, 'X', heads);
  return logdetCall(op, X, alpha, [B, heads], B, N, HP / heads, heads);
}

function logdetCall(
  op: string,
  Z: Tensor,
  alpha: number | Tensor,
  outShape: number[],
  batch: number,
  m: number,
  n: number,
  heads: number,
): Tensor {
  const [a, ownA] = alphaTensor(op, alpha, Z, outShape);
  const R = empty(outShape, rateDtype(Z), Z.device);
  const items = heads > 0 ? batch * heads : batch;
  const chol = empty([native.logdetCholNumel(items, m, n) as number], 'f64', Z.device, false, true);
  try {
    native.logdetForward(Z._h(op), a._h(op), R._h(op), chol._h(op), batch, m, n, heads);
  } catch (e) {
    chol.dispose();
    R.dispose();
    if (ownA) a.dispose();
    throw e;
  }
  return record(
    R,
    op,
    [Z],
    (g, [sZ, sA, sC]) => {
      const dZ = empty(Z.shape, Z.dtype, Z.device);
      native.logdetBackward(sZ._h(op), sA._h(op), g._h(op), dZ._h(op), sC._h(op), batch, m, n, heads);
      return [dZ];
    },
    [Z, a, chol],
    ownA ? [a, chol] : [chol],
  );
}

/**
 * dtype of TSSA's parameters (temp, denomBias), their gradients and its saved statistics for a
 * token input W: W's dtype, except for bf16 W (cuda), whose parameters stay f32 (the f32 master
 * weights of mixed precision) and whose statistics are kept f32.
 */
function tssaParamDtype(W: Tensor): Tensor['dtype'] {
  return W.dtype === 'bf16' ? 'f32' : W.dtype;
}

/** A TSSA parameter (temp, denomBias): W's device, tssaParamDtype(W), the given shape. */
function checkTssaParam(op: string, t: Tensor, name: string, W: Tensor, shape: number[] | null): void {
  checkTensor(op, t, name);
  if (t.device !== W.device) throw new Error(`${op}: 'W' is on ${W.device} but '${name}' is on ${t.device}`);
  const want = tssaParamDtype(W);
  if (t.dtype !== want) {
    throw new TypeError(
      W.dtype === 'bf16'
        ? `${op}: '${name}' is ${t.dtype} but must be f32 when 'W' is bf16 (bf16 activations take the f32 master parameter); cast it with .to('f32')`
        : `${op}: 'W' is ${W.dtype} but '${name}' is ${t.dtype}; cast one with .to()`,
    );
  }
  if (shape !== null && (t.ndim !== shape.length || t.shape.some((s, i) => s !== shape[i]))) {
    throw new Error(`${op}: '${name}' must have shape ${formatShape(shape)}, got ${formatShape(t.shape)}`);
  }
}

/**
 * ToST vision TSSA: W (B, N, H·p), temp (H) → (B, N, H·p); linear in N. bf16 W (cuda) takes an
 * f32 temp: Y and dW are bf16, dtemp f32.
 */
export function tssa(W: Tensor, temp: Tensor, heads: number): Tensor {
  const op = 'tssa';
  const [B, N, HP] = check3(op, W, 'W', heads);
  const H = heads;
  const p = HP / H;
  checkTssaParam(op, temp, 'temp', W, [H]);
  const sdt = tssaParamDtype(W);
  const Y = empty(W.shape, W.dtype, W.device);
  const Pi = empty([B, H, N], sdt, W.device);
  const cn = empty([B, H * p], sdt, W.device);
  const ms = empty([B, H * p], sdt, W.device);
  native.tssaForward(W._h(op), temp._h(op), Y._h(op), Pi._h(op), cn._h(op), ms._h(op), B, N, H, p);
  return record(
    Y,
    op,
    [W, temp],
    (g, [sW, sT, sPi, sCn, sMs]) => {
      const dW = empty(W.shape, W.dtype, W.device);
      const dT = temp.requiresGrad ? empty([H], temp.dtype, W.device) : null;
      native.tssaBackward(
        sW._h(op),
        sT._h(op),
        g._h(op),
        sPi._h(op),
        sCn._h(op),
        sMs._h(op),
        dW._h(op),
        dT?._h(op) ?? null,
        B,
        N,
        H,
        p,
      );
      return [dW, dT];
    },
    [W, temp, Pi, cn, ms],
    [Pi, cn, ms],
  );
}

/**
 * ToST causal TSSA: W (B, T, H·p), temp (H), denomBias (H, Tmax) with T ≤ Tmax → (B, T, H·p).
 * bf16 W (cuda) takes f32 temp and denomBias: Y and dW are bf16, dtemp and ddenomBias f32.
 */
export function tssaCausal(W: Tensor, temp: Tensor, denomBias: Tensor, heads: number): Tensor {
  const op = 'tssaCausal';
  const [B, T, HP] = check3(op, W, 'W', heads);
  const H = heads;
  const p = HP / H;
  checkTssaParam(op, temp, 'temp', W, [H]);
  checkTssaParam(op, denomBias, 'denomBias', W, null);
  if (denomBias.ndim !== 2 || denomBias.shape[0] !== H || (denomBias.shape[1] as number) < T) {
    throw new Error(
      `${op}: denomBias must be (H, Tmax) with H=${H}, Tmax >= ${T}, got ${formatShape(denomBias.shape)}`,
    );
  }
  const Tmax = denomBias.shape[1] as number;
  const Y = empty(W.shape, W.dtype, W.device);
  native.tssaCausalForward(W._h(op), temp._h(op), denomBias._h(op), Y._h(op), B, T, H, p, Tmax);
  return record(
    Y,
    op,
    [W, temp, denomBias],
    (g, [sW, sT, sD]) => {
      const dW = empty(W.shape, W.dtype, W.device);
      const dT = temp.requiresGrad ? empty([H], temp.dtype, W.device) : null;
      const dD = denomBias.requiresGrad ? empty(denomBias.shape, denomBias.dtype, W.device) : null;
      native.tssaCausalBackward(
        sW._h(op),
        sT._h(op),
        sD._h(op),
        g._h(op),
        dW._h(op),
        dT?._h(op) ?? null,
        dD?._h(op) ?? null,
        B,
        T,
        H,
        p,
        Tmax,
      );
      return [dW, dT, dD];
    },
    [W, temp, denomBias],
  );
}
