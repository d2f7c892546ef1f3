// models_mae_alpha.test.ts: CRATE-MAE and CRATE-α. Each forward (f64, tiny configs with every
// parameter randomised) is checked against an independent plain-loop reference written from the
// authors' code (conv patch embed, sin-cos table per MAE's numpy pos_embed.py, MSSA, ISTA, the
// transposed decoder block, the overcomplete ODL step, masked MSE with the nchpwq→nhwpqc patchify);
// gradients against central finite differences; preset parameter counts against the spec;
// masking (count, determinism, seeds, masked pixels invisible to the encoder); the authors'
// state-dict names; a few AdamW steps that lower the loss; input errors; no tensor leaks.
import { describe, expect, test } from 'vitest';
import type { Module, Tensor } from '../ts/index.js';
import * as C from '../ts/index.js';
import {
  CRATE_ALPHA_PRESETS,
  CrateAlpha,
  type CrateAlphaConfig,
  crateAlphaFromPreset,
  crateAlphaParamCount,
} from '../ts/models/crate_alpha.js';
import {
  CRATE_MAE_PRESETS,
  CrateMAE,
  type CrateMaeConfig,
  crateMaeFromPreset,
  crateMaeParamCount,
  sincosPosEmbed2d,
} from '../ts/models/crate_mae.js';
import { AdamW } from '../ts/optim/index.js';
import { mulberry32, relErr } from './helpers/harness.js';

type F = Float64Array;
const arr = (t: Tensor): F => Float64Array.from(t.dataSync());

// ---------------------------------------------------------------- plain-loop reference ops
/** X (n, din) · Wᵀ + b with W (dout, din): nn.Linear / F.linear. */
function lin(X: F, n: number, din: number, W: F, dout: number, b: F | null = null): F {
  const out = new Float64Array(n * dout);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < dout; o++) {
      let s = b ? (b[o] as number) : 0;
      for (let k = 0; k < din; k++) s += (X[i * din + k] as number) * (W[o * din + k] as number);
      out[i * dout + o] = s;
    }
  }
  return out;
}
/** X (n, k) · W (k, m). */
function mm(X: F, n: number, k: number, W: F, m: number): F {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += (X[i * k + t] as number) * (W[t * m + j] as number);
      out[i * m + j] = s;
    }
  }
  return out;
}
function ln(X: F, n: number, d: number, w: F, b: F, eps: number): F {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let mu = 0;
    for (let k = 0; k < d; k++) mu += X[i * d + k] as number;
    mu /= d;
    let v = 0;
    for (let k = 0; k < d; k++) v += ((X[i * d + k] as number) - mu) ** 2;
    v /= d;
    const r = 1 / Math.sqrt(v + eps);
    for (let k = 0; k < d; k++)
      out[i * d + k] = ((X[i * d + k] as number) - mu) * r * (w[k] as number) + (b[k] as number);
  }
  return out;
}
const relu = (X: F): F => X.map((v) => Math.max(v, 0));
const addF = (a: F, b: F, s = 1): F => a.map((v, i) => v + s * (b[i] as number));
/** Attention of model/crate.py: P = X·Uᵀ; per head softmax(P_h P_hᵀ/√p) P_h; to_out. */
function mssa(X: F, n: number, D: number, H: number, qkv: F, outW: F, outB: F | null): F {
  const HP = qkv.length / D;
  const p = HP / H;
  const P = lin(X, n, D, qkv, HP);
  const O = new Float64Array(n * HP);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < n; i++) {
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let c = 0; c < p; c++) d += (P[i * HP + h * p + c] as number) * (P[j * HP + h * p + c] as number);
        s[j] = d / Math.sqrt(p);
      }
      const mx = Math.max(...s);
      const e = s.map((v) => Math.exp(v - mx));
      const z = e.reduce((a, v) => a + v, 0);
      for (let c = 0; c < p; c++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += ((e[j] as number) / z) * (P[j * HP + h * p + c] as number);
        O[i * HP + h * p + c] = acc;
      }
    }
  }
  return lin(O, n, HP, outW, D, outB);
}
/** FeedForward of model/crate.py: ReLU(x + η(x·W − x·Wᵀ·W) − ηλ). */
function ista(Y: F, n: number, d: number, W: F, eta: number, lam: number): F {
  const xW = mm(Y, n, d, W, d);
  const xWtW = mm(lin(Y, n, d, W, d), n, d, W, d);
  return relu(Y.map((v, i) => v + eta * ((xW[i] as number) - (xWtW[i] as number)) - eta * lam));
}
/** CRATE-α OvercompleteISTABlock (its einsums written out). D, D1 (d, m). */
function odl(Y: F, n: number, d: number, D: F, D1: F, eta: number, lam: number): F {
  const m = D.length / d;
  const z1 = relu(mm(Y, n, d, D, m).map((v) => eta * v - eta * lam));
  const Dz1 = lin(z1, n, m, D, d); // z1·Dᵀ
  const grad = mm(addF(Dz1, Y, -1), n, d, D, m);
  const z2 = relu(z1.map((v, i) => v - eta * (grad[i] as number) - eta * lam));
  return lin(z2, n, m, D1, d); // z2·D1ᵀ
}
/** Conv2d(k = stride = P) of sample b: tokens row-major, (N, D). */
function conv(img: F, b: number, Cc: number, S: number, P: number, W: F, bias: F, D: number): F {
  const g = S / P;
  const out = new Float64Array(g * g * D);
  for (let i = 0; i < g; i++) {
    for (let j = 0; j < g; j++) {
      for (let o = 0; o < D; o++) {
        let s = bias[o] as number;
        for (let c = 0; c < Cc; c++) {
          for (let u = 0; u < P; u++) {
            for (let v = 0; v < P; v++) {
              s +=
                (img[((b * Cc + c) * S + i * P + u) * S + j * P + v] as number) *
                (W[((o * Cc + c) * P + u) * P + v] as number);
            }
          }
        }
        out[(i * g + j) * D + o] = s;
      }
    }
  }
  return out;
}
/** MAE pos_embed.py transcribed: meshgrid(w, h), emb_h from grid[0], emb_w from grid[1], cls row 0. */
function sincosRef(D: number, g: number): F {
  const oneD = (E: number, pos: number[]): number[][] =>
    pos.map((x) => {
      const omega = Array.from({ length: E / 2 }, (_, m) => 1 / 10000 ** (m / (E / 2)));
      return [...omega.map((w) => Math.sin(x * w)), ...omega.map((w) => Math.cos(x * w))];
    });
  const grid0: number[] = [];
  const grid1: number[] = [];
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      grid0.push(c); // meshgrid(grid_w, grid_h)[0][r][c] = grid_w[c]
      grid1.push(r);
    }
  }
  const eh = oneD(D / 2, grid0);
  const ew = oneD(D / 2, grid1);
  const rows = [new Array<number>(D).fill(0), ...eh.map((row, k) => [...row, ...(ew[k] as number[])])];
  return Float64Array.from(rows.flat());
}
/** MAE patchify: reshape (n, c, h, p, w, q), einsum nchpwq→nhwpqc: (B, N, p²c). */
function patchifyRef(img: F, B: number, Cc: number, S: number, P: number): F {
  const g = S / P;
  const out = new Float64Array(B * g * g * P * P * Cc);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < g; h++)
      for (let w = 0; w < g; w++)
        for (let p = 0; p < P; p++)
          for (let q = 0; q < P; q++)
            for (let c = 0; c < Cc; c++) {
              out[(((b * g + h) * g + w) * P + p) * P * Cc + q * Cc + c] = img[
                ((b * Cc + c) * S + h * P + p) * S + w * P + q
              ] as number;
            }
  return out;
}

