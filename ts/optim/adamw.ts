// adamw.ts: AdamW (Loshchilov & Hutter) exactly as torch.optim.AdamW (amsgrad off): decoupled
// weight decay p *= 1 - lr * wd, bias-corrected moments, denom = sqrt(v) / sqrt(1 - b2^t) + eps.
// bf16 parameters on cuda (a pure-bf16 model): the moments exp_avg / exp_avg_sq are f32, and one
// fused native step widens p and g, updates in f32 and rounds p once (nearest even). Plain
// rounding: an update smaller than half a bf16 ulp of p (|dp| < 2^-9 |p|, e.g. lr 1e-4 on |p| ~ 1)
// is lost, so p can stall; f32 master weights under autocast() do not have this problem.

import type { DType } from '../dtype.js';
import { native } from '../native.js';
import { zerosLike } from '../ops/creation.js';
import { add, affine, div, sqrt, square } from '../ops/elementwise.js';
import type { Tensor } from '../tensor.js';
import { type Group, Optimizer, type ParamGroup, type ParamState } from './optimizer.js';

export interface AdamWOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
}

type AdamWHyper = { lr: number; weightDecay: number; betas: readonly [number, number]; eps: number };

export class AdamW extends Optimizer<AdamWHyper> {
  get type(): string {
    return 'AdamW';
  }

  /** Defaults as torch: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weightDecay 0.01. */
  constructor(params: readonly Tensor[] | readonly ParamGroup[], opts: AdamWOptions = {}) {
    super(params, {
      lr: opts.lr ?? 1e-3,
      betas: opts.betas ?? [0.9, 0.999],
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? 1e-2,
    });
  }

  protected override validate(g: Group<AdamWHyper>, gi: number): void {
    super.validate(g, gi);
    const b = g.betas;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => x >= 0 && x < 1)) {
      throw new RangeError(`AdamW: group ${gi} betas must be two numbers in [0, 1), got ${String(b)}`);
    }
    if (!(g.eps >= 0)) throw new RangeError(`AdamW: group ${gi} eps must be >= 0, got ${g.eps}`);
  }

  protected override acceptsBf16(): boolean {
    return true;
  }

  protected override stateDtype(p: Tensor): DType {
    return p.dtype === 'bf16' ? 'f32' : p.dtype;
  }

  protected initState(p: Tensor): ParamState {
    const dtype = this.stateDtype(p);
    return { step: 0, exp_avg: zerosLike(p, { dtype }), exp_avg_sq: zerosLike(p, { dtype }) };
  }

  protected update(p: Tensor, g: Tensor, group: Group<AdamWHyper>, st: ParamState): void {
    const { lr, eps, weightDecay } = group;
    const [b1, b2] = group.betas;
    const m = st.exp_avg as Tensor;
    const v = st.exp_avg_sq as Tensor;
    const t = (st.step as number) + 1;
    st.step = t;
    if (p.device === 'cpu' || p.dtype === 'bf16') {
      // one fused native pass over p, g, m, v (same math as below; bf16 p, g with f32 m, v on cuda)
      native.adamwStep(
        p._h('AdamW.step'),
        g._h('AdamW.step'),
        m._h('AdamW.step'),
        v._h('AdamW.step'),
        lr,
        b1,
        b2,
        eps,
        weightDecay,
        1 - b1 ** t,
        1 - b2 ** t,
      );
      return;
    }
    m.copy_(add(affine(m, b1, 0), affine(g, 1 - b1, 0)));
    v.copy_(add(affine(v, b2, 0), affine(square(g), 1 - b2, 0)));
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    const denom = affine(sqrt(v), 1 / Math.sqrt(bc2), eps);
    const decayed = weightDecay !== 0 ? affine(p, 1 - lr * weightDecay, 0) : p;
    p.copy_(add(decayed, affine(div(m, denom), -lr / bc1, 0)));
  }
}
