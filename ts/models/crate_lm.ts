// crate_lm.ts: causal CRATE for language ("CRATE-GPT") as coded in crate-lm/crate-lm
// crate_overcomplete.py, the file its train.py uses (spec 1.6): token embedding wte + learned
// positions wpe, L blocks of [x + c_proj(causal MSSA(prenorm_1 x)); tied overcomplete ISTA
// (prenorm_2 x), no residual], ln_f, and an lm_head tied to wte. The variant crate.py (complete
// D×D ISTA, no ln_f) is `ista: 'complete'`. Parameter names match the authors' state dict, e.g.
// `transformer.h.0.attn.c_attn.weight`, `transformer.h.0.ista.weight`, `lm_head.weight`.
//
// The nanoGPT scaffolding (GPTTransformer, the CausalLM base with forward/loss/generate, the
// tied head and its two state-dict names) is shared with the causal ToST in tost.ts.
import { noGrad } from '../autograd.js';
import { Rng } from '../data/rng.js';
import type { DType } from '../dtype.js';
import { tidy } from '../memory.js';
import { FeedForward, TiedISTA } from '../nn/crate_blocks.js';
import { Dropout, Embedding, type Layer, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { type LoadResult, Module } from '../nn/module.js';
import { mssa } from '../ops/crate.js';
import { randn, tensor } from '../ops/creation.js';
import { add } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { crossEntropy } from '../ops/nn.js';
import { reshape, slice } from '../ops/shape.js';
import { formatShape, Tensor } from '../tensor.js';

// ---------------------------------------------------------------------------------------------
// shared nanoGPT scaffolding

/** Overwrites `t` with N(0, std²) draws from the global generator (torch.nn.init.normal_). */
export function initNormal_(t: Tensor, std: number): void {
  const r = randn([...t.shape], { std, dtype: t.dtype });
  t.copy_(r);
  r.dispose();
}

/** nanoGPT's `_init_weights`: every Linear weight N(0, 0.02²) and bias 0; then c_proj weights N(0, (0.02/√(2L))²). */
export function gptInit(model: Module, depth: number): void {
  for (const [, m] of model.modules()) {
    if (m instanceof Linear) {
      initNormal_(m.weight, 0.02);
      m.bias?.fill_(0);
    }
  }
  for (const [name, p] of model.namedParameters()) {
    if (name.endsWith('c_proj.weight')) initNormal_(p, 0.02 / Math.sqrt(2 * depth));
  }
}

function checkPositiveInt(model: string, v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${model}: ${name} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

/** Validates the size fields every causal LM config has. */
export function checkLMConfig(
  model: string,
  c: { vocabSize: number; blockSize: number; dim: number; depth: number; heads: number; dropout: number },
): void {
  for (const k of ['vocabSize', 'blockSize', 'dim', 'depth', 'heads'] as const) checkPositiveInt(model, c[k], k);
  if (c.dim % c.heads !== 0) throw new Error(`${model}: dim ${c.dim} is not divisible by heads ${c.heads}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new RangeError(`${model}: dropout must be in [0, 1), got ${c.dropout}`);
}

/**
 * nanoGPT's `transformer` ModuleDict: wte (V, D), wpe (blockSize, D), drop, h (the blocks),
 * ln_f (or none). forward(idx) → the final hidden states (B, T, D).
 */
export class GPTTransformer<B extends Layer = Layer> extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<B>;
  readonly ln_f: LayerNorm | null;
  constructor(o: {
    vocabSize: number;
    blockSize: number;
    dim: number;
    blocks: B[];
    lnF: LayerNorm | null;
    dropout: number;
    dtype: DType;
  }) {
    super();
    this.wte = this.child('wte', new Embedding(o.vocabSize, o.dim, { std: 0.02, dtype: o.dtype }));
    this.wpe = this.child('wpe', new Embedding(o.blockSize, o.dim, { std: 0.02, dtype: o.dtype }));
    this.drop = this.child('drop', new Dropout(o.dropout));
    this.h = this.child('h', new ModuleList(o.blocks));
    this.ln_f = o.lnF ? this.child('ln_f', o.lnF) : null;
  }
  /**
   * idx (B, T) i32, already validated against the vocabulary (CausalLM.checkIdx) → (B, T, D). The
   * token embedding trusts it: on CUDA no index check, no host wait (an id out of range would give
   * a zero row, not an error).
   */
  forward(idx: Tensor): Tensor {
    return this.hooked(
      [idx],
      tidy(() => {
        const T = idx.shape[1] as number;
        const pos = slice(this.wpe.weight, 0, 0, T); // wpe(arange(T)): (T, D)
        let x = this.drop.forward(add(this.wte.forwardValidated(idx), pos));
        for (const b of this.h.items) x = b.forward(x);
        return this.ln_f ? this.ln_f.forward(x) : x;
      }),
    );
  }
}

export interface GenerateOptions {
  /** Softmax temperature; 0 picks the most likely token (greedy). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens before sampling (ties at the k-th value are kept). */
  topK?: number | null;
  /** Seed of the sampler (default 0): the same seed, model and prompt give the same tokens. */
  seed?: number;
}

export interface LMOutput {
  /** (B, T, V) next-token logits. */
  logits: Tensor;
  /** Mean cross-entropy over the targets ≠ -1 (present when targets were given). */
  loss?: Tensor;
}

/**
 * A nanoGPT-style causal language model: `transformer` (GPTTransformer) and an lm_head tied to
 * `transformer.wte.weight`. The tied weight is one parameter (listed once by parameters()); the
 * state dict names it twice, `transformer.wte.weight` and `lm_head.weight`, as PyTorch does.
 */
export abstract class CausalLM<B extends Layer = Layer> extends Module {
  readonly transformer: GPTTransformer<B>;
  constructor(
    /** The class name used in error messages. */
    readonly modelName: string,
    transformer: GPTTransformer<B>,
  ) {
    super();
    this.transformer = this.child('transformer', transformer);
  }
  get vocabSize(): number {
    return this.transformer.wte.weight.shape[0] as number;
  }
  get blockSize(): number {
    return this.transformer.wpe.weight.shape[0] as number;
  }
  /** The lm_head weight (V, D): the same tensor as transformer.wte.weight. */
  get lmHeadWeight(): Tensor {
    return this.transformer.wte.weight;
  }

  /** Checks token ids (B, T): a Tensor, i32, 2-D, 1 ≤ T (≤ blockSize unless `anyLength`), ids in [0, V). */
  checkIdx(idx: unknown, anyLength = false): asserts idx is Tensor {
    const m = this.modelName;
    if (!(idx instanceof Tensor)) throw new TypeError(`${m}: idx must be a Tensor of i32 token ids (B, T)`);
    if (idx.dtype !== 'i32') {
      throw new TypeError(`${m}: idx must be i32 token ids (B, T), got dtype ${idx.dtype} ${formatShape(idx.shape)}`);
    }
    if (idx.ndim !== 2 || (idx.shape[1] as number) < 1) {
      throw new Error(`${m}: idx must be (B, T) with T >= 1, got ${formatShape(idx.shape)}`);
    }
    const T = idx.shape[1] as number;
    if (!anyLength && T > this.blockSize) {
      throw new Error(
        `${m}: sequence length T=${T} exceeds blockSize ${this.blockSize} (idx ${formatShape(idx.shape)})`,
      );
    }
    this.checkRange(idx, 'idx', false);
  }

  private checkRange(t: Tensor, name: string, allowIgnore: boolean): void {
    const d = t.dataSync();
    const V = this.vocabSize;
    const T = t.shape[1] as number;
    for (let i = 0; i < d.length; i++) {
      const v = d[i] as number;
      if (v >= 0 && v < V) continue;
      if (allowIgnore && v === -1) continue;
      throw new RangeError(
        `${this.modelName}: token id ${v} at ${name}[${Math.floor(i / T)}, ${i % T}] is out of range: expected 0 <= id < vocabSize ${V}${allowIgnore ? ' (or -1 to ignore)' : ''}`,
      );
    }
  }

  /** Final hidden states (B, T, D) after ln_f. */
  features(idx: Tensor): Tensor {
    this.checkIdx(idx);
    return this.transformer.forward(idx);
  }

  /**
   * idx (B, T) i32 token ids, T ≤ blockSize → { logits (B, T, V) }; with targets (B, T) i32 (ids,
   * or -1 to ignore a position) also { loss }: the mean cross-entropy as F.cross_entropy(...,
   * ignore_index=-1). Unlike the authors' code the logits of every position are returned.
   * Ids on the CPU are accepted by a model on CUDA: they are checked on the host (free) and copied
   * up here, so a training step waits on the device for none of its id checks; ids already on the
   * device are read back once each to be checked.
   */
  forward(idx: Tensor, targets?: Tensor | null): LMOutput {
    this.checkIdx(idx);
    const m = this.modelName;
    if (targets !== undefined && targets !== null) {
      if (!(targets instanceof Tensor) || targets.dtype !== 'i32') {
        throw new TypeError(
          `${m}: targets must be i32 token ids (B, T), got ${targets instanceof Tensor ? `dtype ${targets.dtype}` : typeof targets}`,
        );
      }
      if (targets.ndim !== 2 || targets.shape[0] !== idx.shape[0] || targets.shape[1] !== idx.shape[1]) {
        throw new Error(
          `${m}: targets must have the shape of idx ${formatShape(idx.shape)}, got ${formatShape(targets.shape)}`,
        );
      }
      this.checkRange(targets, 'targets', true);
    }
    const dev = this.lmHeadWeight.device;
    const out = tidy((): LMOutput => {
      // host ids for a device model: copied up inside the scope (the loss keeps the targets for its backward)
      const x = idx.device === dev ? idx : idx.to(dev);
      const y = !targets || targets.device === dev ? targets : targets.to(dev);
      const h = this.transformer.forward(x);
      const logits = linear(h, this.lmHeadWeight, null); // lm_head, tied to wte
      if (!y) return { logits };
      return { logits, loss: crossEntropy(logits, y, { ignoreIndex: -1 }) };
    });
    return this.hooked([idx, targets], out);
  }

  /**
   * Samples `maxNewTokens` tokens after the prompt `idx` (B, T) i32 (or one sequence of ids), as
   * the authors' generate: the context is cropped to the last blockSize tokens, logits of the
   * last position / temperature, optional top-k, softmax, one draw per row from a seeded
   * generator. Runs in eval mode without gradients. Returns a new i32 tensor (B, T + maxNewTokens).
   */
  generate(idx: Tensor | ArrayLike<number>, maxNewTokens: number, opts: GenerateOptions = {}): Tensor {
    const m = this.modelName;
    if (!(idx instanceof Tensor)) {
      const bad = Array.from(idx as ArrayLike<number>).findIndex((v) => !Number.isInteger(v));
      if (bad >= 0)
        throw new TypeError(`${m}.generate: prompt id ${(idx as ArrayLike<number>)[bad]} at ${bad} is not an integer`);
    }
    const prompt =
      idx instanceof Tensor
        ? idx
        : tensor(Int32Array.from(idx as ArrayLike<number>), {
            shape: [1, (idx as ArrayLike<number>).length],
            dtype: 'i32',
          });
    try {
      this.checkIdx(prompt, true);
    } finally {
      if (prompt !== idx) prompt.dispose();
    }
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new RangeError(`${m}.generate: maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
    }
    const temperature = opts.temperature ?? 1;
    if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) {
      throw new RangeError(`${m}.generate: temperature must be a finite number >= 0, got ${temperature}`);
    }
    const topK = opts.topK ?? null;
    if (topK !== null && (!Number.isInteger(topK) || topK < 1)) {
      throw new RangeError(`${m}.generate: topK must be a positive integer, got ${topK}`);
    }
    const rng = new Rng([opts.seed ?? 0, 0x6e4]);
    const B = idx instanceof Tensor ? (idx.shape[0] as number) : 1;
    const T0 = idx instanceof Tensor ? (idx.shape[1] as number) : (idx as ArrayLike<number>).length;
    const flat = idx instanceof Tensor ? idx.dataSync() : Int32Array.from(idx as ArrayLike<number>);
    const rows: number[][] = Array.from({ length: B }, (_, b) => Array.from(flat.subarray(b * T0, (b + 1) * T0)));
    const V = this.vocabSize;
    const wasTraining = this.training;
    this.eval();
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const len = (rows[0] as number[]).length;
        const Tc = Math.min(len, this.blockSize);
        const ctx = new Int32Array(B * Tc);
        rows.forEach((r, b) => {
          ctx.set(r.slice(len - Tc), b * Tc);
        });
        const last = noGradTidy(() => {
          const x = tensor(ctx, { shape: [B, Tc], dtype: 'i32', device: this.device });
          const h = this.transformer.forward(x);
          const hl = reshape(slice(h, 1, Tc - 1, Tc), [B, h.shape[2] as number]);
          return Float64Array.from(linear(hl, this.lmHeadWeight, null).dataSync());
        });
        rows.forEach((r, b) => {
          r.push(sampleRow(last.subarray(b * V, (b + 1) * V), temperature, topK, rng));
        });
      }
    } finally {
      this.train(wasTraining);
    }
    const out = new Int32Array(B * (T0 + maxNewTokens));
    rows.forEach((r, b) => {
      out.set(r, b * (T0 + maxNewTokens));
    });
    return tensor(out, { shape: [B, T0 + maxNewTokens], dtype: 'i32' });
  }

  /** Parameters without the position embedding (the authors' get_num_params(non_embedding=True)). */
  numParametersNonEmbedding(): number {
    return this.numParameters() - this.transformer.wpe.weight.numel;
  }

  /** The parameters and buffers by the authors' names, with the tied head under both of its names. */
  override stateDict(): Record<string, Tensor> {
    return { ...super.stateDict(), 'lm_head.weight': this.lmHeadWeight };
  }

  /**
   * Loads a state dict; the tied weight may come under either name or both (then
   * `transformer.wte.weight` is used), so checkpoints written with or without the alias load.
   */
  override loadStateDict(sd: Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const inc: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(sd)) inc[k.startsWith('module.') ? k.slice(7) : k] = v;
    const wte = inc['transformer.wte.weight'] ?? inc['lm_head.weight'];
    if (wte) {
      inc['transformer.wte.weight'] = wte;
      inc['lm_head.weight'] = wte;
    }
    return super.loadStateDict(inc, opts);
  }
}

