// lion.ts: Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") as lion-pytorch:
// p *= 1 - lr * wd; p -= lr * sign(b1 * m + (1 - b1) * g); m = b2 * m + (1 - b2) * g.
import { zerosLike } from '../ops/creation.js';
import { add, affine, sign } from '../ops/elementwise.js';
import type { Tensor } from '../tensor.js';
import { type Group, Optimizer, type ParamGroup, type ParamState } from './optimizer.js';

export interface LionOptions {
  lr?: number;
  betas?: readonly [number, number];
  weightDecay?: number;
}

type LionHyper = { lr: number; weightDecay: number; betas: readonly [number, number] };

export class Lion extends Optimizer<LionHyper> {
  get type(): string {
    return 'Lion';
  }

  /** Defaults as lion-pytorch: lr 1e-4, betas (0.9, 0.99), weightDecay 0. */
  constructor(params: readonly Tensor[] | readonly ParamGroup[], opts: LionOptions = {}) {
    super(params, { lr: opts.lr ?? 1e-4, betas: opts.betas ?? [0.9, 0.99], weightDecay: opts.weightDecay ?? 0 });
  }

  protected override validate(g: Group<LionHyper>, gi: number): void {
    super.validate(g, gi);
    const b = g.betas;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => x >= 0 && x <= 1)) {
      throw new RangeError(`Lion: group ${gi} betas must be two numbers in [0, 1], got ${String(b)}`);
    }
  }

  protected initState(p: Tensor): ParamState {
    return { exp_avg: zerosLike(p) };
  }

  protected update(p: Tensor, g: Tensor, group: Group<LionHyper>, st: ParamState): void {
    const { lr, weightDecay } = group;
    const [b1, b2] = group.betas;
    const m = st.exp_avg as Tensor;
    const decayed = weightDecay !== 0 ? affine(p, 1 - lr * weightDecay, 0) : p;
    const dir = sign(add(affine(m, b1, 0), affine(g, 1 - b1, 0)));
    p.copy_(add(decayed, affine(dir, -lr, 0)));
    m.copy_(add(affine(m, b2, 0), affine(g, 1 - b2, 0)));
  }
}
