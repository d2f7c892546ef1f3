// optimizer.ts: the Optimizer base over parameter groups (torch.optim-style): per-group
// hyper-parameters (lr settable each step by a schedule), zeroGrad(), step() that updates each
// parameter in place with copy_() under noGrad() and tidy() (so no temporary outlives the step),
// state tensors kept with keep(), and stateDict()/loadStateDict() with clear mismatch errors.
// Parameters are f32/f64; an optimizer that overrides acceptsBf16() also takes bf16 CUDA
// parameters (AdamW: f32 moments, see stateDtype()).

import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { keep, tidy } from '../memory.js';
import { clone } from '../ops/shape.js';
import { formatShape, Tensor } from '../tensor.js';

/** Hyper-parameter values a group may hold. */
export type HyperValue = number | boolean | readonly number[];
export type Hyper = { lr: number; weightDecay: number } & Record<string, HyperValue>;

/** A group as passed to an optimizer: its parameters and any hyper-parameters that override the defaults. */
export interface ParamGroup {
  params: Tensor[];
  lr?: number;
  weightDecay?: number;
  /** Parameter names, for messages (optional; same length as params). */
  names?: string[];
  [hyper: string]: HyperValue | Tensor[] | string[] | undefined;
}

/** A group inside an optimizer: every hyper-parameter resolved. */
export type Group<H extends Hyper> = H & { params: Tensor[]; names?: string[] };

/** Per-parameter optimizer state: tensors (moments, buffers) and numbers (step counts). */
export type ParamState = Record<string, Tensor | number>;

export interface OptimizerStateDict {
  /** The optimizer class ('AdamW', 'SGD', 'Lion'). */
  type: string;
  /** Number of step() calls. */
  step: number;
  /** Hyper-parameters per group, with the group's parameter count. */
  groups: (Record<string, HyperValue> & { numParams: number })[];
  /** State per parameter, keyed `${group}.${index}`. Tensors are shared with the optimizer (do not dispose). */
  state: Record<string, ParamState>;
}

export abstract class Optimizer<H extends Hyper = Hyper> {
  /** The optimizer's name (a getter, so it is defined while the base constructor validates). */
  abstract get type(): string;
  readonly paramGroups: Group<H>[];
  /** Number of step() calls so far. */
  stepCount = 0;
  protected readonly state = new Map<Tensor, ParamState>();
  constructor(params: readonly Tensor[] | readonly ParamGroup[], defaults: H) {
    const list = params as readonly (Tensor | ParamGroup)[];
    if (!Array.isArray(list) || list.length === 0) throw new Error('optimizer: got an empty parameter list');
    const groups: ParamGroup[] =
      list[0] instanceof Tensor ? [{ params: [...(list as Tensor[])] }] : [...(list as ParamGroup[])];
    const seen = new Set<Tensor>();
    this.paramGroups = groups.map((g, gi) => {
      if (!g || !Array.isArray(g.params)) throw new TypeError(`optimizer: group ${gi} must have a params array`);
      g.params.forEach((p, i) => {
        if (!(p instanceof Tensor)) throw new TypeError(`optimizer: group ${gi} param ${i} is not a Tensor`);
        p._h('optimizer');
        const bf16Ok = p.dtype === 'bf16' && p.device === 'cuda' && this.acceptsBf16();
        if (p.dtype !== 'f32' && p.dtype !== 'f64' && !bf16Ok) {
          throw new TypeError(
            `optimizer: group ${gi} param ${i} is ${p.dtype} on ${p.device}; only f32/f64 parameters can be optimized${this.acceptsBf16() ? ' (and bf16 ones on cuda)' : ` (${this.type} has no bf16 update)`}`,
          );
        }
        if (p._node) {
          throw new Error(`optimizer: group ${gi} param ${i} is not a leaf tensor (it was computed by an op)`);
        }
        if (seen.has(p)) {
          throw new Error(`optimizer: parameter ${this.nameOf(g, i, gi)} appears in more than one group`);
        }
        seen.add(p);
      });
      if (g.names && g.names.length !== g.params.length) {
        throw new Error(`optimizer: group ${gi} has ${g.params.length} params but ${g.names.length} names`);
      }
      const resolved = { ...defaults } as Record<string, unknown>;
      for (const [k, v] of Object.entries(g)) if (k !== 'params' && k !== 'names' && v !== undefined) resolved[k] = v;
      resolved.params = [...g.params];
      if (g.names) resolved.names = [...g.names];
      const out = resolved as Group<H>;
      this.validate(out, gi);
      return out;
    });
  }