function noGradTidy<T>(fn: () => T): T {
  return noGrad(() => tidy(fn));
}

/** One draw from softmax(logits / temperature) restricted to the top k (argmax when temperature is 0). */
export function sampleRow(logits: Float64Array, temperature: number, topK: number | null, rng: Rng): number {
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
    return best;
  }
  const z = Float64Array.from(logits, (v) => v / temperature);
  if (topK !== null && topK < V) {
    const kth = Float64Array.from(z).sort()[V - topK] as number;
    for (let i = 0; i < V; i++) if ((z[i] as number) < kth) z[i] = Number.NEGATIVE_INFINITY;
  }
  let mx = Number.NEGATIVE_INFINITY;
  for (const v of z) if (v > mx) mx = v;
  let s = 0;
  for (let i = 0; i < V; i++) {
    z[i] = Math.exp((z[i] as number) - mx);
    s += z[i] as number;
  }
  let u = rng.next() * s;
  for (let i = 0; i < V; i++) {
    u -= z[i] as number;
    if (u < 0) return i;
  }
  for (let i = V - 1; i >= 0; i--) if ((z[i] as number) > 0) return i; // rounding at the top end
  return V - 1;
}

// ---------------------------------------------------------------------------------------------
// CRATE-GPT

/** crate-lm `CausalSelfAttention`: c_attn (D→D, no bias) is Q = K = V; causal MSSA, scale 1/√p; c_proj (bias). */
export class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  constructor(
    readonly dim: number,
    readonly heads: number,
    opts: { dropout?: number; dtype?: DType } = {},
  ) {
    super();
    const dt = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    this.c_attn = this.child('c_attn', new Linear(dim, dim, { bias: false, ...dt }));
    this.c_proj = this.child('c_proj', new Linear(dim, dim, { bias: true, ...dt }));
    this.resid_dropout = this.child('resid_dropout', new Dropout(opts.dropout ?? 0));
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const P = this.c_attn.forward(x);
        return this.resid_dropout.forward(this.c_proj.forward(mssa(P, { heads: this.heads, causal: true })));
      }),
    );
  }
}

