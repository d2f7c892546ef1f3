// crate_blocks.ts: the CRATE building blocks with the authors' module layout (so state-dict keys
// match model/crate.py): Attention (MSSA: shared qkv projection, fused subspace attention,
// to_out), FeedForward (the ISTA step), PreNorm, and the overcomplete / tied ISTA blocks of
// CRATE-α and causal CRATE. (ToST's TSSA modules, with the authors' layout, are in models/tost.ts.)
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { ista, istaOvercomplete, istaTied, type MssaOptions, mssa } from '../ops/crate.js';
import type { Tensor } from '../tensor.js';
import { kaimingUniform } from './init.js';
import { Dropout, Identity, LayerNorm, Linear, Sequential } from './layers.js';
import { Module } from './module.js';

/** MSSA as coded in model/crate.py `Attention`: P = x·Uᵀ (no bias), MSSA(P), then to_out. */
export class Attention extends Module {
  readonly qkv: Linear;
  readonly to_out: Sequential | Identity;
  constructor(
    readonly dim: number,
    readonly heads: number,
    readonly dimHead: number,
    opts: { causal?: boolean; outBias?: boolean; dropout?: number; dtype?: DType } = {},
  ) {
    super();
    const inner = heads * dimHead;
    this.causal = opts.causal ?? false;
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.qkv = this.child('qkv', new Linear(dim, inner, { bias: false, ...dt }));
    const projectOut = !(heads === 1 && dimHead === dim);
    this.to_out = this.child(
      'to_out',
      projectOut
        ? new Sequential(new Linear(inner, dim, { bias: opts.outBias ?? true, ...dt }), new Dropout(opts.dropout ?? 0))
        : new Identity(),
    );
  }
  readonly causal: boolean;
  forward(x: Tensor, keyMask: Tensor | null = null): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const P = this.qkv.forward(x);
        const o: MssaOptions = { heads: this.heads, causal: this.causal, keyMask };
        return this.to_out.forward(mssa(P, o));
      }),
    );
  }
}

/** The ISTA block of model/crate.py `FeedForward`: ReLU(x + η(xW − xWᵀW) − ηλ), no residual. */
export class FeedForward extends Module {
  readonly weight: Tensor;
  constructor(
    readonly dim: number,
    readonly eta = 0.1,
    readonly lambda = 0.1,
    opts: { dtype?: DType } = {},
  ) {
    super();
    this.weight = this.param('weight', kaimingUniform([dim, dim], 0, opts.dtype));
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], ista(x, this.weight, this.eta, this.lambda));
  }
}

/** fn(LayerNorm(x)): the authors' PreNorm wrapper (keys `norm`, `fn`). */
export class PreNorm<F extends Module & { forward(x: Tensor): Tensor }> extends Module {
  readonly norm: LayerNorm;
  readonly fn: F;
  constructor(dim: number, fn: F, eps = 1e-5, dtype?: DType) {
    super();
    this.norm = this.child('norm', new LayerNorm(dim, eps, dtype === undefined ? {} : { dtype }));
    this.fn = this.child('fn', fn);
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => this.fn.forward(this.norm.forward(x))),
    );
  }
}

/** CRATE-α ODL block: two-step overcomplete ISTA with dictionaries D, D1 (d, 4d). */
export class OvercompleteISTA extends Module {
  readonly D: Tensor;
  readonly D1: Tensor;
  constructor(
    readonly dim: number,
    readonly overcomplete = 4,
    readonly eta = 0.1,
    readonly lambda = 0.1,
    opts: { dtype?: DType } = {},
  ) {
    super();
    const m = dim * overcomplete;
    this.D = this.param('D', kaimingUniform([dim, m], 0, opts.dtype));
    this.D1 = this.param('D1', kaimingUniform([dim, m], 0, opts.dtype));
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], istaOvercomplete(x, this.D, this.D1, this.eta, this.lambda));
  }
}

/** Causal-CRATE (crate-lm) tied overcomplete ISTA: W (4d, d) encodes and decodes. */
export class TiedISTA extends Module {
  readonly weight: Tensor;
  constructor(
    readonly dim: number,
    readonly overcomplete = 4,
    readonly eta = 0.1,
    readonly lambda = 0.1,
    opts: { dtype?: DType } = {},
  ) {
    super();
    this.weight = this.param('weight', kaimingUniform([dim * overcomplete, dim], 0, opts.dtype));
  }
  forward(x: Tensor): Tensor {
    return this.hooked([x], istaTied(x, this.weight, this.eta, this.lambda));
  }
}
