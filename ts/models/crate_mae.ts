// crate_mae.ts: CRATE-MAE as coded in Ma-Lab-Berkeley/CRATE model/crate_ae/{crate_ae,
// crate_encoder,crate_decoder}.py (spec 1.4): timm conv PatchEmbed (with bias), random masking
// that keeps int(N·(1 − ratio)) tokens per sample, mask tokens reinserted *before* the encoder
// (which sees all N+1 tokens), the fixed 2-D sin-cos `decoder_pos_embed` (cls row 0) added to
// every token, encoder blocks [z + MSSA(LN z); ISTA(LN z), η = 0.1, λ = 0.5], `norm` (eps 1e-6),
// "transposed" decoder blocks [g = LN(z)·Wᵀ; z = g − MSSA(LN g)], `decoder_norm` (eps 1e-6),
// `decoder_pred` (D → p²·c), drop cls, and the MSE averaged over the masked patches only, against
// the authors' patchify order (nchpwq → nhwpqc). Parameter names match the authors' state dict,
// e.g. `blocks.0.layers.0.0.fn.qkv.weight`, `decoder_blocks.0.layers.0.0.fn.weight`; the unused
// `pos_embed` (buffer) and `decoder_embed` (parameter) are kept so checkpoints load strictly.
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { Attention, FeedForward, PreNorm } from '../nn/crate_blocks.js';
import { kaimingUniform, normal, xavierUniform } from '../nn/init.js';
import { ConvPatchEmbed, LayerNorm, Linear, ModuleList, patchify } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { rand, tensor } from '../ops/creation.js';
import { add, affine, div, mul, rsqrt, square, sub, where } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { mean, sum, variance } from '../ops/reduce.js';
import { concat, expand, permute, reshape, slice } from '../ops/shape.js';
import { formatShape, type Tensor } from '../tensor.js';

export interface CrateMaeConfig {
  imageSize: number;
  patchSize: number;
  /** encoder (and decoder: the authors' decoder_embed_dim always equals it) width D */
  dim: number;
  /** encoder depth */
  depth: number;
  /** encoder heads; dim_head = dim / heads */
  heads: number;
  /** decoder depth and heads (default: the encoder's, as in every mae_crate_* config) */
  decoderDepth?: number;
  decoderHeads?: number;
  channels?: number;
  /** encoder ISTA step size η (0.1) and threshold λ (0.5 in CRATE-MAE) */
  eta?: number;
  lambda?: number;
  /** default mask ratio of forward() (0.75) */
  maskRatio?: number;
  /** normalise each target patch by its mean/var (MAE's norm_pix_loss; off in CRATE-MAE) */
  normPixLoss?: boolean;
  dtype?: DType;
}

/**
 * The mae_crate_* presets (spec section 2), all patch 16 at 224: parameters (trainable, including
 * the unused decoder_embed) / with the two fixed sin-cos tables (the book's count):
 * tiny 11.40M / 11.56M, small 25.18M / 25.41M (book 25.4M), base 44.34M / 44.64M (book 44.6M),
 * large 153.87M / 154.27M. 'crate-mae-demo' is a small MNIST (28×28×1, patch 7) model for CPU
 * runs: 61,361 / 63,537.
 */
export const CRATE_MAE_PRESETS: Record<string, Omit<CrateMaeConfig, 'dtype'>> = {
  'crate-mae-tiny': { imageSize: 224, patchSize: 16, dim: 384, depth: 12, heads: 6 },
  'crate-mae-small': { imageSize: 224, patchSize: 16, dim: 576, depth: 12, heads: 12 },
  'crate-mae-base': { imageSize: 224, patchSize: 16, dim: 768, depth: 12, heads: 12 },
  'crate-mae-large': { imageSize: 224, patchSize: 16, dim: 1024, depth: 24, heads: 16 },
  'crate-mae-demo': { imageSize: 28, patchSize: 7, channels: 1, dim: 64, depth: 2, heads: 2 },
};