/** crate-lm `Block`: x + attn(prenorm_1 x), then ista(prenorm_2 x) with no residual around ISTA. */
export class CrateLMBlock extends Module {
  readonly prenorm_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly prenorm_2: LayerNorm;
  readonly ista: TiedISTA | FeedForward;
  constructor(c: Required<Omit<CrateLMConfig, 'dtype'>> & { dtype: DType }) {
    super();
    const dt = { dtype: c.dtype };
    this.prenorm_1 = this.child('prenorm_1', new LayerNorm(c.dim, 1e-5, dt));
    this.attn = this.child('attn', new CausalSelfAttention(c.dim, c.heads, { dropout: c.dropout, ...dt }));
    this.prenorm_2 = this.child('prenorm_2', new LayerNorm(c.dim, 1e-5, dt));
    this.ista = this.child(
      'ista',
      c.ista === 'complete'
        ? new FeedForward(c.dim, c.eta, c.lambda, dt)
        : new TiedISTA(c.dim, c.overcomplete, c.eta, c.lambda, dt),
    );
  }
  forward(x: Tensor): Tensor {
    return this.hooked(
      [x],
      tidy(() => {
        const h = add(x, this.attn.forward(this.prenorm_1.forward(x))); // x + MSSA(LN x)
        return this.ista.forward(this.prenorm_2.forward(h)); // ISTA(LN x), no residual
      }),
    );
  }
}

