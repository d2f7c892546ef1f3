// crate.ts: the CRATE image classifier as coded in Ma-Lab-Berkeley/CRATE model/crate.py
// (spec 1.3): patchify (p1 p2 c) -> LN -> Linear -> LN, cls token, learned positions, L layers of
// [z + MSSA(LN z); ISTA(LN z)], cls (or mean) pooling, LN -> Linear head. Parameter names match
// the authors' state dict, e.g. `transformer.layers.0.0.fn.qkv.weight`.
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { Attention, FeedForward, PreNorm } from '../nn/crate_blocks.js';
import { LayerNorm, Linear, ModuleList, patchify, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { randn } from '../ops/creation.js';
import { add } from '../ops/elementwise.js';
import { mean } from '../ops/reduce.js';
import { concat, expand, reshape, slice } from '../ops/shape.js';
import { formatShape, type Tensor } from '../tensor.js';

export interface CrateConfig {
  imageSize: number;
  patchSize: number;
  numClasses: number;
  dim: number;
  depth: number;
  heads: number;
  dimHead: number;
  channels?: number;
  pool?: 'cls' | 'mean';
  /** ISTA step size η and threshold λ (0.1 / 0.1 in CRATE) */
  eta?: number;
  lambda?: number;
  dtype?: DType;
}

/** The published presets (spec section 2): parameter counts 6.09M / 13.12M / 22.80M / 77.64M at 224/16, 1000 classes. */
export const CRATE_PRESETS: Record<string, Omit<CrateConfig, 'imageSize' | 'patchSize' | 'numClasses'>> = {
  'crate-tiny': { dim: 384, depth: 12, heads: 6, dimHead: 64 },
  'crate-small': { dim: 576, depth: 12, heads: 12, dimHead: 48 },
  'crate-base': { dim: 768, depth: 12, heads: 12, dimHead: 64 },
  'crate-large': { dim: 1024, depth: 24, heads: 16, dimHead: 64 },
};

export class Transformer extends Module {
  readonly layers: ModuleList<ModuleList>;
  constructor(dim: number, depth: number, heads: number, dimHead: number, eta: number, lambda: number, dtype?: DType) {
    super();
    const dt = dtype === undefined ? {} : { dtype };
    const layers: ModuleList[] = [];
    for (let i = 0; i < depth; i++) {
      layers.push(
        new ModuleList([
          new PreNorm(dim, new Attention(dim, heads, dimHead, dt), 1e-5, dtype),
          new PreNorm(dim, new FeedForward(dim, eta, lambda, dt), 1e-5, dtype),
        ]),
      );
    }
    this.layers = this.child('layers', new ModuleList(layers));
  }
  /** The attention and ISTA sub-blocks of layer i. */
  layer(i: number): { attn: PreNorm<Attention>; ista: PreNorm<FeedForward> } {
    const l = this.layers.at(i);
    return { attn: l.at(0) as PreNorm<Attention>, ista: l.at(1) as PreNorm<FeedForward> };
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let z = x;
      for (let i = 0; i < this.layers.length; i++) {
        const { attn, ista } = this.layer(i);
        z = add(z, attn.forward(z)); // Z^{ℓ+½} = Z^ℓ + MSSA(LN Z^ℓ)
        z = ista.forward(z); // Z^{ℓ+1} = ISTA(LN Z^{ℓ+½})
      }
      return z;
    });
  }
}

export class CRATE extends Module {
  readonly config: Required<Omit<CrateConfig, 'dtype'>> & { dtype: DType };
  readonly to_patch_embedding: Sequential;
  readonly pos_embedding: Tensor;
  readonly cls_token: Tensor;
  readonly transformer: Transformer;
  readonly mlp_head: Sequential;
  readonly numPatches: number;

  constructor(cfg: CrateConfig) {
    super();
    const c = {
      channels: 3,
      pool: 'cls' as const,
      eta: 0.1,
      lambda: 0.1,
      dtype: 'f32' as DType,
      ...cfg,
    };
    this.config = c;
    if (c.imageSize % c.patchSize !== 0) {
      throw new Error(`CRATE: image size ${c.imageSize} is not divisible by patch size ${c.patchSize}`);
    }
    this.numPatches = (c.imageSize / c.patchSize) ** 2;
    const patchDim = c.channels * c.patchSize * c.patchSize;
    const dt = { dtype: c.dtype };
    this.to_patch_embedding = this.child(
      'to_patch_embedding',
      new Sequential(
        null,
        new LayerNorm(patchDim, 1e-5, dt),
        new Linear(patchDim, c.dim, dt),
        new LayerNorm(c.dim, 1e-5, dt),
      ),
    );
    this.pos_embedding = this.param('pos_embedding', randn([1, this.numPatches + 1, c.dim], dt));
    this.cls_token = this.param('cls_token', randn([1, 1, c.dim], dt));
    this.transformer = this.child(
      'transformer',
      new Transformer(c.dim, c.depth, c.heads, c.dimHead, c.eta, c.lambda, c.dtype),
    );
    this.mlp_head = this.child(
      'mlp_head',
      new Sequential(new LayerNorm(c.dim, 1e-5, dt), new Linear(c.dim, c.numClasses, dt)),
    );
  }

  /** Tokens after the embedding, cls and positions: (B, N+1, D). */
  embed(img: Tensor): Tensor {
    const c = this.config;
    if (img.ndim !== 4 || img.shape[1] !== c.channels || img.shape[2] !== c.imageSize || img.shape[3] !== c.imageSize) {
      throw new Error(
        `CRATE: expected images (B, ${c.channels}, ${c.imageSize}, ${c.imageSize}), got ${formatShape(img.shape)}`,
      );
    }
    return tidy(() => {
      const B = img.shape[0] as number;
      const x = this.to_patch_embedding.forward(patchify(img, c.patchSize, 'p1p2c'));
      const cls = expand(this.cls_token, [B, 1, c.dim]);
      return add(concat([cls, x], 1), this.pos_embedding);
    });
  }

  /** Final token features before pooling: (B, N+1, D). */
  features(img: Tensor): Tensor {
    return tidy(() => this.transformer.forward(this.embed(img)));
  }

  /** Class logits (B, numClasses). */
  forward(img: Tensor): Tensor {
    return this.hooked(
      [img],
      tidy(() => {
        const z = this.features(img);
        const B = z.shape[0] as number;
        const pooled = this.config.pool === 'mean' ? mean(z, 1) : reshape(slice(z, 1, 0, 1), [B, this.config.dim]);
        return this.mlp_head.forward(pooled);
      }),
    );
  }
}

/** A preset by name ('crate-tiny' | 'crate-small' | 'crate-base' | 'crate-large') with overrides. */
export function crateFromPreset(
  name: string,
  o: Pick<CrateConfig, 'imageSize' | 'patchSize' | 'numClasses'> & Partial<CrateConfig>,
): CRATE {
  const p = CRATE_PRESETS[name];
  if (!p) throw new Error(`unknown CRATE preset '${name}'; choose one of ${Object.keys(CRATE_PRESETS).join(', ')}`);
  return new CRATE({ ...p, ...o });
}
