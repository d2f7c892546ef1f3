// tost.ts: ToST (token statistics transformer) as coded in RobinWu218/ToST (spec 1.7).
//
// Vision (tost_vision/tost.py `VisionTransformer`, XCiT-style): ConvPatchEmbed (a stack of
// conv3×3/stride-2 + BatchNorm with GELU between) or, for small images, a single conv with
// kernel = stride = patch; Fourier positional encoding added to the patch tokens; L blocks of
// [z += γ1·TSSA(LN1 z); z += γ2·MLP(LN2 z)] on the patch tokens only; then a cls token and two
// CaiT class-attention blocks (with the XCiT quirk that doubles the patch tokens); norm(x)[:, 0]
// → head. Keys as the authors': `blocks.0.attn.qkv.weight`, `blocks.0.attn.to_out.0.weight`,
// `cls_attn_blocks.0.attn.qkv.weight`, `patch_embed.proj.0.1.running_mean`, ...
//
// Language (tost_lang/model_TSSA.py `GPT` with TSSA=True): nanoGPT with causal TSSA attention,
// [x += γ1·attn(ln_1 x); x += γ2·MLP(ln_2 x)], γ initialised to 1e-5, ln_f, tied lm_head.
// Keys: `transformer.h.0.attn.c_attn.weight`, `transformer.h.0.attn.temp` (H, 1),
// `transformer.h.0.attn.denom_bias` (H, block_size, 1), `transformer.h.0.gamma1`, ...
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { linearDefault } from '../nn/init.js';
import {
  Dropout,
  ConvPatchEmbed as KernelPatchEmbed,
  LayerNorm,
  Linear,
  ModuleList,
  Sequential,
} from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { tssa, tssaCausal } from '../ops/crate.js';
import { bernoulli, full, ones, randn, tensor, zeros } from '../ops/creation.js';
import { add, affine, clamp, gelu, mul, rsqrt, square, sub } from '../ops/elementwise.js';
import { linear, matmul } from '../ops/matmul.js';
import { softmax } from '../ops/nn.js';
import { mean } from '../ops/reduce.js';
import { concat, expand, permute, reshape, slice, stack } from '../ops/shape.js';
import { formatShape, Tensor } from '../tensor.js';
import { CausalLM, checkLMConfig, GPTTransformer, gptInit } from './crate_lm.js';

// ---------------------------------------------------------------------------------------------
// small layers written as composites of the existing ops

/** nn.GELU() (exact erf form), a parameter-free layer. */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return this.hooked([x], gelu(x));
  }
}

/** timm DropPath: drops whole samples of a residual branch with probability p while training. */
export class DropPath extends Module {
  constructor(readonly p = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return this.hooked([x], affine(x, 1, 0));
    return this.hooked(
      [x],
      tidy(() => {
        const shape = [x.shape[0] as number, ...x.shape.slice(1).map(() => 1)];
        const keep = bernoulli(shape, 1 - this.p, { dtype: x.dtype });
        return mul(x, affine(keep, 1 / (1 - this.p), 0));
      }),
    );
  }
}

/** timm trunc_normal_(std, a=-2, b=2): N(0, std²) limited to [-2, 2] (a no-op at std 0.02). */
function truncNormal_(t: Tensor, std: number): void {
  tidy(() => {
    t.copy_(clamp(randn([...t.shape], { std, dtype: t.dtype }), -2, 2));
  });
}

