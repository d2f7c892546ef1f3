// paramGroups.ts: splits named parameters into a weight-decay group and a no-decay group. By
// default 1-D parameters (biases, norm weights) and names containing temp, denom, pos_embedding
// or cls_token get no weight decay, as in the CRATE / timm training recipes.
import type { Tensor } from '../tensor.js';
import type { ParamGroup } from './optimizer.js';

export const NO_DECAY_NAMES: readonly string[] = Object.freeze(['temp', 'denom', 'pos_embedding', 'cls_token']);

/** The default rule: 1-D (or 0-D) tensors and the NO_DECAY_NAMES substrings are not decayed. */
export function defaultNoDecay(name: string, p: Tensor): boolean {
  return p.ndim <= 1 || NO_DECAY_NAMES.some((s) => name.includes(s));
}

export interface DecayGroupsOptions {
  weightDecay: number;
  /** Replaces the default rule: true for parameters that get no weight decay. */
  noDecay?: (name: string, p: Tensor) => boolean;
}

/**
 * Two groups: [{ params: decayed, weightDecay }, { params: the rest, weightDecay: 0 }] (both always
 * present, with `names`). Parameters with requiresGrad false are left out.
 */
export function decayGroups(namedParams: Iterable<readonly [string, Tensor]>, opts: DecayGroupsOptions): ParamGroup[] {
  if (!(opts.weightDecay >= 0)) throw new RangeError(`decayGroups: weightDecay must be >= 0, got ${opts.weightDecay}`);
  const rule = opts.noDecay ?? defaultNoDecay;
  const decay: ParamGroup = { params: [], names: [], weightDecay: opts.weightDecay };
  const none: ParamGroup = { params: [], names: [], weightDecay: 0 };
  for (const [name, p] of namedParams) {
    if (!p.requiresGrad) continue;
    const g = rule(name, p) ? none : decay;
    g.params.push(p);
    g.names?.push(name);
  }
  return [decay, none];
}