/**
 * Parameter count of a CRATE-MAE config from the formula (for presets too large to build);
 * withBuffers adds the two fixed (N+1)×D sin-cos tables, as the book counts.
 */
export function crateMaeParamCount(cfg: CrateMaeConfig, opts: { withBuffers?: boolean } = {}): number {
  const D = cfg.dim;
  const C = cfg.channels ?? 3;
  const P = cfg.patchSize;
  const N = (cfg.imageSize / P) ** 2;
  const block = 4 * D + 3 * D * D + D; // two LNs, qkv, to_out (+bias), ISTA / decoder dictionary
  const blocks = (cfg.depth + (cfg.decoderDepth ?? cfg.depth)) * block;
  const rest = D * C * P * P + D + 2 * D + 2 * 2 * D + (D * D + D) + (D * P * P * C + P * P * C);
  return blocks + rest + (opts.withBuffers ? 2 * (N + 1) * D : 0);
}

/**
 * The fixed 2-D sin-cos table of MAE's pos_embed.py `get_2d_sincos_pos_embed(D, g, cls_token)`:
 * (g² [+1], D) in f64. Token k = i·g + j (row i, column j); the first D/2 columns encode the
 * column j (numpy meshgrid puts w first), the last D/2 the row i; each half is
 * [sin(pos·ω_m), cos(pos·ω_m)] with ω_m = 10000^(−m/(D/4)), m < D/4. The authors compute it
 * in float32 numpy (differences ~1e-6); the table is saved in their state dict.
 */
export function sincosPosEmbed2d(dim: number, grid: number, clsToken = true): Float64Array {
  if (dim % 4 !== 0) throw new Error(`sincosPosEmbed2d: dim ${dim} must be divisible by 4`);
  const q = dim / 4;
  const rows = grid * grid + (clsToken ? 1 : 0);
  const out = new Float64Array(rows * dim);
  const off = clsToken ? 1 : 0;
  for (let i = 0; i < grid; i++) {
    for (let j = 0; j < grid; j++) {
      const r = (off + i * grid + j) * dim;
      for (let m = 0; m < q; m++) {
        const omega = 1 / 10000 ** (m / q);
        out[r + m] = Math.sin(j * omega);
        out[r + q + m] = Math.cos(j * omega);
        out[r + 2 * q + m] = Math.sin(i * omega);
        out[r + 3 * q + m] = Math.cos(i * omega);
      }
    }
  }
  return out;
}

/** timm PatchEmbed (norm = Identity): `proj` is a conv with kernel = stride = patch and a bias. */
export class PatchEmbed extends Module {
  readonly proj: ConvPatchEmbed;
  constructor(inChans: number, dim: number, patch: number, dtype?: DType) {
    super();
    this.proj = this.child('proj', new ConvPatchEmbed(inChans, dim, patch, dtype === undefined ? {} : { dtype }));
  }
  /** (B, C, H, W) → (B, (H/p)(W/p), D), tokens row-major (flatten(2).transpose(1, 2)). */
  forward(x: Tensor): Tensor {
    return this.hooked([x], this.proj.forward(x));
  }
}

/** The decoder's `FeedForward` of crate_decoder.py: a plain map x·Wᵀ (no ISTA, no bias). */
export class DecoderFeedForward extends Module {
  readonly weight: Tensor;
  constructor(
    readonly dim: number,
    opts: { dtype?: DType } = {},
  ) {
    super();
    this.weight = this.param('weight', kaimingUniform([dim, dim], 0, opts.dtype));
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], linear(x, this.weight, null));
  }
}

