// crate_alpha.ts: the CRATE-α image classifier as coded in UCSC-VLAA/CRATE-alpha
// torch_inference/model/crate_alpha.py (spec 1.5): `conv1` patch embedding (kernel = stride =
// patch, bias, no LayerNorm), cls token, learned positions, L layers of
// [z + MSSA(LN z) (qkv and to_out without bias); z + ODL(LN z)] with LN eps 1e-6 and the
// two-step overcomplete ISTA (dictionaries D, D1 of shape (d, 4d), η = λ = 0.1; note the
// residual, unlike CRATE), cls pooling and the `mlp_head` LN (eps 1e-5) → Linear. Parameter names
// match the authors' state dict, e.g. `transformer.layers.0.1.fn.D1`, `conv1.weight`.
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { Attention, OvercompleteISTA, PreNorm } from '../nn/crate_blocks.js';
import { ConvPatchEmbed, LayerNorm, Linear, ModuleList, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { randn } from '../ops/creation.js';
import { add } from '../ops/elementwise.js';
import { concat, expand, reshape, slice } from '../ops/shape.js';
import { formatShape, type Tensor } from '../tensor.js';

export interface CrateAlphaConfig {
  imageSize: number;
  patchSize: number;
  numClasses: number;
  dim: number;
  depth: number;
  heads: number;
  /** per-head width p (default dim / heads, as CRATE_base / CRATE_large) */
  dimHead?: number;
  channels?: number;
  /** dictionary width = overcomplete · dim (4, hard-coded by the authors) */
  overcomplete?: number;
  /** ODL step size η and threshold λ (0.1 / 0.1) */
  eta?: number;
  lambda?: number;
  dtype?: DType;
}

/**
 * Presets at 224×224, 1000 classes. Torch defines CRATE_base (B/16) and CRATE_large (L/14);
 * the others are the JAX `decode_variant` widths (Ti 192/12/3, S 576/12/12, H 1280/32/16) with
 * the patch in the name. Parameter counts (computed from the code, spec section 2 for B/16 and
 * L/14): ti16 4.81M, s16 40.98M, b16 72.33M, b32 73.99M, l14 253.65M, h14 526.82M. The demo
 * preset is a 28×28×1 (MNIST) model with patch 7, 10 classes.
 */
export const CRATE_ALPHA_PRESETS: Record<string, Omit<CrateAlphaConfig, 'dtype'>> = {
  'crate-alpha-ti16': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 192, depth: 12, heads: 3 },
  'crate-alpha-s16': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 576, depth: 12, heads: 12 },
  'crate-alpha-b16': { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 768, depth: 12, heads: 12 },
  'crate-alpha-b32': { imageSize: 224, patchSize: 32, numClasses: 1000, dim: 768, depth: 12, heads: 12 },
  'crate-alpha-l14': { imageSize: 224, patchSize: 14, numClasses: 1000, dim: 1024, depth: 24, heads: 16 },
  'crate-alpha-h14': { imageSize: 224, patchSize: 14, numClasses: 1000, dim: 1280, depth: 32, heads: 16 },
  'crate-alpha-demo': {
    imageSize: 28,
    patchSize: 7,
    numClasses: 10,
    channels: 1,
    dim: 64,
    depth: 2,
    heads: 2,
  },
};

/** Parameter count of a CRATE-α config, from the formula (for presets too large to build). */
export function crateAlphaParamCount(cfg: CrateAlphaConfig): number {
  const D = cfg.dim;
  const inner = cfg.heads * (cfg.dimHead ?? D / cfg.heads);
  const C = cfg.channels ?? 3;
  const N = (cfg.imageSize / cfg.patchSize) ** 2;
  const m = (cfg.overcomplete ?? 4) * D;
  const conv = D * C * cfg.patchSize ** 2 + D;
  const layer = 4 * D + 2 * D * inner + 2 * D * m;
  const head = 2 * D + D * cfg.numClasses + cfg.numClasses;
  return conv + (N + 1) * D + D + cfg.depth * layer + head;
}

/** The authors' Transformer: x = x + attn(x); x = x + ff(x) (keys layers.i.{0,1}.{norm,fn}). */
export class CrateAlphaTransformer extends Module {
  readonly layers: ModuleList<ModuleList>;
  constructor(
    dim: number,
    depth: number,
    heads: number,
    dimHead: number,
    overcomplete: number,
    eta: number,
    lambda: number,
    dtype?: DType,
  ) {
    super();
    const dt = dtype === undefined ? {} : { dtype };
    const layers: ModuleList[] = [];
    for (let i = 0; i < depth; i++) {
      layers.push(
        new ModuleList([
          new PreNorm(dim, new Attention(dim, heads, dimHead, { outBias: false, ...dt }), 1e-6, dtype),
          new PreNorm(dim, new OvercompleteISTA(dim, overcomplete, eta, lambda, dt), 1e-6, dtype),
        ]),
      );
    }
    this.layers = this.child('layers', new ModuleList(layers));
  }
  /** The attention and ODL sub-blocks of layer i. */
  layer(i: number): { attn: PreNorm<Attention>; odl: PreNorm<OvercompleteISTA> } {
    const l = this.layers.at(i);
    return { attn: l.at(0) as PreNorm<Attention>, odl: l.at(1) as PreNorm<OvercompleteISTA> };
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let z = x;
      for (let i = 0; i < this.layers.length; i++) {
        const { attn, odl } = this.layer(i);
        z = add(attn.forward(z), z); // Z^{ℓ+½} = Z^ℓ + MSSA(LN Z^ℓ)
        z = add(odl.forward(z), z); // Z^{ℓ+1} = Z^{ℓ+½} + ODL(LN Z^{ℓ+½})
      }
      return z;
    });
  }
}