/**
 * nn.Conv2d on channels-last tensors (B, H, W, C) → (B, Ho, Wo, O), as zero padding + strided
 * slices (im2col) + one GEMM. weight (O, C, k, k) as PyTorch stores it; PyTorch's default init.
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChans: number,
    readonly outChans: number,
    readonly kernel: number,
    readonly stride = 1,
    readonly padding = 0,
    opts: { bias?: boolean; dtype?: DType } = {},
  ) {
    super();
    const init = linearDefault(outChans, inChans * kernel * kernel, opts.dtype);
    this.weight = this.param('weight', reshape(init.weight, [outChans, inChans, kernel, kernel]));
    init.weight.dispose();
    if (opts.bias ?? true) this.bias = this.param('bias', init.bias);
    else {
      init.bias.dispose();
      this.bias = null;
    }
  }
  forward(x: Tensor): Tensor {
    const [B, H, W, C] = x.shape as [number, number, number, number];
    const { kernel: k, stride: s, padding: p } = this;
    const Ho = Math.floor((H + 2 * p - k) / s) + 1;
    const Wo = Math.floor((W + 2 * p - k) / s) + 1;
    return this.hooked(
      [x],
      tidy(() => {
        let xp = x;
        if (p > 0) {
          const zh = zeros([B, p, W, C], { dtype: x.dtype, device: x.device });
          xp = concat([zh, x, zh], 1);
          const zw = zeros([B, H + 2 * p, p, C], { dtype: x.dtype, device: x.device });
          xp = concat([zw, xp, zw], 2);
        }
        const taps: Tensor[] = [];
        for (let ki = 0; ki < k; ki++) {
          const rows = slice(xp, 1, ki, ki + s * (Ho - 1) + 1, s);
          for (let kj = 0; kj < k; kj++) taps.push(slice(rows, 2, kj, kj + s * (Wo - 1) + 1, s));
        }
        // (B, Ho, Wo, C, k·k): flattened index c·k² + ki·k + kj, as weight.reshape(O, C·k·k)
        const cols = reshape(stack(taps, 4), [B, Ho, Wo, C * k * k]);
        return linear(cols, reshape(this.weight, [this.outChans, C * k * k]), this.bias);
      }),
    );
  }
}

/**
 * nn.BatchNorm2d (= SyncBatchNorm on one process) on channels-last tensors (B, H, W, C):
 * batch statistics while training (running averages updated with momentum 0.1, unbiased
 * variance), running statistics in eval mode. Buffers running_mean, running_var,
 * num_batches_tracked as in PyTorch.
 */
export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly running_mean: Tensor;
  readonly running_var: Tensor;
  readonly num_batches_tracked: Tensor;
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
    opts: { dtype?: DType } = {},
  ) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.weight = this.param('weight', ones([channels], dt));
    this.bias = this.param('bias', zeros([channels], dt));
    this.running_mean = this.buffer('running_mean', zeros([channels], dt));
    this.running_var = this.buffer('running_var', ones([channels], dt));
    this.num_batches_tracked = this.buffer('num_batches_tracked', zeros([], { dtype: 'i32' }));
  }
  forward(x: Tensor): Tensor {
    const n = x.numel / this.channels;
    return this.hooked(
      [x],
      tidy(() => {
        let mu: Tensor;
        let v: Tensor;
        if (this.training) {
          mu = mean(x, [0, 1, 2]);
          v = mean(square(sub(x, mu)), [0, 1, 2]); // biased, for normalising
          noGrad(() =>
            tidy(() => {
              const m = this.momentum;
              this.running_mean.copy_(add(affine(this.running_mean, 1 - m, 0), affine(mu, m, 0)));
              this.running_var.copy_(
                add(affine(this.running_var, 1 - m, 0), affine(v, (m * n) / Math.max(n - 1, 1), 0)),
              );
              this.num_batches_tracked.copy_(add(this.num_batches_tracked, 1)); // on the device: no sync
            }),
          );
        } else {
          mu = this.running_mean;
          v = this.running_var;
        }
        return add(mul(mul(sub(x, mu), rsqrt(add(v, this.eps))), this.weight), this.bias);
      }),
    );
  }
}

/** The XCiT patch embedding: 4 (patch 16) or 3 (patch 8) × [conv3×3 stride 2, no bias; BatchNorm] with GELU between. */
export class ConvStackPatchEmbed extends Module {
  readonly proj: Sequential;
  constructor(
    readonly inChans: number,
    readonly dim: number,
    readonly patch: 8 | 16,
    dtype?: DType,
  ) {
    super();
    const dt = dtype === undefined ? {} : { dtype };
    const widths = patch === 16 ? [dim / 8, dim / 4, dim / 2, dim] : [dim / 4, dim / 2, dim];
    const layers: Module[] = [];
    let c = inChans;
    widths.forEach((w, i) => {
      if (i > 0) layers.push(new GELU());
      layers.push(new Sequential(new Conv2d(c, w, 3, 2, 1, { bias: false, ...dt }), new BatchNorm2d(w, 1e-5, 0.1, dt)));
      c = w;
    });
    this.proj = this.child('proj', new Sequential(...(layers as (Module & { forward(x: Tensor): Tensor })[])));
  }
  /** Images (B, C, H, W) → tokens (B, (H/P)(W/P), D), row-major over the patch grid. */
  forward(img: Tensor): Tensor {
    return this.hooked(
      [img],
      tidy(() => {
        const y = this.proj.forward(permute(img, [0, 2, 3, 1])); // channels-last
        const [B, Hp, Wp, D] = y.shape as [number, number, number, number];
        return reshape(y, [B, Hp * Wp, D]);
      }),
    );
  }
}