/** crate_encoder.py `Block_CRATE`: z½ = z + MSSA(LN1 z); z' = ISTA(LN2 z½) (keys layers.0.{0,1}). */
export class CrateMaeEncoderBlock extends Module {
  readonly layers: ModuleList<ModuleList>;
  constructor(dim: number, heads: number, dimHead: number, eta: number, lambda: number, dtype?: DType) {
    super();
    const dt = dtype === undefined ? {} : { dtype };
    this.layers = this.child(
      'layers',
      new ModuleList([
        new ModuleList([
          new PreNorm(dim, new Attention(dim, heads, dimHead, dt), 1e-5, dtype),
          new PreNorm(dim, new FeedForward(dim, eta, lambda, dt), 1e-5, dtype),
        ]),
      ]),
    );
  }
  get attn(): PreNorm<Attention> {
    return this.layers.at(0).at(0) as PreNorm<Attention>;
  }
  get ista(): PreNorm<FeedForward> {
    return this.layers.at(0).at(1) as PreNorm<FeedForward>;
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => this.ista.forward(add(this.attn.forward(x), x))),
    );
  }
}

/** crate_decoder.py `Block_CRATE` (the transposed layer): g = LN1(z)·Wᵀ; z' = g − MSSA(LN2 g). */
export class CrateMaeDecoderBlock extends Module {
  readonly layers: ModuleList<ModuleList>;
  constructor(dim: number, heads: number, dimHead: number, dtype?: DType) {
    super();
    const dt = dtype === undefined ? {} : { dtype };
    this.layers = this.child(
      'layers',
      new ModuleList([
        new ModuleList([
          new PreNorm(dim, new DecoderFeedForward(dim, dt), 1e-5, dtype),
          new PreNorm(dim, new Attention(dim, heads, dimHead, dt), 1e-5, dtype),
        ]),
      ]),
    );
  }
  get ff(): PreNorm<DecoderFeedForward> {
    return this.layers.at(0).at(0) as PreNorm<DecoderFeedForward>;
  }
  get attn(): PreNorm<Attention> {
    return this.layers.at(0).at(1) as PreNorm<Attention>;
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const g = this.ff.forward(x);
        return sub(g, this.attn.forward(g));
      }),
    );
  }
}

export interface MaskOptions {
  /** fraction of patches to mask (default the config's maskRatio, 0.75) */
  maskRatio?: number | undefined;
  /** seed of the masking noise (default: the global generator, see manualSeed) */
  seed?: number | undefined;
  /** explicit noise (B, N) as torch.rand in random_masking; the smallest int(N(1−r)) are kept */
  noise?: Tensor | undefined;
}

export interface CrateMaeOutput {
  /** scalar: MSE averaged over the masked patches */
  loss: Tensor;
  /** (B, N, p²·c) reconstruction of every patch, in the patchify order (p1 p2 c) */
  pred: Tensor;
  /** (B, N), model dtype: 1 = masked (removed), 0 = kept */
  mask: Tensor;
}

export class CrateMAE extends Module {
  readonly config: Required<Omit<CrateMaeConfig, 'dtype'>> & { dtype: DType };
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  /** fixed sin-cos, unused by the authors' forward (kept for their state dict) */
  readonly pos_embed: Tensor;
  readonly blocks: ModuleList<CrateMaeEncoderBlock>;
  readonly norm: LayerNorm;
  /** unused by the authors' forward (kept for their state dict and parameter count) */
  readonly decoder_embed: Linear;
  readonly mask_token: Tensor;
  /** fixed sin-cos (cls row 0) added to all N+1 tokens before the encoder */
  readonly decoder_pos_embed: Tensor;
  readonly decoder_blocks: ModuleList<CrateMaeDecoderBlock>;
  readonly decoder_norm: LayerNorm;
  readonly decoder_pred: Linear;
  readonly numPatches: number;
  readonly gridSize: number;