export interface CrateLMConfig {
  vocabSize: number;
  blockSize: number;
  /** n_embd */
  dim: number;
  /** n_layer */
  depth: number;
  /** n_head */
  heads: number;
  /**
   * 'overcomplete' (default; crate_overcomplete.py): tied two-step ISTA with W (m·d, d) and ln_f.
   * 'complete' (crate.py): one ISTA step with W (d, d) as in the image CRATE, and no ln_f.
   */
  ista?: 'overcomplete' | 'complete';
  /** dictionary size factor m of the overcomplete ISTA (4) */
  overcomplete?: number;
  /** ISTA step size η and threshold λ (0.1 / 0.1) */
  eta?: number;
  lambda?: number;
  /** dropout after the embedding and after c_proj (0) */
  dropout?: number;
  dtype?: DType;
}

/**
 * The crate-lm model table (spec section 2) at block 1024 and the padded GPT-2 vocabulary 50304
 * (CRATEConfig's default), plus 'crate-lm-1l' (config/train_gpt2.py's CRATE-1L) and a demo
 * size that trains on two CPU cores. Parameter counts (numParameters(), wpe included):
 * demo 70,400; 1l 27,856,384; base 81,934,848 (81,112,320 at vocab 50257 without wpe: the
 * spec's "about 81M"; with ista 'complete' 59,877,120, the book's Causal-CRATE-Base 60M);
 * medium 203,679,744; large 419,827,200; xl 819,792,000.
 */
