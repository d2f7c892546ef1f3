// module.ts: the Module base (PyTorch-style): named parameters and buffers with dotted names
// that match the authors' PyTorch state-dict keys, train()/eval(), stateDict()/loadStateDict()
// (strict or not, with clear messages), forward hooks and dispose().
import { noGrad } from '../autograd.js';
import type { Device } from '../dtype.js';
import { keep } from '../memory.js';
import { formatShape, Tensor } from '../tensor.js';

export type ForwardHook = (module: Module, input: unknown[], output: unknown) => void;

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export abstract class Module {
  training = true;
  private readonly _params = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();
  private readonly _hooks: ForwardHook[] = [];

  /** Registers (and keeps, outside any tidy scope) a trainable parameter. */
  protected param(name: string, t: Tensor): Tensor {
    if (!t.requiresGrad) t.requiresGrad_(true);
    keep(t);
    this._params.set(name, t);
    return t;
  }
  /** Registers a non-trainable tensor that is saved in the state dict. */
  protected buffer(name: string, t: Tensor): Tensor {
    keep(t);
    this._buffers.set(name, t);
    return t;
  }
  /** Registers a child module under `name` (numeric names give PyTorch's Sequential keys). */
  protected child<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  children(): [string, Module][] {
    return [...this._children.entries()];
  }
  *modules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this._children) yield* c.modules(prefix ? `${prefix}.${n}` : n);
  }
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, m] of this.modules(prefix)) {
      for (const [pn, p] of m._params) if (p) out.push([name ? `${name}.${pn}` : pn, p]);
    }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, m] of this.modules(prefix)) {
      for (const [bn, b] of m._buffers) out.push([name ? `${name}.${bn}` : bn, b]);
    }
    return out;
  }
  /** Total number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  /**
   * Moves every parameter and buffer to `device` in place (the same tensor objects, now on the
   * device), so references held elsewhere stay valid. Create optimizers after moving: their
   * state is allocated beside the parameters. Returns this.
   */
  to(device: Device): this {
    for (const [, p] of this.namedParameters()) p._moveTo(device);
    for (const [, b] of this.namedBuffers()) b._moveTo(device);
    return this;
  }
  /** The device of the first parameter ('cpu' for a module without parameters). */
  get device(): Device {
    return this.parameters()[0]?.device ?? 'cpu';
  }

  train(on = true): this {
    for (const [, m] of this.modules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Parameters and buffers by dotted name (shares the tensors; do not dispose them). */
  stateDict(): Record<string, Tensor> {
    const sd: Record<string, Tensor> = {};
    for (const [n, p] of this.namedParameters()) sd[n] = p;
    for (const [n, b] of this.namedBuffers()) sd[n] = b;
    return sd;
  }

  /**
   * Copies values from `sd` into the parameters and buffers (in place). A `module.` prefix (DDP)
   * is stripped. strict (default) throws on missing or unexpected keys; a shape mismatch always
   * throws. Tensors are converted to the parameter dtype.
   */
  loadStateDict(sd: Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const incoming = new Map<string, Tensor>();
    for (const [k, v] of Object.entries(sd)) incoming.set(k.startsWith('module.') ? k.slice(7) : k, v);
    const missingKeys = Object.keys(own).filter((k) => !incoming.has(k));
    const unexpectedKeys = [...incoming.keys()].filter((k) => !(k in own));
    const mismatched: string[] = [];
    for (const [k, t] of Object.entries(own)) {
      const v = incoming.get(k);
      if (v && (v.ndim !== t.ndim || v.shape.some((s, i) => s !== t.shape[i]))) {
        mismatched.push(`${k}: checkpoint ${formatShape(v.shape)} vs model ${formatShape(t.shape)}`);
      }
    }
    if (mismatched.length) throw new Error(`loadStateDict: shape mismatch for ${mismatched.join('; ')}`);
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new Error(
        `loadStateDict (strict): missing keys [${missingKeys.join(', ')}], unexpected keys [${unexpectedKeys.join(', ')}]`,
      );
    }
    noGrad(() => {
      for (const [k, t] of Object.entries(own)) {
        const v = incoming.get(k);
        if (!v) continue;
        if (v.dtype === t.dtype && v.device === t.device) t.copy_(v);
        else {
          // convert on the source device (f64 exists on the CPU only), then move beside t
          const c = v.dtype === t.dtype ? v : v.to(t.dtype);
          const d = c.device === t.device ? c : c.to(t.device);
          t.copy_(d);
          if (d !== v) d.dispose();
          if (c !== v && c !== d) c.dispose();
        }
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Calls fn(module, inputs, output) after every forward of this module. Returns a remover. */
  registerForwardHook(fn: ForwardHook): () => void {
    this._hooks.push(fn);
    return () => {
      const i = this._hooks.indexOf(fn);
      if (i >= 0) this._hooks.splice(i, 1);
    };
  }
  /** @internal Runs the hooks (call at the end of forward). */
  protected hooked<T>(input: unknown[], output: T): T {
    for (const h of this._hooks) h(this, input, output);
    return output;
  }

  /** Frees every parameter, buffer and gradient. */
  dispose(): void {
    for (const [, m] of this.modules()) {
      for (const p of m._params.values()) p?.dispose();
      for (const b of m._buffers.values()) b.dispose();
    }
  }

  /** Disposes every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}