/** A single conv with kernel = stride = patch (for images too small for the conv stack); key `proj`. */
export class LinearPatchEmbed extends Module {
  readonly proj: KernelPatchEmbed;
  constructor(inChans: number, dim: number, patch: number, dtype?: DType) {
    super();
    this.proj = this.child('proj', new KernelPatchEmbed(inChans, dim, patch, dtype === undefined ? {} : { dtype }));
  }
  forward(img: Tensor): Tensor {
    return this.hooked([img], this.proj.forward(img));
  }
}

/** The Fourier features (Hp·Wp, 2·hidden) of PositionalEncodingFourier before its 1×1 conv. */
export function fourierFeatures(Hp: number, Wp: number, hidden = 32, temperature = 10000): Float64Array {
  const scale = 2 * Math.PI;
  const eps = 1e-6;
  const out = new Float64Array(Hp * Wp * 2 * hidden);
  const dimT = Array.from({ length: hidden }, (_, i) => temperature ** ((2 * Math.floor(i / 2)) / hidden));
  for (let h = 0; h < Hp; h++) {
    for (let w = 0; w < Wp; w++) {
      const y = ((h + 1) / (Hp + eps)) * scale;
      const x = ((w + 1) / (Wp + eps)) * scale;
      const o = (h * Wp + w) * 2 * hidden;
      for (let i = 0; i < hidden; i++) {
        const f = i % 2 === 0 ? Math.sin : Math.cos;
        out[o + i] = f(y / (dimT[i] as number)); // pos_y first,
        out[o + hidden + i] = f(x / (dimT[i] as number)); // then pos_x
      }
    }
  }
  return out;
}

/** XCiT PositionalEncodingFourier: fixed sin/cos features of the grid → token_projection (1×1 conv 64→D). */
export class PositionalEncodingFourier extends Module {
  readonly token_projection: TokenProjection;
  constructor(
    readonly dim: number,
    readonly hidden = 32,
    readonly temperature = 10000,
    dtype: DType = 'f32',
  ) {
    super();
    this.token_projection = this.child('token_projection', new TokenProjection(2 * hidden, dim, dtype));
  }
  /** (Hp·Wp, D), row-major over the grid. */
  forward(Hp: number, Wp: number): Tensor {
    const { weight, bias } = this.token_projection;
    return tidy(() => {
      const feats = tensor(fourierFeatures(Hp, Wp, this.hidden, this.temperature), {
        shape: [Hp * Wp, 2 * this.hidden],
        dtype: weight.dtype,
        device: weight.device,
      });
      return linear(feats, reshape(weight, [this.dim, 2 * this.hidden]), bias);
    });
  }
}

/** A 1×1 Conv2d's parameters: weight (out, in, 1, 1), bias (out); PyTorch's default init. */
export class TokenProjection extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(inC: number, outC: number, dtype: DType) {
    super();
    const init = linearDefault(outC, inC, dtype);
    this.weight = this.param('weight', reshape(init.weight, [outC, inC, 1, 1]));
    init.weight.dispose();
    this.bias = this.param('bias', init.bias);
  }
}

/** timm Mlp: fc1 (D→hidden), GELU, drop, fc2 (hidden→D), drop. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly act: GELU;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(dim: number, hidden: number, opts: { drop?: number; dtype?: DType } = {}) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.fc1 = this.child('fc1', new Linear(dim, hidden, dt));
    this.act = this.child('act', new GELU());
    this.fc2 = this.child('fc2', new Linear(hidden, dim, dt));
    this.drop = this.child('drop', new Dropout(opts.drop ?? 0));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => this.drop.forward(this.fc2.forward(this.drop.forward(this.act.forward(this.fc1.forward(x)))))),
    );
  }
}

/**
 * tost.py `AttentionTSSA` with its layout: qkv (D→D, bias), temp (H, 1), to_out = [Linear, Dropout].
 * The fused `tssa` op does the statistics (Π over heads from column-normalised projections, the
 * per-feature second moments, y = −W·Π·1/(1+m)). Attention dropout is not supported.
 */
export class ToSTAttention extends Module {
  readonly qkv: Linear;
  readonly temp: Tensor;
  readonly to_out: Sequential;
  constructor(
    readonly dim: number,
    readonly heads: number,
    opts: { qkvBias?: boolean; drop?: number; dtype?: DType } = {},
  ) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.qkv = this.child('qkv', new Linear(dim, dim, { bias: opts.qkvBias ?? true, ...dt }));
    this.temp = this.param('temp', ones([heads, 1], dt));
    this.to_out = this.child('to_out', new Sequential(new Linear(dim, dim, dt), new Dropout(opts.drop ?? 0)));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => this.to_out.forward(tssa(this.qkv.forward(x), reshape(this.temp, [this.heads]), this.heads))),
    );
  }
}

function layerScale(x: Tensor, gamma: Tensor): Tensor {
  return mul(x, gamma);
}

