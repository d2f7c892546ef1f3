// layers.ts: the basic layers: Linear, LayerNorm, Dropout, Embedding, Identity, Sequential,
// ModuleList and the patch embeddings (CRATE's linear one and the conv one of MAE/CRATE-α).
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { ones, zeros } from '../ops/creation.js';
import { add } from '../ops/elementwise.js';
import { linear as linearOp } from '../ops/matmul.js';
import { dropout, layerNorm } from '../ops/nn.js';
import { embedding, embeddingValidated, permute, reshape } from '../ops/shape.js';
import { formatShape, type Tensor } from '../tensor.js';
import { linearDefault, normal } from './init.js';
import { Module } from './module.js';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean; dtype?: DType } = {},
  ) {
    super();
    const init = linearDefault(outFeatures, inFeatures, opts.dtype);
    this.weight = this.param('weight', init.weight);
    if (opts.bias ?? true) this.bias = this.param('bias', init.bias);
    else {
      init.bias.dispose();
      this.bias = null;
    }
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], linearOp(x, this.weight, this.bias));
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    opts: { affine?: boolean; bias?: boolean; dtype?: DType } = {},
  ) {
    super();
    const affine = opts.affine ?? true;
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.weight = affine ? this.param('weight', ones([dim], dt)) : null;
    this.bias = affine && (opts.bias ?? true) ? this.param('bias', zeros([dim], dt)) : null;
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], layerNorm(x, this.weight, this.bias, this.eps));
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], dropout(x, this.p, { training: this.training }));
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return this.hooked([x], add(x, 0));
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(numEmbeddings: number, dim: number, opts: { std?: number; dtype?: DType } = {}) {
    super();
    this.weight = this.param('weight', normal([numEmbeddings, dim], opts.std ?? 1, opts.dtype));
  }
  forward(ids: Tensor): Tensor {
    return this.hooked([ids], embedding(this.weight, ids));
  }
  /** @internal forward for ids already checked against the vocabulary (no index check on CUDA). */
  forwardValidated(ids: Tensor): Tensor {
    return this.hooked([ids], embeddingValidated(this.weight, ids));
  }
}

/** A layer that maps one tensor to one tensor. */
export interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

/** Runs children in order; keys are their indices ('0', '1', ...) as in nn.Sequential. */
export class Sequential extends Module {
  readonly layers: (Layer | null)[];
  /** `null` entries hold an index without parameters (e.g. einops Rearrange in the authors' code). */
  constructor(...layers: (Layer | null)[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => {
      if (l) this.child(String(i), l);
    });
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const l of this.layers) if (l) h = l.forward(h);
      return h === x ? add(x, 0) : h;
    });
  }
}

/** A list of modules keyed '0', '1', ... (nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => {
      this.child(String(i), m);
    });
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    const m = this.items[i];
    if (!m) throw new RangeError(`ModuleList: index ${i} out of range (${this.items.length})`);
    return m;
  }
}

/**
 * Splits images (B, C, H, W) into non-overlapping P×P patches: (B, (H/P)(W/P), P·P·C).
 * order 'p1p2c' is einops `b c (h p1) (w p2) -> b (h w) (p1 p2 c)` (CRATE); 'cp1p2' is the
 * flattening of a conv weight (D, C, P, P) (timm PatchEmbed, CRATE-α conv1).
 */
export function patchify(x: Tensor, P: number, order: 'p1p2c' | 'cp1p2' = 'p1p2c'): Tensor {
  if (x.ndim !== 4) throw new Error(`patchify: expected images (B, C, H, W), got ${formatShape(x.shape)}`);
  const [B, Cc, H, W] = x.shape as [number, number, number, number];
  if (H % P !== 0 || W % P !== 0) throw new Error(`patchify: image ${H}x${W} is not divisible by patch ${P}`);
  const h = H / P;
  const w = W / P;
  return tidy(() => {
    const r = reshape(x, [B, Cc, h, P, w, P]);
    const perm = order === 'p1p2c' ? [0, 2, 4, 3, 5, 1] : [0, 2, 4, 1, 3, 5];
    return reshape(permute(r, perm), [B, h * w, P * P * Cc]);
  });
}

/** Conv2d with kernel = stride = P as patchify + matmul: weight (D, C, P, P), bias (D). */
export class ConvPatchEmbed extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChans: number,
    readonly dim: number,
    readonly patch: number,
    opts: { bias?: boolean; dtype?: DType } = {},
  ) {
    super();
    const fan = inChans * patch * patch;
    const init = linearDefault(dim, fan, opts.dtype);
    this.weight = this.param('weight', reshape(init.weight, [dim, inChans, patch, patch]));
    init.weight.dispose();
    if (opts.bias ?? true) this.bias = this.param('bias', init.bias);
    else {
      init.bias.dispose();
      this.bias = null;
    }
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const patches = patchify(x, this.patch, 'cp1p2');
        const w2 = reshape(this.weight, [this.dim, this.inChans * this.patch * this.patch]);
        return linearOp(patches, w2, this.bias);
      }),
    );
  }
}