// ---------------------------------------------------------------- model helpers
/** Every parameter ~ U(-s, s) (LayerNorm weights 1 ± 0.3), from a fixed seed. */
function randomize(m: Module, seed: number, s = 0.5): void {
  const rnd = mulberry32(seed);
  C.noGrad(() => {
    for (const [name, p] of m.namedParameters()) {
      const isLnW = /(norm|mlp_head\.0)\.weight$/.test(name);
      const d = Float64Array.from({ length: p.numel }, () => (isLnW ? 1 + 0.6 * (rnd() - 0.5) : s * (2 * rnd() - 1)));
      const t = C.tensor(p.dtype === 'f64' ? d : Float32Array.from(d), { shape: [...p.shape], dtype: p.dtype });
      p.copy_(t);
      t.dispose();
    }
  });
}
function uniformT(shape: number[], seed: number, dtype: 'f32' | 'f64' = 'f64', lo = -1, hi = 1): Tensor {
  const rnd = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = Float64Array.from({ length: n }, () => lo + (hi - lo) * rnd());
  return C.tensor(dtype === 'f64' ? d : Float32Array.from(d), { shape, dtype });
}
function sdArrays(m: Module): Record<string, F> {
  const out: Record<string, F> = {};
  for (const [k, v] of Object.entries(m.stateDict())) out[k] = arr(v);
  return out;
}
const need = (sd: Record<string, F>, k: string): F => {
  const v = sd[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
/** Central differences of lossFn wrt p[idx] vs the analytic gradient g[idx]. */
function fdCheck(p: Tensor, idx: number, lossFn: () => number, analytic: number, h = 1e-6): void {
  const orig = arr(p);
  const set = (v: number) => {
    const d = Float64Array.from(orig);
    d[idx] = v;
    const t = C.tensor(d, { shape: [...p.shape], dtype: 'f64' });
    p.copy_(t);
    t.dispose();
  };
  set((orig[idx] as number) + h);
  const lp = lossFn();
  set((orig[idx] as number) - h);
  const lm = lossFn();
  set(orig[idx] as number);
  const fd = (lp - lm) / (2 * h);
  expect(Math.abs(fd - analytic)).toBeLessThan(1e-6 * (1 + Math.abs(analytic)));
}

// ================================================================= CRATE-MAE
const tinyMae: CrateMaeConfig = {
  imageSize: 6,
  patchSize: 2,
  channels: 2,
  dim: 8,
  depth: 2,
  heads: 2,
  decoderDepth: 2,
  decoderHeads: 2,
  dtype: 'f64',
};

/** The authors' MaskedAutoencoderViT.forward in plain loops, from the model's state dict. */
function maeReference(model: CrateMAE, img: F, B: number, noise: F, ratio: number) {
  const c = model.config;
  const sd = sdArrays(model);
  const D = c.dim;
  const P = c.patchSize;
  const S = c.imageSize;
  const N = (S / P) ** 2;
  const keep = Math.trunc(N * (1 - ratio)); // int(L * (1 - mask_ratio))
  const mask = new Float64Array(B * N);
  for (let b = 0; b < B; b++) {
    const ids = Array.from({ length: N }, (_, i) => i).sort(
      (x, y) => (noise[b * N + x] as number) - (noise[b * N + y] as number),
    );
    for (let r = keep; r < N; r++) mask[b * N + (ids[r] as number)] = 1;
  }
  const dpe = sincosRef(D, S / P);
  const pd = P * P * c.channels;
  const pred = new Float64Array(B * N * pd);
  const latentNoMask: F[] = [];
  for (const masked of [true, false]) {
    for (let b = 0; b < B; b++) {
      const x = conv(
        img,
        b,
        c.channels,
        S,
        P,
        need(sd, 'patch_embed.proj.weight'),
        need(sd, 'patch_embed.proj.bias'),
        D,
      );
      let z = new Float64Array((N + 1) * D);
      for (let k = 0; k < D; k++) z[k] = need(sd, 'cls_token')[k] as number;
      for (let t = 0; t < N; t++) {
        const src = masked && mask[b * N + t] === 1 ? need(sd, 'mask_token') : x.subarray(t * D, (t + 1) * D);
        for (let k = 0; k < D; k++) z[(t + 1) * D + k] = src[k] as number;
      }
      z = addF(z, dpe);
      const n = N + 1;
      for (let l = 0; l < c.depth; l++) {
        const pre = `blocks.${l}.layers.0.`;
        const a = ln(z, n, D, need(sd, `${pre}0.norm.weight`), need(sd, `${pre}0.norm.bias`), 1e-5);
        const at = mssa(
          a,
          n,
          D,
          c.heads,
          need(sd, `${pre}0.fn.qkv.weight`),
          need(sd, `${pre}0.fn.to_out.0.weight`),
          need(sd, `${pre}0.fn.to_out.0.bias`),
        );
        const half = addF(at, z);
        const y = ln(half, n, D, need(sd, `${pre}1.norm.weight`), need(sd, `${pre}1.norm.bias`), 1e-5);
        z = ista(y, n, D, need(sd, `${pre}1.fn.weight`), 0.1, 0.5);
      }
      z = ln(z, n, D, need(sd, 'norm.weight'), need(sd, 'norm.bias'), 1e-6);
      if (!masked) {
        latentNoMask.push(z);
        continue;
      }
      for (let l = 0; l < c.decoderDepth; l++) {
        const pre = `decoder_blocks.${l}.layers.0.`;
        const a = ln(z, n, D, need(sd, `${pre}0.norm.weight`), need(sd, `${pre}0.norm.bias`), 1e-5);
        const g = lin(a, n, D, need(sd, `${pre}0.fn.weight`), D); // F.linear(x, W): A@x
        const a2 = ln(g, n, D, need(sd, `${pre}1.norm.weight`), need(sd, `${pre}1.norm.bias`), 1e-5);
        const at = mssa(
          a2,
          n,
          D,
          c.decoderHeads,
          need(sd, `${pre}1.fn.qkv.weight`),
          need(sd, `${pre}1.fn.to_out.0.weight`),
          need(sd, `${pre}1.fn.to_out.0.bias`),
        );
        z = addF(g, at, -1); // grad_x - attn(grad_x)
      }
      z = ln(z, n, D, need(sd, 'decoder_norm.weight'), need(sd, 'decoder_norm.bias'), 1e-6);
      const y = lin(z, n, D, need(sd, 'decoder_pred.weight'), pd, need(sd, 'decoder_pred.bias'));
      pred.set(y.subarray(pd), b * N * pd); // drop cls
    }
  }
  const target = patchifyRef(img, B, c.channels, S, P);
  let num = 0;
  let den = 0;
  for (let t = 0; t < B * N; t++) {
    let e = 0;
    for (let k = 0; k < pd; k++) e += ((pred[t * pd + k] as number) - (target[t * pd + k] as number)) ** 2;
    num += (e / pd) * (mask[t] as number);
    den += mask[t] as number;
  }
  return { loss: num / den, pred, mask, latentNoMask };
}

describe('CRATE-MAE', () => {
  test('forward, loss, mask and encode() match the plain-loop reference (f64)', () => {
    C.manualSeed(11);
    const model = new CrateMAE(tinyMae);
    randomize(model, 3);
    const B = 2;
    const img = uniformT([B, 2, 6, 6], 5);
    const noise = uniformT([B, 9], 7, 'f32', 0, 1);
    const ref = maeReference(model, arr(img), B, arr(noise), 0.75);
    const out = model.forward(img, { noise, maskRatio: 0.75 });
    expect(out.pred.shape).toEqual([B, 9, 8]);
    expect(out.mask.shape).toEqual([B, 9]);
    expect(out.loss.shape).toEqual([]);
    expect(Array.from(arr(out.mask))).toEqual(Array.from(ref.mask));
    expect(relErr(arr(out.pred), ref.pred)).toBeLessThan(1e-12);
    expect(Math.abs(out.loss.item() - ref.loss)).toBeLessThan(1e-12 * (1 + ref.loss));
    const enc = model.encode(img);
    expect(enc.shape).toEqual([B, 10, 8]);
    const encRef = new Float64Array(B * 10 * 8);
    ref.latentNoMask.forEach((z, b) => {
      encRef.set(z, b * 80);
    });
    expect(relErr(arr(enc), encRef)).toBeLessThan(1e-12);
    // the fixed tables: sin-cos from the numpy recipe, cls row 0, in both buffers
    const table = sincosRef(8, 3);
    expect(relErr(arr(model.decoder_pos_embed), table)).toBeLessThan(1e-15);
    expect(relErr(arr(model.pos_embed), table)).toBeLessThan(1e-15);
    expect(relErr(sincosPosEmbed2d(64, 4), sincosRef(64, 4))).toBeLessThan(1e-15);
    // normPixLoss: target patches standardised by their mean and unbiased variance
    const mp = new CrateMAE({ ...tinyMae, normPixLoss: true });
    mp.loadStateDict(model.stateDict());
    const o2 = mp.forward(img, { noise, maskRatio: 0.75 });
    const tgt = patchifyRef(arr(img), B, 2, 6, 2);
    let num = 0;
    for (let t = 0; t < B * 9; t++) {
      const row = tgt.subarray(t * 8, t * 8 + 8);
      const mu = row.reduce((a, v) => a + v, 0) / 8;
      const v = row.reduce((a, x) => a + (x - mu) ** 2, 0) / 7;
      let e = 0;
      for (let k = 0; k < 8; k++)
        e += ((ref.pred[t * 8 + k] as number) - ((row[k] as number) - mu) / Math.sqrt(v + 1e-6)) ** 2;
      num += (e / 8) * (ref.mask[t] as number);
    }
    expect(Math.abs(o2.loss.item() - num / ref.mask.reduce((a, x) => a + x, 0))).toBeLessThan(1e-10);
    for (const t of [img, noise, out.loss, out.pred, out.mask, enc, o2.loss, o2.pred, o2.mask]) t.dispose();
    model.dispose();
    mp.dispose();
  });

  test('unpatchify inverts patchify (authors order)', () => {
    const model = new CrateMAE(tinyMae);
    const img = uniformT([2, 2, 6, 6], 9);
    const p = model.patchify(img);
    expect(relErr(arr(p), patchifyRef(arr(img), 2, 2, 6, 2))).toBe(0);
    const back = model.unpatchify(p);
    expect(Array.from(arr(back))).toEqual(Array.from(arr(img)));
    for (const t of [img, p, back]) t.dispose();
    model.dispose();
  });

  test('loss gradients match central finite differences (f64)', () => {
    C.manualSeed(12);
    const model = new CrateMAE(tinyMae);
    randomize(model, 4);
    const img = uniformT([2, 2, 6, 6], 6);
    const noise = uniformT([2, 9], 8, 'f32', 0, 1);
    C.tidy(() => model.forward(img, { noise }).loss.backward());
    const sd = model.stateDict();
    const lossFn = () => C.tidy(() => C.noGrad(() => model.forward(img, { noise }).loss.item()));
    const picks: [string, number][] = [
      ['patch_embed.proj.weight', 5],
      ['patch_embed.proj.bias', 1],
      ['cls_token', 2],
      ['mask_token', 3],
      ['blocks.0.layers.0.0.fn.qkv.weight', 17],
      ['blocks.0.layers.0.0.fn.to_out.0.bias', 4],
      ['blocks.1.layers.0.1.fn.weight', 9],
      ['blocks.0.layers.0.1.norm.weight', 6],
      ['norm.bias', 2],
      ['decoder_blocks.0.layers.0.0.fn.weight', 21],
      ['decoder_blocks.1.layers.0.1.fn.qkv.weight', 30],
      ['decoder_blocks.0.layers.0.1.fn.to_out.0.weight', 11],
      ['decoder_norm.weight', 5],
      ['decoder_pred.weight', 40],
      ['decoder_pred.bias', 7],
    ];
    for (const [name, idx] of picks) {
      const p = sd[name] as Tensor;
      const g = p.grad;
      expect(g, `grad of ${name}`).toBeTruthy();
      fdCheck(p, idx, lossFn, arr(g as Tensor)[idx] as number);
    }
    // decoder_embed exists for the state dict but is unused, as in the authors' forward
    expect(model.decoder_embed.weight.grad).toBeNull();
    expect(model.namedParameters().some(([n]) => n === 'decoder_pos_embed' || n === 'pos_embed')).toBe(false);
    model.zeroGrad();
    img.dispose();
    noise.dispose();
    model.dispose();
  });

  test('preset parameter counts match the spec (book: S 25.4M, B 44.6M with the sin-cos tables)', () => {
    const m = (n: number) => Math.round(n / 1e4) / 100;
    const small = crateMaeFromPreset('crate-mae-small');
    expect(small.numParameters()).toBe(25_178_880); // spec: 25.18M from the code
    expect(m(small.numParametersWithBuffers())).toBe(25.41);
    expect(small.numParameters()).toBe(crateMaeParamCount(small.config));
    small.dispose();
    const base = crateMaeFromPreset('crate-mae-base');
    expect(base.numParameters()).toBe(44_335_872); // spec: 44.34M
    expect(m(base.numParametersWithBuffers())).toBe(44.64);
    expect(base.numParametersWithBuffers()).toBe(crateMaeParamCount(base.config, { withBuffers: true }));
    base.dispose();
    for (const name of ['crate-mae-tiny', 'crate-mae-demo']) {
      const x = crateMaeFromPreset(name);
      expect(x.numParameters(), name).toBe(crateMaeParamCount(x.config));
      x.dispose();
    }
    expect(crateMaeParamCount(CRATE_MAE_PRESETS['crate-mae-large'] as CrateMaeConfig)).toBe(153_871_104);
    expect(Object.keys(CRATE_MAE_PRESETS)).toEqual(
      expect.arrayContaining(['crate-mae-small', 'crate-mae-base', 'crate-mae-demo']),
    );
  });

  test('masking: int(N(1-r)) kept per sample, seeded, deterministic, masked pixels unseen', () => {
    const model = crateMaeFromPreset('crate-mae-demo'); // N = 16
    for (const [r, kept] of [
      [0.75, 4],
      [0.5, 8],
      [0.6, 6],
      [0.7, 4], // int(4.8) as the authors' len_keep (round would give 5)
      [0, 16],
    ] as const) {
      expect(model.numKept(r)).toBe(kept);
      const mk = model.randomMask(5, { maskRatio: r, seed: 1 });
      const d = arr(mk);
      for (let b = 0; b < 5; b++) {
        expect(d.subarray(b * 16, b * 16 + 16).reduce((a, v) => a + v, 0)).toBe(16 - kept);
      }
      mk.dispose();
    }
    const a = arr(model.randomMask(4, { seed: 42 }));
    const b = arr(model.randomMask(4, { seed: 42 }));
    const c = arr(model.randomMask(4, { seed: 43 }));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    expect(Array.from(a.subarray(0, 16))).not.toEqual(Array.from(a.subarray(16, 32))); // per-sample noise
    C.manualSeed(7);
    const g1 = arr(model.randomMask(2));
    C.manualSeed(7);
    const g2 = arr(model.randomMask(2));
    expect(Array.from(g1)).toEqual(Array.from(g2));
    // forward with a seed: same mask and loss twice; pixels of masked patches do not reach pred
    const img = uniformT([2, 1, 28, 28], 1, 'f32', 0, 1);
    const o1 = model.forward(img, { seed: 5 });
    const o2 = model.forward(img, { seed: 5 });
    expect(o1.loss.item()).toBe(o2.loss.item());
    const mask = arr(o1.mask);
    const t = mask.indexOf(1); // first masked patch of sample 0
    const pix = arr(img);
    const [pi, pj] = [Math.floor(t / 4), t % 4];
    for (let u = 0; u < 7; u++) for (let v = 0; v < 7; v++) pix[(pi * 7 + u) * 28 + pj * 7 + v] = 5;
    const img2 = C.tensor(Float32Array.from(pix), { shape: [2, 1, 28, 28] });
    const o3 = model.forward(img2, { seed: 5 });
    expect(Array.from(arr(o3.pred))).toEqual(Array.from(arr(o1.pred)));
    expect(o3.loss.item()).not.toBe(o1.loss.item()); // the target changed
    for (const x of [img, img2, o1, o2, o3].flatMap((o) => ('loss' in o ? [o.loss, o.pred, o.mask] : [o]))) {
      x.dispose();
    }
    model.dispose();
  });

  test("stateDict keys and shapes are the authors' (strict round trip)", () => {
    const model = crateMaeFromPreset('crate-mae-demo');
    const sd = model.stateDict();
    const shapes: Record<string, number[]> = {
      'patch_embed.proj.weight': [64, 1, 7, 7],
      'patch_embed.proj.bias': [64],
      cls_token: [1, 1, 64],
      mask_token: [1, 1, 64],
      pos_embed: [1, 17, 64],
      decoder_pos_embed: [1, 17, 64],
      'blocks.0.layers.0.0.norm.weight': [64],
      'blocks.0.layers.0.0.fn.qkv.weight': [64, 64],
      'blocks.1.layers.0.0.fn.to_out.0.weight': [64, 64],
      'blocks.1.layers.0.0.fn.to_out.0.bias': [64],
      'blocks.1.layers.0.1.fn.weight': [64, 64],
      'norm.weight': [64],
      'decoder_embed.weight': [64, 64],
      'decoder_embed.bias': [64],
      'decoder_blocks.0.layers.0.0.norm.bias': [64],
      'decoder_blocks.0.layers.0.0.fn.weight': [64, 64],
      'decoder_blocks.1.layers.0.1.fn.qkv.weight': [64, 64],
      'decoder_blocks.1.layers.0.1.fn.to_out.0.bias': [64],
      'decoder_norm.bias': [64],
      'decoder_pred.weight': [49, 64],
      'decoder_pred.bias': [49],
    };
    for (const [k, s] of Object.entries(shapes)) expect(sd[k]?.shape, k).toEqual(s);
    // tokens + 2 tables, patch_embed, 2 × 8 encoder, norm, decoder_embed, 2 × 8 decoder, decoder_norm, pred
    expect(Object.keys(sd).length).toBe(4 + 2 + 2 * 8 + 2 + 2 + 2 * 8 + 2 + 2);
    expect(model.norm.eps).toBe(1e-6);
    expect(model.decoder_norm.eps).toBe(1e-6);
    expect(model.blocks.at(0).attn.norm.eps).toBe(1e-5);
    expect(model.blocks.at(0).ista.fn.lambda).toBe(0.5);
    expect(model.blocks.at(0).ista.fn.eta).toBe(0.1);
    // authors' init: Linear biases 0, tokens N(0, 0.02)
    expect(Math.max(...arr(model.decoder_pred.bias).map(Math.abs))).toBe(0);
    expect(Math.max(...arr(model.mask_token).map(Math.abs))).toBeLessThan(0.1);
    const other = crateMaeFromPreset('crate-mae-demo');
    other.loadStateDict(sd, { strict: true });
    const img = uniformT([2, 1, 28, 28], 2, 'f32', 0, 1);
    const a = model.forward(img, { seed: 3 });
    const b = other.forward(img, { seed: 3 });
    expect(a.loss.item()).toBe(b.loss.item());
    for (const t of [img, a.loss, a.pred, a.mask, b.loss, b.pred, b.mask]) t.dispose();
    model.dispose();
    other.dispose();
  });

  test('a few AdamW steps on a fixed batch lower the loss', () => {
    C.manualSeed(1);
    const model = crateMaeFromPreset('crate-mae-demo');
    const B = 8;
    const d = new Float32Array(B * 28 * 28);
    for (let b = 0; b < B; b++)
      for (let y = 0; y < 28; y++)
        for (let x = 0; x < 28; x++) d[(b * 28 + y) * 28 + x] = 0.5 + 0.5 * Math.sin(0.25 * (b + 1) * x + 0.15 * y);
    const img = C.tensor(d, { shape: [B, 1, 28, 28] });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.05 });
    const losses: number[] = [];
    for (let s = 0; s < 12; s++) {
      C.tidy(() => {
        const { loss } = model.forward(img, { seed: 100 });
        losses.push(loss.item());
        loss.backward();
      });
      opt.step();
      opt.zeroGrad();
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1] as number).toBeLessThan(0.5 * (losses[0] as number));
    opt.dispose();
    img.dispose();
    model.dispose();
  });

  test('bad input gives errors naming the model and the shapes', () => {
    const model = crateMaeFromPreset('crate-mae-demo');
    const bad = C.zeros([2, 3, 28, 28]);
    expect(() => model.forward(bad)).toThrow(/CrateMAE: expected images \(B, 1, 28, 28\), got \[2, 3, 28, 28\]/);
    expect(() => model.encode(bad)).toThrow(/CrateMAE: expected images \(B, 1, 28, 28\), got \[2, 3, 28, 28\]/);
    const x3 = C.zeros([1, 28, 28]);
    expect(() => model.forward(x3)).toThrow(/CrateMAE: expected images .* got \[1, 28, 28\]/);
    const ok = C.zeros([2, 1, 28, 28]);
    expect(() => model.forward(ok, { maskRatio: 1 })).toThrow(/CrateMAE: maskRatio must be in \[0, 1\), got 1/);
    expect(() => model.forward(ok, { maskRatio: 0 })).toThrow(/CrateMAE: the mask removes no patch/);
    const nz = C.zeros([2, 15]);
    expect(() => model.forward(ok, { noise: nz })).toThrow(/CrateMAE: expected noise \(2, 16\), got \[2, 15\]/);
    const f64 = C.zeros([2, 1, 28, 28], { dtype: 'f64' });
    expect(() => model.forward(f64)).toThrow(/CrateMAE: expected f32 images, got f64/);
    expect(() => crateMaeFromPreset('crate-mae-huge')).toThrow(/unknown CRATE-MAE preset 'crate-mae-huge'/);
    expect(() => new CrateMAE({ imageSize: 28, patchSize: 5, dim: 8, depth: 1, heads: 2 })).toThrow(
      /CrateMAE: image size 28 is not divisible by patch size 5/,
    );
    expect(() => new CrateMAE({ imageSize: 8, patchSize: 4, dim: 6, depth: 1, heads: 2 })).toThrow(
      /CrateMAE: dim 6 must be divisible by 4/,
    );
    for (const t of [bad, x3, ok, nz, f64]) t.dispose();
    model.dispose();
  });

  test('no tensor leaks (forward + backward, encode)', () => {
    const model = new CrateMAE({ ...tinyMae, dtype: 'f32' });
    const img = uniformT([2, 2, 6, 6], 1, 'f32');
    const before = C.memory();
    C.tidy(() => {
      const { loss } = model.forward(img, { seed: 9 });
      loss.backward();
      model.encode(img);
      model.zeroGrad();
    });
    const after = C.memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.cpu.bytes).toBe(before.cpu.bytes);
    img.dispose();
    model.dispose();
  });
});