  constructor(cfg: CrateMaeConfig) {
    super();
    const c = {
      channels: 3,
      eta: 0.1,
      lambda: 0.5,
      maskRatio: 0.75,
      normPixLoss: false,
      dtype: 'f32' as DType,
      ...cfg,
      decoderDepth: cfg.decoderDepth ?? cfg.depth,
      decoderHeads: cfg.decoderHeads ?? cfg.heads,
    };
    this.config = c;
    const ints: [string, unknown, number][] = [
      ['imageSize', c.imageSize, 1],
      ['patchSize', c.patchSize, 1],
      ['channels', c.channels, 1],
      ['dim', c.dim, 1],
      ['heads', c.heads, 1],
      ['decoderHeads', c.decoderHeads, 1],
      ['depth', c.depth, 0],
      ['decoderDepth', c.decoderDepth, 0],
    ];
    for (const [k, v, lo] of ints) {
      if (!Number.isInteger(v) || (v as number) < lo) {
        throw new Error(`CrateMAE: ${k} must be an integer >= ${lo}, got ${String(v)}`);
      }
    }
    if (c.imageSize % c.patchSize !== 0) {
      throw new Error(`CrateMAE: image size ${c.imageSize} is not divisible by patch size ${c.patchSize}`);
    }
    if (c.dim % 4 !== 0) throw new Error(`CrateMAE: dim ${c.dim} must be divisible by 4 (2-D sin-cos positions)`);
    if (c.dim % c.heads !== 0 || c.dim % c.decoderHeads !== 0) {
      throw new Error(
        `CrateMAE: dim ${c.dim} must be divisible by heads ${c.heads} and decoderHeads ${c.decoderHeads}`,
      );
    }
    checkRatio(c.maskRatio);
    this.gridSize = c.imageSize / c.patchSize;
    this.numPatches = this.gridSize ** 2;
    const D = c.dim;
    const dt = { dtype: c.dtype };
    const table = () =>
      tensor(sincosPosEmbed2d(D, this.gridSize, true), { shape: [1, this.numPatches + 1, D], dtype: c.dtype });

    this.patch_embed = this.child('patch_embed', new PatchEmbed(c.channels, D, c.patchSize, c.dtype));
    this.cls_token = this.param('cls_token', normal([1, 1, D], 0.02, c.dtype));
    this.pos_embed = this.buffer('pos_embed', table());
    const blocks: CrateMaeEncoderBlock[] = [];
    for (let i = 0; i < c.depth; i++) {
      blocks.push(new CrateMaeEncoderBlock(D, c.heads, D / c.heads, c.eta, c.lambda, c.dtype));
    }
    this.blocks = this.child('blocks', new ModuleList(blocks));
    this.norm = this.child('norm', new LayerNorm(D, 1e-6, dt));
    this.decoder_embed = this.child('decoder_embed', new Linear(D, D, dt));
    this.mask_token = this.param('mask_token', normal([1, 1, D], 0.02, c.dtype));
    this.decoder_pos_embed = this.buffer('decoder_pos_embed', table());
    const dec: CrateMaeDecoderBlock[] = [];
    for (let i = 0; i < c.decoderDepth; i++) {
      dec.push(new CrateMaeDecoderBlock(D, c.decoderHeads, D / c.decoderHeads, c.dtype));
    }
    this.decoder_blocks = this.child('decoder_blocks', new ModuleList(dec));
    this.decoder_norm = this.child('decoder_norm', new LayerNorm(D, 1e-6, dt));
    this.decoder_pred = this.child('decoder_pred', new Linear(D, c.patchSize ** 2 * c.channels, dt));
    this.initializeWeights();
  }

  /**
   * The authors' initialize_weights: patch_embed.proj.weight xavier_uniform on its (D, c·p·p)
   * view (its bias keeps the conv default), every Linear xavier_uniform with zero bias, the
   * ISTA / decoder dictionaries keep kaiming_uniform, cls and mask tokens N(0, 0.02) (done above).
   */
  private initializeWeights(): void {
    noGrad(() =>
      tidy(() => {
        const w = this.patch_embed.proj.weight;
        const [D, C, P] = w.shape as [number, number, number];
        w.copy_(reshape(xavierUniform([D, C * P * P], w.dtype), [...w.shape]));
        for (const [, m] of this.modules()) {
          if (m instanceof Linear) {
            m.weight.copy_(xavierUniform([...m.weight.shape], m.weight.dtype));
            m.bias?.fill_(0);
          }
        }
      }),
    );
  }