/** tost.py `Block`: z += γ1·DropPath(TSSA(norm1 z)); z += γ2·DropPath(MLP(norm2 z)). LN eps 1e-6. */
export class ToSTBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: ToSTAttention;
  readonly drop_path: DropPath;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly gamma1: Tensor;
  readonly gamma2: Tensor;
  constructor(c: ResolvedToSTConfig) {
    super();
    const dt = { dtype: c.dtype };
    this.norm1 = this.child('norm1', new LayerNorm(c.dim, 1e-6, dt));
    this.attn = this.child(
      'attn',
      new ToSTAttention(c.dim, c.heads, { qkvBias: c.qkvBias, drop: c.dropout, dtype: c.dtype }),
    );
    this.drop_path = this.child('drop_path', new DropPath(c.dropPath));
    this.norm2 = this.child('norm2', new LayerNorm(c.dim, 1e-6, dt));
    this.mlp = this.child('mlp', new Mlp(c.dim, Math.floor(c.dim * c.mlpRatio), { drop: c.dropout, dtype: c.dtype }));
    this.gamma1 = this.param('gamma1', full([c.dim], c.eta, dt));
    this.gamma2 = this.param('gamma2', full([c.dim], c.eta, dt));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const h = add(x, this.drop_path.forward(layerScale(this.attn.forward(this.norm1.forward(x)), this.gamma1)));
        return add(h, this.drop_path.forward(layerScale(this.mlp.forward(this.norm2.forward(h)), this.gamma2)));
      }),
    );
  }
}

/** CaiT `ClassAttention`: only the cls token queries; qkv (D→3D), softmax(q_cls·kᵀ/√p) v, proj. */
export class ClassAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly proj_drop: Dropout;
  constructor(
    readonly dim: number,
    readonly heads: number,
    opts: { qkvBias?: boolean; drop?: number; dtype?: DType } = {},
  ) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.qkv = this.child('qkv', new Linear(dim, 3 * dim, { bias: opts.qkvBias ?? false, ...dt }));
    this.proj = this.child('proj', new Linear(dim, dim, dt));
    this.proj_drop = this.child('proj_drop', new Dropout(opts.drop ?? 0));
  }
  /** x (B, N+1, D) → (B, N+1, D): the new cls token, then x[:, 1:] unchanged. */
  forward(x: Tensor): Tensor {
    const [B, N1, D] = x.shape as [number, number, number];
    const H = this.heads;
    const p = D / H;
    return this.hooked(
      [x],
      tidy(() => {
        const qkv = this.qkv.forward(x); // (B, N+1, 3D): [q | k | v], heads inside each
        const heads = (t: Tensor, n: number) => permute(reshape(t, [B, n, H, p]), [0, 2, 1, 3]); // (B, H, n, p)
        const q = heads(slice(slice(qkv, 2, 0, D), 1, 0, 1), 1);
        const k = heads(slice(qkv, 2, D, 2 * D), N1);
        const v = heads(slice(qkv, 2, 2 * D, 3 * D), N1);
        const attn = softmax(mul(matmul(q, k, { transB: true }), p ** -0.5), -1); // (B, H, 1, N+1)
        const cls = reshape(permute(matmul(attn, v), [0, 2, 1, 3]), [B, 1, D]);
        return concat([this.proj_drop.forward(this.proj.forward(cls)), slice(x, 1, 1)], 1);
      }),
    );
  }
}

/**
 * tost.py `ClassAttentionBlock` (CaiT/XCiT) with LayerScale: x += γ1·CA(norm1 x); x = norm2(x)
 * (all tokens when tokensNorm, else only cls); x = x + [γ2·MLP(x_cls), x_patches]. The last step
 * reproduces the authors' code, which adds the patch tokens to themselves (doubling them).
 */
export class ClassAttentionBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: ClassAttention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly gamma1: Tensor;
  readonly gamma2: Tensor;
  constructor(
    c: ResolvedToSTConfig,
    readonly tokensNorm: boolean,
  ) {
    super();
    const dt = { dtype: c.dtype };
    this.norm1 = this.child('norm1', new LayerNorm(c.dim, 1e-6, dt));
    this.attn = this.child(
      'attn',
      new ClassAttention(c.dim, c.heads, { qkvBias: c.qkvBias, drop: c.dropout, dtype: c.dtype }),
    );
    this.norm2 = this.child('norm2', new LayerNorm(c.dim, 1e-6, dt));
    this.mlp = this.child('mlp', new Mlp(c.dim, Math.floor(c.dim * c.mlpRatio), { drop: c.dropout, dtype: c.dtype }));
    this.gamma1 = this.param('gamma1', full([c.dim], c.eta, dt));
    this.gamma2 = this.param('gamma2', full([c.dim], c.eta, dt));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        let h = add(x, layerScale(this.attn.forward(this.norm1.forward(x)), this.gamma1));
        h = this.tokensNorm
          ? this.norm2.forward(h)
          : concat([this.norm2.forward(slice(h, 1, 0, 1)), slice(h, 1, 1)], 1);
        const cls = layerScale(this.mlp.forward(slice(h, 1, 0, 1)), this.gamma2);
        return add(h, concat([cls, slice(h, 1, 1)], 1)); // x_res + cat[γ2·MLP(cls), x_res[:, 1:]]
      }),
    );
  }
}