// ================================================================= CRATE-α
const tinyAlpha: CrateAlphaConfig = {
  imageSize: 6,
  patchSize: 2,
  channels: 2,
  numClasses: 5,
  dim: 8,
  depth: 2,
  heads: 2,
  dtype: 'f64',
};

/** crate_alpha.py CRATE.forward in plain loops from the state dict: logits (B, classes). */
function alphaReference(model: CrateAlpha, img: F, B: number): F {
  const c = model.config;
  const sd = sdArrays(model);
  const D = c.dim;
  const N = model.numPatches;
  const n = N + 1;
  const out = new Float64Array(B * c.numClasses);
  for (let b = 0; b < B; b++) {
    const x = conv(img, b, c.channels, c.imageSize, c.patchSize, need(sd, 'conv1.weight'), need(sd, 'conv1.bias'), D);
    let z = new Float64Array(n * D);
    z.set(need(sd, 'cls_token'), 0);
    z.set(x, D);
    z = addF(z, need(sd, 'pos_embedding'));
    for (let l = 0; l < c.depth; l++) {
      const pre = `transformer.layers.${l}.`;
      const a = ln(z, n, D, need(sd, `${pre}0.norm.weight`), need(sd, `${pre}0.norm.bias`), 1e-6);
      z = addF(
        mssa(a, n, D, c.heads, need(sd, `${pre}0.fn.qkv.weight`), need(sd, `${pre}0.fn.to_out.0.weight`), null),
        z,
      );
      const y = ln(z, n, D, need(sd, `${pre}1.norm.weight`), need(sd, `${pre}1.norm.bias`), 1e-6);
      z = addF(odl(y, n, D, need(sd, `${pre}1.fn.D`), need(sd, `${pre}1.fn.D1`), 0.1, 0.1), z);
    }
    const h = ln(z.subarray(0, D), 1, D, need(sd, 'mlp_head.0.weight'), need(sd, 'mlp_head.0.bias'), 1e-5);
    out.set(lin(h, 1, D, need(sd, 'mlp_head.1.weight'), c.numClasses, need(sd, 'mlp_head.1.bias')), b * c.numClasses);
  }
  return out;
}