export class CrateAlpha extends Module {
  readonly config: Required<Omit<CrateAlphaConfig, 'dtype'>> & { dtype: DType };
  readonly conv1: ConvPatchEmbed;
  readonly pos_embedding: Tensor;
  readonly cls_token: Tensor;
  readonly transformer: CrateAlphaTransformer;
  readonly mlp_head: Sequential;
  readonly numPatches: number;

  constructor(cfg: CrateAlphaConfig) {
    super();
    const c = {
      channels: 3,
      overcomplete: 4,
      eta: 0.1,
      lambda: 0.1,
      dtype: 'f32' as DType,
      ...cfg,
      dimHead: cfg.dimHead ?? cfg.dim / cfg.heads,
    };
    this.config = c;
    const ints: [string, unknown, number][] = [
      ['imageSize', c.imageSize, 1],
      ['patchSize', c.patchSize, 1],
      ['numClasses', c.numClasses, 1],
      ['channels', c.channels, 1],
      ['dim', c.dim, 1],
      ['heads', c.heads, 1],
      ['dimHead', c.dimHead, 1],
      ['overcomplete', c.overcomplete, 1],
      ['depth', c.depth, 0],
    ];
    for (const [k, v, lo] of ints) {
      if (!Number.isInteger(v) || (v as number) < lo) {
        throw new Error(`CrateAlpha: ${k} must be an integer >= ${lo}, got ${String(v)}`);
      }
    }
    if (c.imageSize % c.patchSize !== 0) {
      throw new Error(`CrateAlpha: image size ${c.imageSize} is not divisible by patch size ${c.patchSize}`);
    }
    this.numPatches = (c.imageSize / c.patchSize) ** 2;
    const dt = { dtype: c.dtype };
    this.conv1 = this.child('conv1', new ConvPatchEmbed(c.channels, c.dim, c.patchSize, dt));
    this.pos_embedding = this.param('pos_embedding', randn([1, this.numPatches + 1, c.dim], dt));
    this.cls_token = this.param('cls_token', randn([1, 1, c.dim], dt));
    this.transformer = this.child(
      'transformer',
      new CrateAlphaTransformer(c.dim, c.depth, c.heads, c.dimHead, c.overcomplete, c.eta, c.lambda, c.dtype),
    );
    this.mlp_head = this.child(
      'mlp_head',
      new Sequential(new LayerNorm(c.dim, 1e-5, dt), new Linear(c.dim, c.numClasses, dt)),
    );
  }

  /** Tokens after conv1, cls and positions: (B, N+1, D). */
  embed(img: Tensor): Tensor {
    const c = this.config;
    if (img.ndim !== 4 || img.shape[1] !== c.channels || img.shape[2] !== c.imageSize || img.shape[3] !== c.imageSize) {
      throw new Error(
        `CrateAlpha: expected images (B, ${c.channels}, ${c.imageSize}, ${c.imageSize}), got ${formatShape(img.shape)}`,
      );
    }
    if (img.dtype !== c.dtype) throw new Error(`CrateAlpha: expected ${c.dtype} images, got ${img.dtype}`);
    return tidy(() => {
      const B = img.shape[0] as number;
      const x = this.conv1.forward(img);
      const cls = expand(this.cls_token, [B, 1, c.dim]);
      return add(concat([cls, x], 1), this.pos_embedding);
    });
  }

  /** Final token features before pooling: (B, N+1, D). */
  features(img: Tensor): Tensor {
    return tidy(() => this.transformer.forward(this.embed(img)));
  }

  /** Class logits (B, numClasses) from the cls token. */
  forward(img: Tensor): Tensor {
    return this.hooked(
      [img],
      tidy(() => {
        const z = this.features(img);
        const B = z.shape[0] as number;
        return this.mlp_head.forward(reshape(slice(z, 1, 0, 1), [B, this.config.dim]));
      }),
    );
  }
}

/** A preset by name (see CRATE_ALPHA_PRESETS) with overrides. */
export function crateAlphaFromPreset(name: string, o: Partial<CrateAlphaConfig> = {}): CrateAlpha {
  const p = CRATE_ALPHA_PRESETS[name];
  if (!p) {
    throw new Error(
      `unknown CRATE-alpha preset '${name}'; choose one of ${Object.keys(CRATE_ALPHA_PRESETS).join(', ')}`,
    );
  }
  return new CrateAlpha({ ...p, ...o });
}