export interface ToSTConfig {
  imageSize: number;
  patchSize: number;
  numClasses: number;
  /** embed_dim */
  dim: number;
  depth: number;
  heads: number;
  channels?: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  /** LayerScale init γ: the authors use 1.0 for 12-layer and 1e-5 for 24-layer models (the default follows that). */
  eta?: number;
  /** number of class-attention blocks (2) */
  clsAttnLayers?: number;
  /** normalise all tokens in the class-attention blocks (true in every tost_cab_* model) */
  tokensNorm?: boolean;
  /** 'conv': the XCiT conv3×3 stack (patch 8 or 16); 'linear': one conv with kernel = stride = patch */
  patchEmbed?: 'conv' | 'linear';
  /** add the Fourier positional encoding (true) */
  usePos?: boolean;
  /** drop_rate (0) and drop_path_rate (0, the same for every block) */
  dropout?: number;
  dropPath?: number;
  dtype?: DType;
}

type ResolvedToSTConfig = Required<Omit<ToSTConfig, 'dtype'>> & { dtype: DType };

/**
 * The tost_cab_* models (spec section 2) at 224/16 with 1000 classes, and an MNIST demo. Counts
 * (numParameters(); BatchNorm running statistics are buffers, not counted): tost-t 5,769,328
 * (reported 5.8M); tost-s 22,589,944 (22.6M); tost-t24 10,223,008; tost-s24 40,344,664;
 * tost-m24 71,481,064 (the reported ToST-M 68.1M matches no defined config); tost-l24
 * 160,286,920; tost-demo 192,018.
 */
export const TOST_PRESETS: Record<string, ToSTConfig> = {
  'tost-t': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 192, depth: 12, heads: 4, eta: 1 },
  'tost-s': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 384, depth: 12, heads: 8, eta: 1 },
  'tost-t24': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 192, depth: 24, heads: 4, eta: 1e-5 },
  'tost-s24': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 384, depth: 24, heads: 8, eta: 1e-5 },
  'tost-m24': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 512, depth: 24, heads: 8, eta: 1e-5 },
  'tost-l24': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 768, depth: 24, heads: 16, eta: 1e-5 },
  'tost-demo': {
    imageSize: 28,
    patchSize: 7,
    channels: 1,
    numClasses: 10,
    dim: 64,
    depth: 2,
    heads: 4,
    eta: 1,
    patchEmbed: 'linear',
  },
};

/** ToST image classifier. forward(img (B, C, H, W)) → logits (B, numClasses). */
export class ToST extends Module {
  readonly config: ResolvedToSTConfig;
  readonly patch_embed: ConvStackPatchEmbed | LinearPatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_drop: Dropout;
  readonly blocks: ModuleList<ToSTBlock>;
  readonly cls_attn_blocks: ModuleList<ClassAttentionBlock>;
  readonly norm: LayerNorm;
  readonly head: Linear;
  readonly pos_embeder: PositionalEncodingFourier;
  /** The patch grid (Hp, Wp). */
  readonly grid: [number, number];

