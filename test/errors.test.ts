// errors.test.ts: every bad-input path gives a JS Error naming the op, the argument and shapes.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';

describe('bad input', () => {
  const a = C.ones([2, 3]);
  const b = C.ones([4, 5]);
  test('shapes', () => {
    expect(() => C.add(a, b)).toThrow(/add: shapes \[2, 3\] \(a\) and \[4, 5\] \(b\) cannot be broadcast/);
    expect(() => C.matmul(a, b)).toThrow(/matmul: inner dimensions differ.*K=3.*K=4/);
    expect(() => C.linear(a, C.ones([7, 4]))).toThrow(/linear: x \[2, 3\] has 3 features, weight \[7, 4\]/);
    expect(() => C.reshape(a, [4, 2])).toThrow(/cannot reshape \[2, 3\].*into \[4, 2\]/);
    expect(() => C.concat([a, b], 0)).toThrow(/concat: tensors\[1\] has shape \[4, 5\]/);
    expect(() => C.layerNorm(a, C.ones([4]))).toThrow(/layerNorm: weight must have shape \[3\]/);
    expect(() => C.crossEntropy(a, C.tensor([0], { dtype: 'i32' }))).toThrow(/target shape \[1\] must equal.*\[2\]/);
    expect(() => C.zeros([-1])).toThrow(/non-negative integers/);
    expect(() => C.zeros([1.5])).toThrow(/non-negative integers/);
    expect(() => C.permute(a, [0, 0])).toThrow(/repeat an axis/);
  });
  test('axes', () => {
    expect(() => C.sum(a, 2)).toThrow(/sum: axis 2 is out of range for a tensor with 2 dims/);
    expect(() => C.softmax(a, -3)).toThrow(/softmax: axis -3 is out of range/);
    expect(() => C.sum(a, [0, 0])).toThrow(/repeated axis/);
    expect(() => C.sum(a, 0.5)).toThrow(/axis must be an integer/);
  });
  test('dtypes', () => {
    const i = C.tensor([1, 2], { dtype: 'i32' });
    const d = C.ones([2, 3], { dtype: 'f64' });
    expect(() => C.add(a, d)).toThrow(/add: 'a' is f32 but 'b' is f64/);
    expect(() => C.exp(i)).toThrow(/exp: argument 'x' must be a float tensor/);
    expect(() => C.crossEntropy(a, C.tensor([0, 1]))).toThrow(/target must be i32/);
    expect(() => C.tensor([1.5], { dtype: 'i32' })).toThrow(/not a 32-bit integer/);
    expect(() => C.zeros([2], { dtype: 'f16' as never })).toThrow(/dtype must be one of/);
    expect(() => C.zeros([2], { dtype: 'bf16' })).toThrow(/bf16.*cuda/);
  });
  test('devices', () => {
    expect(() => C.zeros([2], { device: 'tpu' as never })).toThrow(/device must be 'cpu' or 'cuda'/);
    if (!C.cudaAvailable()) {
      expect(() => C.zeros([2], { device: 'cuda' })).toThrow(/zeros: device 'cuda' is not available: /);
    }
  });
  test('wrong argument types from plain JS', () => {
    expect(() => C.add(null as never, a)).toThrow(/add: argument 'a' must be a Tensor, got null/);
    expect(() => C.add(a, 'x' as never)).toThrow(/add: 'b' must be a Tensor or a number/);
    expect(() => C.tensor({} as never)).toThrow(/data must be/);
    expect(() => C.tensor([[1, 2], [3]])).toThrow(/ragged/);
    expect(() => C.clamp(a, 2, 1)).toThrow(/min <= max/);
  });
  test('out-of-range indices are errors, not memory corruption', () => {
    const w = C.ones([5, 2]);
    expect(() => C.embedding(w, C.tensor([0, 5], { dtype: 'i32' }))).toThrow(
      /index 5 at position 1 is out of range \[0, 5\)/,
    );
    expect(() => C.embedding(w, C.tensor([-1], { dtype: 'i32' }))).toThrow(/out of range/);
    expect(() => C.crossEntropy(C.ones([2, 3]), C.tensor([0, 3], { dtype: 'i32' }))).toThrow(
      /target 3 at row 1 is out of range \[0, 3\)/,
    );
  });
  test('NaN propagates through math and is detectable', () => {
    const n = C.tensor([1, Number.NaN, 3]);
    expect(Number.isNaN(n.exp().dataSync()[1] as number)).toBe(true);
    expect(Number.isNaN(n.max().item())).toBe(true);
    expect(Number.isNaN(C.maximum(n, 0).dataSync()[1] as number)).toBe(true);
    expect(() => C.assertFinite(n, 'check')).toThrow(/check: non-finite value NaN at flat index 1/);
  });
  test('the raw native layer validates too (no trust in JS)', async () => {
    const { native } = await import('../ts/native.js');
    const s = native.empty(0, 4, true);
    expect(() => native.unary(1, s, native.empty(0, 2, false), 0, 0)).toThrow(
      /unary: argument 'out' holds 2 elements, the op needs 4/,
    );
    expect(() => native.binary(0, s, [1], s, [1], s, [5])).toThrow(/argument 'a' holds 4 elements, the op needs 5/);
    expect(() => native.fill({} as never, 1)).toThrow(/not a crate tensor storage/);
    expect(() => native.stridedCopy(s, 0, [-1], s, 0, [1], [2], false)).toThrow(/negative stride/);
    expect(() => native.empty(0, 1.5, false)).toThrow(/safe integer/);
  });
  test('raw matmul with every batch stride 0 reads only the one A and B it was given', async () => {
    // (3 batches, both operands broadcast): A holds one 2x2 matrix; the result is A·B three times
    const { native } = await import('../ts/native.js');
    const a = C.tensor([1, 2, 3, 4], { shape: [2, 2] });
    const b = C.tensor([5, 6, 7, 8], { shape: [2, 2] });
    const out = C.zeros([3, 2, 2]);
    native.matmul(a._h('t'), b._h('t'), out._h('t'), [3], [0], [0], 2, 2, 2, false, false);
    expect(Array.from(out.dataSync())).toEqual([19, 22, 43, 50, 19, 22, 43, 50, 19, 22, 43, 50]);
    for (const t of [a, b, out]) t.dispose();
  });
  test('matmul over an empty inner dimension (K = 0) is a matrix of zeros, batched or not (found by the fuzzer)', () => {
    C.tidy(() => {
      expect(Array.from(C.matmul(C.ones([2, 0]), C.ones([0, 3])).dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
      const a = C.ones([2, 3, 0], { requiresGrad: true });
      const y = C.matmul(a, C.ones([0, 4]));
      expect(y.shape).toEqual([2, 3, 4]);
      expect(Array.from(y.dataSync()).every((v) => v === 0)).toBe(true);
      y.backward(C.onesLike(y));
      expect(a.grad?.shape).toEqual([2, 3, 0]);
    });
  });
});