  /** Whether bf16 parameters on cuda are accepted (a method, so the base constructor can ask). */
  protected acceptsBf16(): boolean {
    return false;
  }

  /** The dtype of the state tensors of p (loadStateDict converts to it): p's dtype by default. */
  protected stateDtype(p: Tensor): DType {
    return p.dtype;
  }

  /** Checks a group's hyper-parameters (throws with the group index). */
  protected validate(g: Group<H>, gi: number): void {
    if (typeof g.lr !== 'number' || !(g.lr >= 0)) {
      throw new RangeError(`${this.type}: group ${gi} lr must be >= 0, got ${g.lr}`);
    }
    if (typeof g.weightDecay !== 'number' || !(g.weightDecay >= 0)) {
      throw new RangeError(`${this.type}: group ${gi} weightDecay must be >= 0, got ${g.weightDecay}`);
    }
  }

  /** Fresh state for a parameter on its first step (tensors are kept by the base class). */
  protected abstract initState(p: Tensor, group: Group<H>): ParamState;
  /** Updates p in place from its gradient g (called inside noGrad and tidy). */
  protected abstract update(p: Tensor, g: Tensor, group: Group<H>, state: ParamState): void;

  private nameOf(g: { names?: string[] | undefined }, i: number, gi: number): string {
    return g.names?.[i] ?? `${gi}.${i}`;
  }