  constructor(cfg: ToSTConfig) {
    super();
    const c: ResolvedToSTConfig = {
      channels: 3,
      mlpRatio: 4,
      qkvBias: true,
      eta: cfg.depth > 12 ? 1e-5 : 1,
      clsAttnLayers: 2,
      tokensNorm: true,
      patchEmbed: 'conv',
      usePos: true,
      dropout: 0,
      dropPath: 0,
      dtype: 'f32',
      ...cfg,
    };
    this.config = c;
    for (const k of ['imageSize', 'patchSize', 'numClasses', 'dim', 'depth', 'heads', 'channels'] as const) {
      if (!Number.isInteger(c[k]) || c[k] < 1)
        throw new RangeError(`ToST: ${k} must be a positive integer, got ${c[k]}`);
    }
    if (!Number.isInteger(c.clsAttnLayers) || c.clsAttnLayers < 0) {
      throw new RangeError(`ToST: clsAttnLayers must be an integer >= 0, got ${c.clsAttnLayers}`);
    }
    if (c.dim % c.heads !== 0) throw new Error(`ToST: dim ${c.dim} is not divisible by heads ${c.heads}`);
    if (c.imageSize % c.patchSize !== 0) {
      throw new Error(`ToST: image size ${c.imageSize} is not divisible by patch size ${c.patchSize}`);
    }
    const g = c.imageSize / c.patchSize;
    this.grid = [g, g];
    const dt = { dtype: c.dtype };
    if (c.patchEmbed === 'conv') {
      if (c.patchSize !== 8 && c.patchSize !== 16) {
        throw new Error(
          `ToST: the conv patch embedding needs patch size 8 or 16, got ${c.patchSize} (use patchEmbed: 'linear')`,
        );
      }
      const div = c.patchSize === 16 ? 8 : 4;
      if (c.dim % div !== 0)
        throw new Error(`ToST: dim ${c.dim} must be divisible by ${div} for the conv patch embedding`);
      this.patch_embed = this.child('patch_embed', new ConvStackPatchEmbed(c.channels, c.dim, c.patchSize, c.dtype));
    } else if (c.patchEmbed === 'linear') {
      this.patch_embed = this.child('patch_embed', new LinearPatchEmbed(c.channels, c.dim, c.patchSize, c.dtype));
    } else throw new Error(`ToST: patchEmbed must be 'conv' or 'linear', got '${String(c.patchEmbed)}'`);
    this.cls_token = this.param('cls_token', zeros([1, 1, c.dim], dt));
    this.pos_drop = this.child('pos_drop', new Dropout(c.dropout));
    this.blocks = this.child('blocks', new ModuleList(Array.from({ length: c.depth }, () => new ToSTBlock(c))));
    this.cls_attn_blocks = this.child(
      'cls_attn_blocks',
      new ModuleList(Array.from({ length: c.clsAttnLayers }, () => new ClassAttentionBlock(c, c.tokensNorm))),
    );
    this.norm = this.child('norm', new LayerNorm(c.dim, 1e-6, dt));
    this.head = this.child('head', new Linear(c.dim, c.numClasses, dt));
    this.pos_embeder = this.child('pos_embeder', new PositionalEncodingFourier(c.dim, 32, 10000, c.dtype));
    // the authors' init: trunc_normal(0.02) for cls_token and every Linear weight, zero biases;
    // LayerNorm 1/0; convs keep PyTorch's default
    truncNormal_(this.cls_token, 0.02);
    for (const [, m] of this.modules()) {
      if (m instanceof Linear) {
        truncNormal_(m.weight, 0.02);
        m.bias?.fill_(0);
      }
    }
  }

  /** Patch tokens with positions: (B, N, D). */
  embed(img: Tensor): Tensor {
    const c = this.config;
    if (!(img instanceof Tensor)) throw new TypeError('ToST: expected an image Tensor (B, C, H, W)');
    if (img.ndim !== 4 || img.shape[1] !== c.channels || img.shape[2] !== c.imageSize || img.shape[3] !== c.imageSize) {
      throw new Error(
        `ToST: expected images (B, ${c.channels}, ${c.imageSize}, ${c.imageSize}), got ${formatShape(img.shape)}`,
      );
    }
    if (img.dtype !== c.dtype) throw new TypeError(`ToST: expected ${c.dtype} images like the model, got ${img.dtype}`);
    return tidy(() => {
      let x = this.patch_embed.forward(img);
      if (c.usePos) x = add(x, this.pos_embeder.forward(this.grid[0], this.grid[1]));
      return this.pos_drop.forward(x);
    });
  }

  /** Token features after the class-attention blocks and the final norm: (B, N+1, D), cls first. */
  features(img: Tensor): Tensor {
    return tidy(() => {
      let x = this.embed(img);
      for (const b of this.blocks.items) x = b.forward(x);
      const B = x.shape[0] as number;
      x = concat([expand(this.cls_token, [B, 1, this.config.dim]), x], 1);
      for (const b of this.cls_attn_blocks.items) x = b.forward(x);
      return this.norm.forward(x);
    });
  }

  /** Class logits (B, numClasses) (in training mode too: the authors' (x, x) pair is not reproduced). */
  forward(img: Tensor): Tensor {
    return this.hooked(
      [img],
      tidy(() => {
        const z = this.features(img);
        const B = z.shape[0] as number;
        return this.head.forward(reshape(slice(z, 1, 0, 1), [B, this.config.dim]));
      }),
    );
  }
}