export const CRATE_LM_PRESETS: Record<string, CrateLMConfig> = {
  'crate-lm-demo': { vocabSize: 256, blockSize: 64, dim: 64, depth: 2, heads: 2 },
  'crate-lm-1l': { vocabSize: 50304, blockSize: 1024, dim: 512, depth: 1, heads: 4 },
  'crate-lm-base': { vocabSize: 50304, blockSize: 1024, dim: 768, depth: 12, heads: 12 },
  'crate-lm-medium': { vocabSize: 50304, blockSize: 1024, dim: 1024, depth: 24, heads: 16 },
  'crate-lm-large': { vocabSize: 50304, blockSize: 1024, dim: 1280, depth: 36, heads: 20 },
  'crate-lm-xl': { vocabSize: 50304, blockSize: 1024, dim: 1600, depth: 48, heads: 25 },
};

/** Causal CRATE language model (CRATE-GPT). forward(idx, targets?) → { logits (B, T, V), loss? }. */
export class CrateLM extends CausalLM<CrateLMBlock> {
  readonly config: Required<Omit<CrateLMConfig, 'dtype'>> & { dtype: DType };
  constructor(cfg: CrateLMConfig) {
    const c = {
      ista: 'overcomplete' as const,
      overcomplete: 4,
      eta: 0.1,
      lambda: 0.1,
      dropout: 0,
      dtype: 'f32' as DType,
      ...cfg,
    };
    checkLMConfig('CrateLM', c);
    if (c.ista !== 'overcomplete' && c.ista !== 'complete') {
      throw new Error(`CrateLM: ista must be 'overcomplete' or 'complete', got '${String(c.ista)}'`);
    }
    checkPositiveInt('CrateLM', c.overcomplete, 'overcomplete');
    const blocks = Array.from({ length: c.depth }, () => new CrateLMBlock(c));
    const lnF = c.ista === 'complete' ? null : new LayerNorm(c.dim, 1e-5, { dtype: c.dtype });
    super('CrateLM', new GPTTransformer({ ...c, blocks, lnF }));
    this.config = c;
    gptInit(this, c.depth);
  }
}

/**
 * The parameter count of a CrateLM config without building it (wpe included, as numParameters();
 * nonEmbedding subtracts wpe as the authors' get_num_params does).
 */
export function crateLMParamCount(cfg: CrateLMConfig, opts: { nonEmbedding?: boolean } = {}): number {
  const { vocabSize: V, blockSize: T, dim: d, depth: L } = cfg;
  const complete = cfg.ista === 'complete';
  const ista = complete ? d * d : (cfg.overcomplete ?? 4) * d * d;
  const layer = 2 * d * d + d + ista + 4 * d; // c_attn, c_proj (+bias), ista, two LayerNorms
  const total = L * layer + V * d + T * d + (complete ? 0 : 2 * d);
  return opts.nonEmbedding ? total - T * d : total;
}

/** A CRATE-LM preset by name with overrides (e.g. { vocabSize } of a tokenizer, { dtype }). */
export function crateLMFromPreset(name: string, overrides: Partial<CrateLMConfig> = {}): CrateLM {
  const p = CRATE_LM_PRESETS[name];
  if (!p) {
    throw new Error(`unknown CrateLM preset '${name}'; choose one of ${Object.keys(CRATE_LM_PRESETS).join(', ')}`);
  }
  return new CrateLM({ ...p, ...overrides });
}