  private checkImages(imgs: Tensor): void {
    const c = this.config;
    if (
      imgs.ndim !== 4 ||
      imgs.shape[1] !== c.channels ||
      imgs.shape[2] !== c.imageSize ||
      imgs.shape[3] !== c.imageSize
    ) {
      throw new Error(
        `CrateMAE: expected images (B, ${c.channels}, ${c.imageSize}, ${c.imageSize}), got ${formatShape(imgs.shape)}`,
      );
    }
    if (imgs.dtype !== c.dtype) throw new Error(`CrateMAE: expected ${c.dtype} images, got ${imgs.dtype}`);
  }

  /** Patches kept per sample for a mask ratio: int(N·(1 − ratio)) as random_masking's len_keep. */
  numKept(maskRatio = this.config.maskRatio): number {
    checkRatio(maskRatio);
    return Math.trunc(this.numPatches * (1 - maskRatio));
  }

  /**
   * random_masking's binary mask (B, N) in the model dtype: per sample the patches with the
   * int(N·(1−ratio)) smallest noise values are kept (0), the rest are masked (1). Noise is
   * U[0,1) from `seed` (or the global generator) unless given.
   */
  randomMask(batch: number, opts: MaskOptions = {}): Tensor {
    const N = this.numPatches;
    const keepN = this.numKept(opts.maskRatio ?? this.config.maskRatio);
    let noise: ArrayLike<number>;
    if (opts.noise) {
      const nz = opts.noise;
      if (nz.ndim !== 2 || nz.shape[0] !== batch || nz.shape[1] !== N) {
        throw new Error(`CrateMAE: expected noise (${batch}, ${N}), got ${formatShape(nz.shape)}`);
      }
      noise = nz.dataSync();
    } else {
      const nz = rand([batch, N], opts.seed === undefined ? {} : { seed: opts.seed });
      noise = nz.dataSync();
      nz.dispose();
    }
    const m = new Float64Array(batch * N);
    const idx = new Array<number>(N);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < N; i++) idx[i] = i;
      idx.sort((x, y) => (noise[b * N + x] as number) - (noise[b * N + y] as number) || x - y);
      for (let r = keepN; r < N; r++) m[b * N + (idx[r] as number)] = 1;
    }
    return tensor(m, { shape: [batch, N], dtype: this.config.dtype, device: this.device });
  }

  /** Patch tokens with masked ones replaced by mask_token, cls prepended, + decoder_pos_embed. */
  private tokens(imgs: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const B = imgs.shape[0] as number;
      const D = this.config.dim;
      let x = this.patch_embed.forward(imgs);
      if (mask) x = where(reshape(mask, [B, this.numPatches, 1]), this.mask_token, x);
      const cls = expand(this.cls_token, [B, 1, D]);
      return add(concat([cls, x], 1), this.decoder_pos_embed);
    });
  }

  private runEncoder(x: Tensor): Tensor {
    return tidy(() => {
      let z = x;
      for (const blk of this.blocks.items) z = blk.forward(z);
      return this.norm.forward(z);
    });
  }

  /** forward_encoder: latent (B, N+1, D) after `norm`, with the mask used. */
  forwardEncoder(imgs: Tensor, opts: MaskOptions = {}): { latent: Tensor; mask: Tensor } {
    this.checkImages(imgs);
    return tidy(() => {
      const mask = this.randomMask(imgs.shape[0] as number, opts);
      return { latent: this.runEncoder(this.tokens(imgs, mask)), mask };
    });
  }

  /** forward_decoder: decoder blocks → decoder_norm → decoder_pred → drop cls: (B, N, p²·c). */
  forwardDecoder(latent: Tensor): Tensor {
    return tidy(() => {
      let z = latent;
      for (const blk of this.decoder_blocks.items) z = blk.forward(z);
      const y = this.decoder_pred.forward(this.decoder_norm.forward(z));
      return slice(y, 1, 1);
    });
  }

  /** The authors' patchify: (B, c, H, W) → (B, N, p²·c), 'nchpwq → nhwpqc' (channel fastest). */
  patchify(imgs: Tensor): Tensor {
    return patchify(imgs, this.config.patchSize, 'p1p2c');
  }

  /** Inverse of patchify: (B, N, p²·c) → (B, c, H, W). */
  unpatchify(x: Tensor): Tensor {
    const { patchSize: p, channels: C } = this.config;
    const g = this.gridSize;
    if (x.ndim !== 3 || x.shape[1] !== this.numPatches || x.shape[2] !== p * p * C) {
      throw new Error(
        `CrateMAE: unpatchify expected (B, ${this.numPatches}, ${p * p * C}), got ${formatShape(x.shape)}`,
      );
    }
    return tidy(() => {
      const B = x.shape[0] as number;
      const r = reshape(x, [B, g, g, p, p, C]);
      return reshape(permute(r, [0, 5, 1, 3, 2, 4]), [B, C, g * p, g * p]);
    });
  }

  /** forward_loss: mean over masked patches of the per-patch MSE (mask 1 = masked). */
  forwardLoss(imgs: Tensor, pred: Tensor, mask: Tensor): Tensor {
    return tidy(() => {
      let target = this.patchify(imgs);
      if (this.config.normPixLoss) {
        const mu = mean(target, -1, true);
        const v = variance(target, -1, { keepdim: true });
        target = mul(sub(target, mu), rsqrt(add(v, 1e-6)));
      }
      const perPatch = mean(square(sub(pred, target)), -1); // (B, N)
      if (mask.device !== 'cpu') {
        // cuda: divided on the device (no stream sync per step); a mask that removes no patch
        // gives 0 / 0 = NaN, which the trainer reports as a non-finite loss
        return div(sum(mul(perPatch, mask)), sum(mask));
      }
      const nMasked = sum(mask).item();
      if (!(nMasked > 0)) throw new Error('CrateMAE: the mask removes no patch; the loss averages over masked patches');
      return affine(sum(mul(perPatch, mask)), 1 / nMasked, 0);
    });
  }

  /** Masked-autoencoding step: { loss, pred (B, N, p²c), mask (B, N) } as the authors' forward. */
  forward(imgs: Tensor, opts: MaskOptions = {}): CrateMaeOutput {
    this.checkImages(imgs);
    return this.hooked(
      [imgs],
      tidy(() => {
        const { latent, mask } = this.forwardEncoder(imgs, opts);
        const pred = this.forwardDecoder(latent);
        return { loss: this.forwardLoss(imgs, pred, mask), pred, mask };
      }),
    );
  }

  /** Encoder features without masking (B, N+1, D) after `norm` (cls row 0), for linear probes. */
  encode(imgs: Tensor): Tensor {
    this.checkImages(imgs);
    return tidy(() => this.runEncoder(this.tokens(imgs, null)));
  }

  /** Parameters plus the two fixed sin-cos tables (how the book counts CRATE-MAE's size). */
  numParametersWithBuffers(): number {
    return this.numParameters() + this.namedBuffers().reduce((n, [, b]) => n + b.numel, 0);
  }
}

function checkRatio(r: number): void {
  if (typeof r !== 'number' || !(r >= 0 && r < 1)) {
    throw new RangeError(`CrateMAE: maskRatio must be in [0, 1), got ${String(r)}`);
  }
}

/** A preset by name (see CRATE_MAE_PRESETS) with overrides. */
export function crateMaeFromPreset(name: string, o: Partial<CrateMaeConfig> = {}): CrateMAE {
  const p = CRATE_MAE_PRESETS[name];
  if (!p) {
    throw new Error(`unknown CRATE-MAE preset '${name}'; choose one of ${Object.keys(CRATE_MAE_PRESETS).join(', ')}`);
  }
  return new CrateMAE({ ...p, ...o });
}