/** The parameter count of a ToST config without building it (BatchNorm buffers not counted). */
export function tostParamCount(cfg: ToSTConfig): number {
  const D = cfg.dim;
  const H = cfg.heads;
  const C = cfg.channels ?? 3;
  const P = cfg.patchSize;
  const bias = (cfg.qkvBias ?? true) ? 1 : 0;
  const hid = Math.floor(D * (cfg.mlpRatio ?? 4));
  let stem = 0;
  if ((cfg.patchEmbed ?? 'conv') === 'linear') stem = C * P * P * D + D;
  else {
    let c = C;
    for (const w of P === 16 ? [D / 8, D / 4, D / 2, D] : [D / 4, D / 2, D]) {
      stem += 9 * c * w + 2 * w; // conv3×3 without bias, BatchNorm weight and bias
      c = w;
    }
  }
  const mlp = D * hid + hid + hid * D + D;
  const block = 2 * D + (D * D + bias * D) + H + (D * D + D) + 2 * D + mlp + 2 * D;
  const ca = 2 * D + (3 * D * D + bias * 3 * D) + (D * D + D) + 2 * D + mlp + 2 * D;
  const heads = 2 * D + D * cfg.numClasses + cfg.numClasses;
  return stem + D + cfg.depth * block + (cfg.clsAttnLayers ?? 2) * ca + heads + 64 * D + D;
}

/** A ToST preset by name ('tost-t', 'tost-s', 'tost-t24', ..., 'tost-demo') with overrides. */
export function tostFromPreset(name: string, overrides: Partial<ToSTConfig> = {}): ToST {
  const p = TOST_PRESETS[name];
  if (!p) throw new Error(`unknown ToST preset '${name}'; choose one of ${Object.keys(TOST_PRESETS).join(', ')}`);
  return new ToST({ ...p, ...overrides });
}

// ---------------------------------------------------------------------------------------------
// causal ToST (language)

/**
 * model_TSSA.py `CausalSelfAttention_TSSA`: c_attn (D→D), temp (H, 1) = 1, denom_bias (H,
 * block_size, 1) = 0, c_proj (D→D); the fused `tssaCausal` op computes the cumulative
 * statistics, Π over heads and y = −W·Π/(1+m). Attention dropout is not supported.
 */
export class CausalSelfAttentionTSSA extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  readonly temp: Tensor;
  readonly denom_bias: Tensor;
  constructor(
    readonly dim: number,
    readonly heads: number,
    readonly blockSize: number,
    opts: { bias?: boolean; dropout?: number; dtype?: DType } = {},
  ) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.c_attn = this.child('c_attn', new Linear(dim, dim, { bias: opts.bias ?? false, ...dt }));
    this.c_proj = this.child('c_proj', new Linear(dim, dim, { bias: opts.bias ?? false, ...dt }));
    this.resid_dropout = this.child('resid_dropout', new Dropout(opts.dropout ?? 0));
    this.temp = this.param('temp', ones([heads, 1], dt));
    this.denom_bias = this.param('denom_bias', zeros([heads, blockSize, 1], dt));
  }
  forward(x: Tensor): Tensor {
    const H = this.heads;
    return this.hooked(
      [x],
      tidy(() => {
        const W = this.c_attn.forward(x);
        const y = tssaCausal(W, reshape(this.temp, [H]), reshape(this.denom_bias, [H, this.blockSize]), H);
        return this.resid_dropout.forward(this.c_proj.forward(y));
      }),
    );
  }
}

/** nanoGPT `MLP`: c_fc (D→4D), GELU, c_proj (4D→D), dropout. */
export class GPTMLP extends Module {
  readonly c_fc: Linear;
  readonly gelu: GELU;
  readonly c_proj: Linear;
  readonly dropout: Dropout;
  constructor(dim: number, opts: { bias?: boolean; dropout?: number; dtype?: DType } = {}) {
    super();
    const o = { bias: opts.bias ?? false, ...(opts.dtype === undefined ? {} : { dtype: opts.dtype }) };
    this.c_fc = this.child('c_fc', new Linear(dim, 4 * dim, o));
    this.gelu = this.child('gelu', new GELU());
    this.c_proj = this.child('c_proj', new Linear(4 * dim, dim, o));
    this.dropout = this.child('dropout', new Dropout(opts.dropout ?? 0));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => this.dropout.forward(this.c_proj.forward(this.gelu.forward(this.c_fc.forward(x))))),
    );
  }
}