  /** Disposes every parameter's gradient. */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.zeroGrad();
  }

  /** One update of every parameter that has a gradient (others are skipped). */
  step(): void {
    noGrad(() => {
      this.paramGroups.forEach((group, gi) => {
        group.params.forEach((p, i) => {
          const g = p.grad;
          if (!g || g.isDisposed) return;
          p._h(`${this.type}.step`);
          if (g.dtype !== p.dtype || g.ndim !== p.ndim || g.shape.some((s, d) => s !== p.shape[d])) {
            throw new Error(
              `${this.type}.step: gradient of ${this.nameOf(group, i, gi)} is ${formatShape(g.shape)} ${g.dtype}, parameter is ${formatShape(p.shape)} ${p.dtype}`,
            );
          }
          let st = this.state.get(p);
          if (!st) {
            st = this.initState(p, group);
            for (const v of Object.values(st)) if (v instanceof Tensor) keep(v);
            this.state.set(p, st);
          }
          const state = st;
          tidy(() => {
            this.update(p, g, group, state);
            // State tensors made during the update (e.g. a momentum buffer) outlive the scope.
            for (const v of Object.values(state)) if (v instanceof Tensor) keep(v);
          });
        });
      });
    });
    this.stepCount++;
  }

  /** The learning rate of group 0. */
  get lr(): number {
    return (this.paramGroups[0] as Group<H>).lr;
  }
  /** Sets the learning rate of every group (a number, or per group from a function). */
  setLr(lr: number | ((group: Group<H>, index: number) => number)): void {
    this.paramGroups.forEach((g, i) => {
      const v = typeof lr === 'function' ? lr(g, i) : lr;
      if (typeof v !== 'number' || !(v >= 0)) throw new RangeError(`${this.type}.setLr: lr must be >= 0, got ${v}`);
      g.lr = v;
    });
  }

  /** The state of the parameter (undefined before its first step). */
  stateOf(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /** Hyper-parameters, step count and per-parameter state (tensors shared, not copied). */
  stateDict(): OptimizerStateDict {
    const state: Record<string, ParamState> = {};
    const groups = this.paramGroups.map((g, gi) => {
      const h: Record<string, HyperValue> = {};
      for (const [k, v] of Object.entries(g)) {
        if (k === 'params' || k === 'names') continue;
        h[k] = Array.isArray(v) ? [...(v as unknown as number[])] : (v as HyperValue);
      }
      g.params.forEach((p, i) => {
        const st = this.state.get(p);
        if (st) state[`${gi}.${i}`] = { ...st };
      });
      return { ...h, numParams: g.params.length };
    });
    return { type: this.type, step: this.stepCount, groups, state };
  }

  /**
   * Restores a state dict (hyper-parameters, step count, state copied into new tensors). Throws,
   * changing nothing, when the optimizer type, group count, parameter counts or shapes differ.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const where = `${this.type}.loadStateDict`;
    if (!sd || typeof sd !== 'object' || !Array.isArray(sd.groups) || typeof sd.state !== 'object') {
      throw new TypeError(`${where}: not an optimizer state dict`);
    }
    if (sd.type !== this.type) throw new Error(`${where}: the state dict is from ${sd.type}, not ${this.type}`);
    if (sd.groups.length !== this.paramGroups.length) {
      throw new Error(
        `${where}: the state dict has ${sd.groups.length} param groups, this optimizer ${this.paramGroups.length}`,
      );
    }
    sd.groups.forEach((g, gi) => {
      const n = (this.paramGroups[gi] as Group<H>).params.length;
      if (g.numParams !== n) {
        throw new Error(`${where}: group ${gi} has ${g.numParams} params in the state dict, ${n} here`);
      }
    });
    const incoming = new Map<Tensor, ParamState>();
    for (const [key, st] of Object.entries(sd.state)) {
      const m = /^(\d+)\.(\d+)$/.exec(key);
      const group = m ? this.paramGroups[Number(m[1])] : undefined;
      const p = m && group ? group.params[Number(m[2])] : undefined;
      if (!m || !group || !p) throw new Error(`${where}: state key '${key}' names no parameter`);
      for (const [name, v] of Object.entries(st)) {
        if (v instanceof Tensor) {
          v._h(where);
          if (v.ndim !== p.ndim || v.shape.some((s, d) => s !== p.shape[d])) {
            throw new Error(
              `${where}: state '${key}.${name}' has shape ${formatShape(v.shape)}, parameter ${this.nameOf(group, Number(m[2]), Number(m[1]))} has ${formatShape(p.shape)}`,
            );
          }
        } else if (typeof v !== 'number') {
          throw new TypeError(`${where}: state '${key}.${name}' must be a Tensor or a number`);
        }
      }
      incoming.set(p, st);
    }
    // Validated: now replace.
    for (const st of this.state.values()) for (const v of Object.values(st)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
    for (const [p, st] of incoming) {
      const copy: ParamState = {};
      for (const [name, v] of Object.entries(st)) {
        if (v instanceof Tensor) {
          const c = noGrad(() => {
            const sd = this.stateDtype(p);
            const d = v.dtype === sd ? clone(v) : v.to(sd);
            if (d.device === p.device) return d;
            const moved = d.to(p.device); // state lives beside its parameter
            d.dispose();
            return moved;
          });
          copy[name] = keep(c);
        } else copy[name] = v;
      }
      this.state.set(p, copy);
    }
    sd.groups.forEach((h, gi) => {
      const g = this.paramGroups[gi] as Record<string, unknown>;
      for (const [k, v] of Object.entries(h)) if (k !== 'numParams') g[k] = Array.isArray(v) ? [...v] : v;
    });
    this.stepCount = sd.step;
  }

  /** Frees the optimizer state (parameters and gradients are untouched). */
  dispose(): void {
    for (const st of this.state.values()) for (const v of Object.values(st)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
  }
}

/**
 * Flattens a state dict for saveSafetensors: tensors keyed `state.<group>.<index>.<name>`, the
 * rest (type, step, groups, numbers) as a JSON string to store in the metadata.
 */
export function optimizerStateToTensors(sd: OptimizerStateDict): { tensors: Record<string, Tensor>; meta: string } {
  const tensors: Record<string, Tensor> = {};
  const numbers: Record<string, Record<string, number>> = {};
  for (const [key, st] of Object.entries(sd.state)) {
    for (const [name, v] of Object.entries(st)) {
      if (v instanceof Tensor) tensors[`state.${key}.${name}`] = v;
      else {
        numbers[key] ??= {};
        (numbers[key] as Record<string, number>)[name] = v;
      }
    }
  }
  return { tensors, meta: JSON.stringify({ type: sd.type, step: sd.step, groups: sd.groups, numbers }) };
}

/** The inverse of optimizerStateToTensors (tensors are used as they are; loadStateDict copies them). */
export function optimizerStateFromTensors(tensors: Record<string, Tensor>, meta: string): OptimizerStateDict {
  let m: {
    type: string;
    step: number;
    groups: OptimizerStateDict['groups'];
    numbers: Record<string, Record<string, number>>;
  };
  try {
    m = JSON.parse(meta);
  } catch (e) {
    throw new Error(`optimizerStateFromTensors: bad metadata JSON (${(e as Error).message})`);
  }
  const state: Record<string, ParamState> = {};
  for (const [key, nums] of Object.entries(m.numbers ?? {})) state[key] = { ...nums };
  for (const [k, t] of Object.entries(tensors)) {
    const match = /^state\.(\d+\.\d+)\.(.+)$/.exec(k);
    if (!match) continue;
    const key = match[1] as string;
    state[key] ??= {};
    (state[key] as ParamState)[match[2] as string] = t;
  }
  return { type: m.type, step: m.step, groups: m.groups, state };
}