describe('CRATE-α', () => {
  test('logits match the plain-loop reference (f64)', () => {
    C.manualSeed(21);
    const model = new CrateAlpha(tinyAlpha);
    randomize(model, 5, 0.4);
    const img = uniformT([3, 2, 6, 6], 10);
    const logits = model.forward(img);
    expect(logits.shape).toEqual([3, 5]);
    const ref = alphaReference(model, arr(img), 3);
    expect(relErr(arr(logits), ref)).toBeLessThan(1e-12);
    // the ODL step is not trivially zero or linear here: some codes are active, some clipped
    const feats = model.features(img);
    expect(feats.shape).toEqual([3, 10, 8]);
    logits.dispose();
    feats.dispose();
    img.dispose();
    model.dispose();
  });

  test('gradients match central finite differences (f64)', () => {
    C.manualSeed(22);
    const model = new CrateAlpha(tinyAlpha);
    randomize(model, 6, 0.4);
    const img = uniformT([2, 2, 6, 6], 11);
    const labels = C.tensor(Int32Array.from([1, 4]), { dtype: 'i32' });
    const lossOf = () => C.crossEntropy(model.forward(img), labels);
    C.tidy(() => lossOf().backward());
    const sd = model.stateDict();
    const lossFn = () => C.tidy(() => C.noGrad(() => lossOf().item()));
    const picks: [string, number][] = [
      ['conv1.weight', 7],
      ['conv1.bias', 3],
      ['cls_token', 1],
      ['pos_embedding', 20],
      ['transformer.layers.0.0.fn.qkv.weight', 13],
      ['transformer.layers.1.0.fn.to_out.0.weight', 5],
      ['transformer.layers.0.1.fn.D', 33],
      ['transformer.layers.1.1.fn.D1', 50],
      ['transformer.layers.1.1.norm.weight', 2],
      ['mlp_head.0.bias', 4],
      ['mlp_head.1.weight', 12],
    ];
    for (const [name, idx] of picks) {
      const p = sd[name] as Tensor;
      expect(p.grad, `grad of ${name}`).toBeTruthy();
      fdCheck(p, idx, lossFn, arr(p.grad as Tensor)[idx] as number);
    }
    model.zeroGrad();
    img.dispose();
    labels.dispose();
    model.dispose();
  });

  test('preset parameter counts match the spec (B/16 72.33M, L/14 253.65M)', () => {
    const b16 = crateAlphaFromPreset('crate-alpha-b16');
    expect(b16.numParameters()).toBe(72_328_936);
    expect(crateAlphaParamCount(b16.config)).toBe(72_328_936);
    b16.dispose();
    expect(
      Math.round(crateAlphaParamCount(CRATE_ALPHA_PRESETS['crate-alpha-l14'] as CrateAlphaConfig) / 1e4) / 100,
    ).toBe(253.65);
    for (const name of ['crate-alpha-ti16', 'crate-alpha-demo']) {
      const m = crateAlphaFromPreset(name);
      expect(m.numParameters(), name).toBe(crateAlphaParamCount(m.config));
      m.dispose();
    }
    const l = CRATE_ALPHA_PRESETS['crate-alpha-l14'];
    expect([l?.dim, l?.depth, l?.heads, l?.patchSize]).toEqual([1024, 24, 16, 14]);
  });

  test("stateDict keys and shapes are the authors' (no to_out bias, eps 1e-6 blocks)", () => {
    const model = crateAlphaFromPreset('crate-alpha-demo');
    const sd = model.stateDict();
    const shapes: Record<string, number[]> = {
      'conv1.weight': [64, 1, 7, 7],
      'conv1.bias': [64],
      pos_embedding: [1, 17, 64],
      cls_token: [1, 1, 64],
      'transformer.layers.0.0.norm.weight': [64],
      'transformer.layers.0.0.fn.qkv.weight': [64, 64],
      'transformer.layers.0.0.fn.to_out.0.weight': [64, 64],
      'transformer.layers.1.1.norm.bias': [64],
      'transformer.layers.1.1.fn.D': [64, 256],
      'transformer.layers.1.1.fn.D1': [64, 256],
      'mlp_head.0.weight': [64],
      'mlp_head.1.weight': [10, 64],
      'mlp_head.1.bias': [10],
    };
    for (const [k, s] of Object.entries(shapes)) expect(sd[k]?.shape, k).toEqual(s);
    expect(sd['transformer.layers.0.0.fn.to_out.0.bias']).toBeUndefined();
    expect(Object.keys(sd).length).toBe(4 + 2 * 8 + 4); // conv1 ×2, pos, cls; 2 layers × 8; head
    const { attn, odl: ff } = model.transformer.layer(0);
    expect(attn.norm.eps).toBe(1e-6);
    expect(ff.norm.eps).toBe(1e-6);
    expect([ff.fn.eta, ff.fn.lambda]).toEqual([0.1, 0.1]);
    expect((model.mlp_head.layers[0] as C.nn.LayerNorm).eps).toBe(1e-5);
    model.dispose();
  });

  test('a few AdamW steps on a fixed batch lower the loss', () => {
    C.manualSeed(2);
    const model = crateAlphaFromPreset('crate-alpha-demo');
    const img = uniformT([8, 1, 28, 28], 4, 'f32', 0, 1);
    const labels = C.tensor(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), { dtype: 'i32' });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const losses: number[] = [];
    for (let s = 0; s < 8; s++) {
      C.tidy(() => {
        const loss = C.crossEntropy(model.forward(img), labels);
        losses.push(loss.item());
        loss.backward();
      });
      opt.step();
      opt.zeroGrad();
    }
    expect(losses[losses.length - 1] as number).toBeLessThan(losses[0] as number);
    opt.dispose();
    img.dispose();
    labels.dispose();
    model.dispose();
  });

  test('bad input gives errors naming the model and the shapes', () => {
    const model = crateAlphaFromPreset('crate-alpha-demo');
    const bad = C.zeros([2, 3, 32, 32]);
    expect(() => model.forward(bad)).toThrow(/CrateAlpha: expected images \(B, 1, 28, 28\), got \[2, 3, 32, 32\]/);
    expect(() => crateAlphaFromPreset('crate-alpha-x')).toThrow(/unknown CRATE-alpha preset 'crate-alpha-x'/);
    expect(() => new CrateAlpha({ ...tinyAlpha, patchSize: 4 })).toThrow(/CrateAlpha: image size 6 is not divisible/);
    bad.dispose();
    model.dispose();
  });

  test('no tensor leaks (forward + backward)', () => {
    const model = new CrateAlpha({ ...tinyAlpha, dtype: 'f32' });
    const img = uniformT([2, 2, 6, 6], 1, 'f32');
    const labels = C.tensor(Int32Array.from([0, 3]), { dtype: 'i32' });
    const before = C.memory();
    C.tidy(() => {
      C.crossEntropy(model.forward(img), labels).backward();
      model.features(img);
      model.zeroGrad();
    });
    const after = C.memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.cpu.bytes).toBe(before.cpu.bytes);
    img.dispose();
    labels.dispose();
    model.dispose();
  });
});