/** model_TSSA.py `Block`: x += γ1·attn(ln_1 x); x += γ2·mlp(ln_2 x); γ initialised to layerScale (1e-5). */
export class ToSTLMBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttentionTSSA;
  readonly ln_2: LayerNorm;
  readonly mlp: GPTMLP;
  readonly gamma1: Tensor;
  readonly gamma2: Tensor;
  constructor(c: ResolvedToSTLMConfig) {
    super();
    const dt = { dtype: c.dtype };
    const o = { bias: c.bias, dropout: c.dropout, ...dt };
    this.ln_1 = this.child('ln_1', new LayerNorm(c.dim, 1e-5, { bias: c.bias, ...dt }));
    this.attn = this.child('attn', new CausalSelfAttentionTSSA(c.dim, c.heads, c.blockSize, o));
    this.ln_2 = this.child('ln_2', new LayerNorm(c.dim, 1e-5, { bias: c.bias, ...dt }));
    this.mlp = this.child('mlp', new GPTMLP(c.dim, o));
    this.gamma1 = this.param('gamma1', full([c.dim], c.layerScale, dt));
    this.gamma2 = this.param('gamma2', full([c.dim], c.layerScale, dt));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const h = add(x, mul(this.attn.forward(this.ln_1.forward(x)), this.gamma1));
        return add(h, mul(this.mlp.forward(this.ln_2.forward(h)), this.gamma2));
      }),
    );
  }
}

export interface ToSTLMConfig {
  vocabSize: number;
  blockSize: number;
  /** n_embd */
  dim: number;
  /** n_layer */
  depth: number;
  /** n_head */
  heads: number;
  /** bias in the Linear and LayerNorm layers (train.py's default: false) */
  bias?: boolean;
  dropout?: number;
  /** LayerScale init γ (1e-5) */
  layerScale?: number;
  dtype?: DType;
}

type ResolvedToSTLMConfig = Required<Omit<ToSTLMConfig, 'dtype'>> & { dtype: DType };

/**
 * config/train_tost_{base,medium,large}_ls.py (block 1024, vocab 50304, bias false) and a demo
 * size for two CPU cores. numParameters() (wpe included): tost-lm-base 110,384,016 (the reported
 * 110M); tost-lm-medium 304,711,040 (304M); tost-lm-large 656,447,440 (655,136,720 without wpe:
 * the reported 655M); tost-lm-demo 103,236.
 */
export const TOST_LM_PRESETS: Record<string, ToSTLMConfig> = {
  'tost-lm-demo': { vocabSize: 256, blockSize: 64, dim: 64, depth: 2, heads: 2 },
  'tost-lm-base': { vocabSize: 50304, blockSize: 1024, dim: 768, depth: 12, heads: 12 },
  'tost-lm-medium': { vocabSize: 50304, blockSize: 1024, dim: 1024, depth: 24, heads: 16 },
  'tost-lm-large': { vocabSize: 50304, blockSize: 1024, dim: 1280, depth: 36, heads: 20 },
};

/** Causal ToST language model. forward(idx, targets?) → { logits (B, T, V), loss? }. */
export class ToSTLM extends CausalLM<ToSTLMBlock> {
  readonly config: ResolvedToSTLMConfig;
  constructor(cfg: ToSTLMConfig) {
    const c: ResolvedToSTLMConfig = { bias: false, dropout: 0, layerScale: 1e-5, dtype: 'f32', ...cfg };
    checkLMConfig('ToSTLM', c);
    const blocks = Array.from({ length: c.depth }, () => new ToSTLMBlock(c));
    const lnF = new LayerNorm(c.dim, 1e-5, { bias: c.bias, dtype: c.dtype });
    super('ToSTLM', new GPTTransformer({ ...c, blocks, lnF }));
    this.config = c;
    gptInit(this, c.depth);
  }
}

/** The parameter count of a ToSTLM config without building it (nonEmbedding subtracts wpe). */
export function tostLMParamCount(cfg: ToSTLMConfig, opts: { nonEmbedding?: boolean } = {}): number {
  const { vocabSize: V, blockSize: T, dim: d, depth: L, heads: H } = cfg;
  const b = cfg.bias ? 1 : 0;
  // ln_1, ln_2, c_attn, c_proj, temp, denom_bias, c_fc, mlp.c_proj, gamma1, gamma2
  const layer =
    2 * (d + b * d) + 2 * (d * d + b * d) + H + H * T + (4 * d * d + b * 4 * d) + (4 * d * d + b * d) + 2 * d;
  const total = L * layer + V * d + T * d + d + b * d;
  return opts.nonEmbedding ? total - T * d : total;
}

/** A causal ToST preset by name with overrides. */
export function tostLMFromPreset(name: string, overrides: Partial<ToSTLMConfig> = {}): ToSTLM {
  const p = TOST_LM_PRESETS[name];
  if (!p) throw new Error(`unknown ToSTLM preset '${name}'; choose one of ${Object.keys(TOST_LM_PRESETS).join(', ')}`);
  return new ToSTLM({ ...p, ...overrides });
}
