// text.ts: byte-level and char-level tokenizers and a seeded corpus sampler for causal language
// modelling: random windows of blockSize + 1 tokens split into x = w[0..T) and y = w[1..T].
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor.js';
import { Rng } from './rng.js';

export interface Tokenizer {
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

/** UTF-8 bytes as tokens (vocabulary 256). Decoding replaces invalid sequences with U+FFFD. */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;
  encode(text: string): Int32Array {
    return Int32Array.from(Buffer.from(text, 'utf8'));
  }
  decode(ids: ArrayLike<number>): string {
    const b = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i] as number;
      if (!Number.isInteger(v) || v < 0 || v > 255) {
        throw new RangeError(`ByteTokenizer.decode: id ${v} at ${i} is not a byte`);
      }
      b[i] = v;
    }
    return new TextDecoder('utf-8').decode(b);
  }
}

/** One token per Unicode code point of a fixed alphabet (sorted), like nanoGPT's char-level Shakespeare. */
export class CharTokenizer implements Tokenizer {
  readonly chars: readonly string[];
  private readonly index = new Map<string, number>();

  constructor(chars: readonly string[]) {
    const seen = new Set<string>();
    for (const c of chars) {
      if (typeof c !== 'string' || [...c].length !== 1) {
        throw new TypeError(`CharTokenizer: ${JSON.stringify(c)} is not one character`);
      }
      if (seen.has(c)) throw new Error(`CharTokenizer: duplicate character ${JSON.stringify(c)}`);
      seen.add(c);
    }
    this.chars = Object.freeze([...chars]);
    for (const [i, c] of this.chars.entries()) this.index.set(c, i);
  }

  /** The alphabet of `text`, sorted by code point. */
  static fromText(text: string): CharTokenizer {
    return new CharTokenizer(
      [...new Set(text)].sort((a, b) => (a.codePointAt(0) as number) - (b.codePointAt(0) as number)),
    );
  }

  get vocabSize(): number {
    return this.chars.length;
  }
  encode(text: string): Int32Array {
    const out: number[] = [];
    let pos = 0;
    for (const c of text) {
      const id = this.index.get(c);
      if (id === undefined) {
        throw new Error(
          `CharTokenizer.encode: character ${JSON.stringify(c)} at offset ${pos} is not in the vocabulary`,
        );
      }
      out.push(id);
      pos += c.length;
    }
    return Int32Array.from(out);
  }
  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const c = this.chars[ids[i] as number];
      if (c === undefined) throw new RangeError(`CharTokenizer.decode: id ${ids[i]} at ${i} is out of range`);
      s += c;
    }
    return s;
  }
  toJSON(): { type: 'char'; chars: string[] } {
    return { type: 'char', chars: [...this.chars] };
  }
  static fromJSON(j: { chars: string[] }): CharTokenizer {
    return new CharTokenizer(j.chars);
  }
}

export interface CorpusSamplerOptions {
  blockSize: number;
  batchSize: number;
  seed?: number;
}

/**
 * Random causal-LM batches from a token stream. Batch number `step` is a pure function of
 * (seed, step), so a resumed run continues with the same batches: set `step` and call next().
 */
export class CorpusSampler {
  readonly tokens: Int32Array;
  readonly blockSize: number;
  readonly batchSize: number;
  readonly seed: number;
  /** The step of the next batch next() returns. */
  step = 0;

  constructor(tokens: ArrayLike<number>, opts: CorpusSamplerOptions) {
    const { blockSize, batchSize } = opts;
    if (!Number.isInteger(blockSize) || blockSize <= 0) {
      throw new RangeError(`CorpusSampler: bad blockSize ${blockSize}`);
    }
    if (!Number.isInteger(batchSize) || batchSize <= 0) {
      throw new RangeError(`CorpusSampler: bad batchSize ${batchSize}`);
    }
    this.tokens = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    if (this.tokens.length < blockSize + 1) {
      throw new RangeError(
        `CorpusSampler: ${this.tokens.length} tokens, need at least blockSize + 1 = ${blockSize + 1}`,
      );
    }
    this.blockSize = blockSize;
    this.batchSize = batchSize;
    this.seed = opts.seed ?? 0;
  }

  /** Window start offsets of batch `step`. */
  starts(step: number): Int32Array {
    const rng = new Rng([this.seed, step, 0x7e47]);
    const span = this.tokens.length - this.blockSize;
    return Int32Array.from({ length: this.batchSize }, () => rng.int(span));
  }

  /** Batch `step` as arrays: x and y are (batchSize * blockSize) row-major, y = x shifted by one. */
  batchArrays(step: number): { x: Int32Array; y: Int32Array } {
    const T = this.blockSize;
    const x = new Int32Array(this.batchSize * T);
    const y = new Int32Array(this.batchSize * T);
    this.starts(step).forEach((s, b) => {
      x.set(this.tokens.subarray(s, s + T), b * T);
      y.set(this.tokens.subarray(s + 1, s + 1 + T), b * T);
    });
    return { x, y };
  }

  /** Batch `step` as i32 tensors of shape (batchSize, blockSize). */
  batch(step: number): { x: Tensor; y: Tensor } {
    const { x, y } = this.batchArrays(step);
    const shape = [this.batchSize, this.blockSize];
    const xt = tensor(x, { shape, dtype: 'i32' });
    return { x: xt, y: tensor(y, { shape, dtype: 'i32' }) };
  }

  /** The batch at `step`, then advances `step`. */
  next(): { x: Tensor; y: Tensor } {
    return this.batch(this.step++);
  }
}
