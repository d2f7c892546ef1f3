// sgd.ts: SGD as torch.optim.SGD: weight decay as L2 (g + wd * p), momentum buffer started at the
// first gradient, dampening, and Nesterov momentum (g + momentum * buf).
import { add, affine } from '../ops/elementwise.js';
import { clone } from '../ops/shape.js';
import type { Tensor } from '../tensor.js';
import { type Group, Optimizer, type ParamGroup, type ParamState } from './optimizer.js';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

type SGDHyper = { lr: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean };

export class SGD extends Optimizer<SGDHyper> {
  get type(): string {
    return 'SGD';
  }

  constructor(params: readonly Tensor[] | readonly ParamGroup[], opts: SGDOptions) {
    super(params, {
      lr: opts.lr,
      momentum: opts.momentum ?? 0,
      dampening: opts.dampening ?? 0,
      nesterov: opts.nesterov ?? false,
      weightDecay: opts.weightDecay ?? 0,
    });
  }

  protected override validate(g: Group<SGDHyper>, gi: number): void {
    super.validate(g, gi);
    if (!(g.momentum >= 0)) throw new RangeError(`SGD: group ${gi} momentum must be >= 0, got ${g.momentum}`);
    if (typeof g.dampening !== 'number') throw new TypeError(`SGD: group ${gi} dampening must be a number`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw new RangeError(`SGD: group ${gi}: Nesterov momentum needs momentum > 0 and dampening 0`);
    }
  }

  protected initState(): ParamState {
    return {};
  }

  protected update(p: Tensor, g: Tensor, group: Group<SGDHyper>, st: ParamState): void {
    const { lr, momentum, dampening, nesterov, weightDecay } = group;
    let d = weightDecay !== 0 ? add(g, affine(p, weightDecay, 0)) : g;
    if (momentum !== 0) {
      const buf = st.momentum_buffer as Tensor | undefined;
      let b: Tensor;
      if (!buf) {
        b = clone(d);
        st.momentum_buffer = b;
      } else {
        buf.copy_(add(affine(buf, momentum, 0), affine(d, 1 - dampening, 0)));
        b = buf;
      }
      d = nesterov ? add(d, affine(b, momentum, 0)) : b;
    }
    p.copy_(add(p, affine(d, -lr, 0)));
  }
}
