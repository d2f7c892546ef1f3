// fuzz.test.ts: bounded API fuzzing (fixed seed, a few thousand calls): every public op is
// driven with random shapes (0- and 1-sized dims included), dtypes, axes (negative, out of range,
// non-integer), NaN/Inf values, huge sizes, disposed tensors and wrong JS types. Each call must
// return a tensor or throw an Error naming the op; the process must not crash and nothing leaks.
// The long form: CRATE_FUZZ_CALLS=200000 npx vitest run test/fuzz.test.ts
import { describe, expect, test } from 'vitest';
import type { Tensor } from '../ts/index.js';
import * as C from '../ts/index.js';
import { mulberry32 } from './helpers/harness.js';

const CALLS = Number(process.env.CRATE_FUZZ_CALLS ?? 3000);

type Arg = unknown;
interface Target {
  name: string;
  /** substrings one of which the error message must contain */
  names?: string[];
  arity: number;
  call: (a: Arg[]) => unknown;
}

const T = (x: Arg) => x as Tensor;
const targets: Target[] = [
  ...['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'lt', 'ge'].map((n) => ({
    name: n,
    arity: 2,
    call: (a: Arg[]) => (C as unknown as Record<string, (x: Arg, y: Arg) => unknown>)[n]?.(a[0], a[1]),
  })),
  ...['neg', 'exp', 'log', 'sqrt', 'abs', 'relu', 'tanh', 'sigmoid', 'square', 'gelu'].map((n) => ({
    name: n,
    arity: 1,
    call: (a: Arg[]) => (C as unknown as Record<string, (x: Arg) => unknown>)[n]?.(a[0]),
  })),
  { name: 'clamp', arity: 3, call: (a) => C.clamp(T(a[0]), a[1] as number, a[2] as number) },
  { name: 'where', arity: 3, call: (a) => C.where(T(a[0]), T(a[1]), T(a[2])) },
  { name: 'sum', arity: 2, call: (a) => C.sum(T(a[0]), a[1] as number) },
  { name: 'mean', arity: 2, call: (a) => C.mean(T(a[0]), a[1] as number) },
  { name: 'max', arity: 2, call: (a) => C.max(T(a[0]), a[1] as number) },
  { name: 'var', arity: 2, call: (a) => C.variance(T(a[0]), a[1] as number) },
  { name: 'softmax', arity: 2, call: (a) => C.softmax(T(a[0]), a[1] as number) },
  { name: 'logSoftmax', arity: 2, call: (a) => C.logSoftmax(T(a[0]), a[1] as number) },
  { name: 'layerNorm', arity: 3, call: (a) => C.layerNorm(T(a[0]), a[1] as Tensor | null, a[2] as Tensor | null) },
  { name: 'matmul', arity: 2, call: (a) => C.matmul(T(a[0]), T(a[1])) },
  { name: 'linear', arity: 3, call: (a) => C.linear(T(a[0]), T(a[1]), a[2] as Tensor | null) },
  { name: 'reshape', arity: 2, call: (a) => C.reshape(T(a[0]), a[1] as number[]) },
  { name: 'permute', arity: 2, call: (a) => C.permute(T(a[0]), a[1] as number[]) },
  { name: 'transpose', arity: 3, call: (a) => C.transpose(T(a[0]), a[1] as number, a[2] as number) },
  { name: 'slice', arity: 4, call: (a) => C.slice(T(a[0]), a[1] as number, a[2] as number, a[3] as number) },
  { name: 'concat', arity: 3, call: (a) => C.concat([T(a[0]), T(a[1])], a[2] as number) },
  { name: 'expand', arity: 2, call: (a) => C.expand(T(a[0]), a[1] as number[]) },
  { name: 'indexSelect', arity: 3, call: (a) => C.indexSelect(T(a[0]), a[1] as number, T(a[2])) },
  { name: 'embedding', arity: 2, call: (a) => C.embedding(T(a[0]), T(a[1])) },
  { name: 'crossEntropy', arity: 2, call: (a) => C.crossEntropy(T(a[0]), T(a[1])) },
  { name: 'dropout', arity: 2, call: (a) => C.dropout(T(a[0]), a[1] as number) },
  { name: 'cast', arity: 2, call: (a) => C.cast(T(a[0]), a[1] as C.DType) },
  { name: 'zeros', arity: 1, call: (a) => C.zeros(a[0] as number[]) },
  { name: 'randn', names: ['randn'], arity: 1, call: (a) => C.randn(a[0] as number[]) },
  { name: 'arange', arity: 3, call: (a) => C.arange(a[0] as number, a[1] as number, a[2] as number) },
  { name: 'tensor', arity: 1, call: (a) => C.tensor(a[0] as number[]) },
  { name: 'mssa', arity: 2, call: (a) => C.mssa(T(a[0]), { heads: a[1] as number }) },
  { name: 'ista', arity: 2, call: (a) => C.ista(T(a[0]), T(a[1])) },
  { name: 'istaTied', arity: 2, call: (a) => C.istaTied(T(a[0]), T(a[1])) },
  { name: 'codingRate', names: ['codingRate'], arity: 2, call: (a) => C.logdetGram(T(a[0]), a[1] as number) },
  { name: 'tssa', arity: 3, call: (a) => C.tssa(T(a[0]), T(a[1]), a[2] as number) },
];

describe('fuzz', () => {
  test(`${CALLS} random calls: results or clear errors, no crash, no leak`, () => {
    const rnd = mulberry32(20261123);
    const pick = <X>(xs: readonly X[]): X => xs[Math.floor(rnd() * xs.length)] as X;
    const disposed = C.ones([3]);
    disposed.dispose();
    const before = C.memory();
    let returned = 0;
    let threw = 0;
    const failures: string[] = [];
    for (let i = 0; i < CALLS; i++) {
      C.tidy(() => {
        const dim = () => pick([0, 1, 1, 2, 3, 4, 7, 8]);
        const shape = () => Array.from({ length: pick([0, 1, 2, 3, 4]) }, dim);
        const dtype = pick(['f32', 'f32', 'f64', 'i32'] as const);
        const special = () => pick([0, 1, -1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, -0, 1e30]);
        const tensorArg = (): Tensor => {
          const s = shape();
          const n = s.reduce((a, b) => a * b, 1);
          const vals = Array.from({ length: n }, () =>
            dtype === 'i32' ? Math.floor(rnd() * 5) - 1 : rnd() < 0.1 ? special() : rnd() * 4 - 2,
          );
          return C.tensor(vals.length ? vals : [], { shape: s, dtype });
        };
        const arg = (): Arg =>
          pick([
            tensorArg,
            tensorArg,
            tensorArg,
            tensorArg,
            () => pick([-3, -1, 0, 1, 2, 5, 0.5, Number.NaN, 2 ** 40]),
            () => shape(),
            () => pick([null, undefined, 'x', {}, [], [1.5, -2], [2 ** 31, 2 ** 20], true]),
            () => disposed,
          ])();
        const t = pick(targets);
        const args = Array.from({ length: t.arity }, arg);
        try {
          const r = t.call(args);
          if (r !== undefined && !(r instanceof C.Tensor)) failures.push(`${t.name} returned ${typeof r}`);
          returned++;
        } catch (e) {
          threw++;
          if (process.env.CRATE_FUZZ_VERBOSE && e instanceof Error)
            console.log(`${t.name}: ${e.message.split('\n')[0].slice(0, 140)}`);
          if (!(e instanceof Error)) failures.push(`${t.name} threw a non-Error: ${String(e)}`);
          else {
            const names = t.names ?? [t.name];
            const m = e.message;
            if (
              !names.some((n) => m.includes(n)) &&
              !/^(tensor|full|zeros|ones|reshape|permute|expand|concat|matmul|linear|slice|sum|var|mean|max|indexSelect|embedding|crossEntropy|softmax|logSoftmax|layerNorm|where|cast|clamp|mssa|ista|tssa|codingRate|random|add|sub|mul|div|pow|maximum|minimum|eq|lt|ge|unary|binary|reduce|dropout|bernoulli|affine|arange|randn|gather|istaTied|unsqueeze|squeeze|flatten|stack)\b/.test(
                m,
              )
            ) {
              failures.push(`${t.name}: error does not name the op: ${m.slice(0, 160)}`);
            }
          }
        }
      });
    }
    const after = C.memory();
    expect(failures.slice(0, 20)).toEqual([]);
    expect(returned + threw).toBe(CALLS);
    expect(returned).toBeGreaterThan(CALLS / 20);
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.cpu.bytes).toBe(before.cpu.bytes);
  });
});
