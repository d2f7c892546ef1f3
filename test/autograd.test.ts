// autograd.test.ts: the tape: accumulation, seeds, noGrad, detach, freed graphs, tidy interplay.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';

describe('autograd', () => {
  test('gradients accumulate across uses and across backward calls', () => {
    const x = C.tensor([1, 2, 3], { dtype: 'f64', requiresGrad: true });
    // y = sum(x*x + 3x) -> dy/dx = 2x + 3
    const y = x.mul(x).add(x.mul(3)).sum();
    y.backward();
    expect(Array.from(x.grad?.dataSync() ?? [])).toEqual([5, 7, 9]);
    const z = x.sum();
    z.backward();
    expect(Array.from(x.grad?.dataSync() ?? [])).toEqual([6, 8, 10]);
    x.zeroGrad();
    expect(x.grad).toBeNull();
  });
  test('non-scalar backward needs a seed; the seed is used', () => {
    const x = C.tensor([1, 2], { dtype: 'f64', requiresGrad: true });
    const y = x.mul(x);
    expect(() => y.backward()).toThrow(/seed gradient is required/);
    y.backward(C.tensor([10, 100], { dtype: 'f64' }));
    expect(Array.from(x.grad?.dataSync() ?? [])).toEqual([20, 400]);
  });
  test('a second backward through a freed graph is a clear error; retainGraph allows it', () => {
    const x = C.tensor([2], { dtype: 'f64', requiresGrad: true });
    const y = x.exp().sum();
    y.backward();
    expect(() => y.backward()).toThrow(/already freed.*retainGraph/);
    const w = C.tensor([2], { dtype: 'f64', requiresGrad: true });
    const v = w.exp().sum();
    v.backward(undefined, { retainGraph: true });
    v.backward();
    expect(w.grad?.item()).toBeCloseTo(2 * Math.exp(2), 10);
  });
  test('noGrad and detach cut the graph', () => {
    const x = C.tensor([1, 2], { requiresGrad: true });
    const y = C.noGrad(() => x.mul(2));
    expect(y.requiresGrad).toBe(false);
    const d = x.detach();
    expect(d.requiresGrad).toBe(false);
    expect(() => d.sum().backward()).toThrow(/does not require grad/);
    expect(C.isGradEnabled()).toBe(true);
  });
  test('saved tensors are freed after backward; forward in tidy, backward outside works', () => {
    const w = C.randn([8, 4], { dtype: 'f64', requiresGrad: true, seed: 1 });
    const base = C.memory().numTensors;
    const loss = C.tidy(() => C.randn([3, 8], { dtype: 'f64', seed: 2 }).matmul(w).tanh().sum());
    expect(C.memory().numTensors).toBeGreaterThan(base + 1); // the graph holds its saved tensors
    loss.backward();
    loss.dispose();
    expect(C.memory().numTensors).toBe(base + 1); // only w.grad is new
    w.zeroGrad();
    expect(C.memory().numTensors).toBe(base);
  });
  test('graphs made inside a tidy whose outputs are dropped are freed with it', () => {
    const w = C.randn([16, 16], { requiresGrad: true, seed: 3 });
    const base = C.memory();
    for (let i = 0; i < 5; i++) {
      const v = C.tidy(() => C.randn([4, 16]).matmul(w).relu().sum().item());
      expect(Number.isFinite(v)).toBe(true);
    }
    expect(C.memory().numTensors).toBe(base.numTensors);
    expect(C.memory().cpu.bytes).toBe(base.cpu.bytes);
  });
  test('integer tensors cannot require grad', () => {
    expect(() => C.tensor([1], { dtype: 'i32', requiresGrad: true })).toThrow(/integer/);
  });
  test('a deep chain does not overflow the stack', () => {
    const x = C.tensor([1], { dtype: 'f64', requiresGrad: true });
    const y = C.tidy(() => {
      let t = x;
      for (let i = 0; i < 20000; i++) t = t.mul(1);
      return t.sum();
    });
    y.backward();
    expect(x.grad?.item()).toBe(1);
  });
  test('leaf gradients own their buffers: in-place updates touch neither another leaf nor the seed', () => {
    // add's backward routes the same gradient (a view) to both inputs, and the seed reaches the
    // leaves through it: an in-place clip of one .grad must not scale the other or the seed.
    const a = C.tensor([1, 2, 3], { dtype: 'f64', requiresGrad: true });
    const b = C.tensor([4, 5, 6], { dtype: 'f64', requiresGrad: true });
    const seed = C.tensor([1, 10, 100], { dtype: 'f64' });
    C.tidy(() => a.add(b).backward(seed));
    a.grad?.copy_(C.tidy(() => (a.grad as C.Tensor).mul(0.5)));
    expect(Array.from(a.grad?.dataSync() ?? [])).toEqual([0.5, 5, 50]);
    expect(Array.from(b.grad?.dataSync() ?? [])).toEqual([1, 10, 100]);
    expect(Array.from(seed.dataSync())).toEqual([1, 10, 100]);
    // and backward of a leaf itself with a seed copies the seed into .grad
    const c = C.tensor([1, 2], { dtype: 'f64', requiresGrad: true });
    const s2 = C.tensor([3, 4], { dtype: 'f64' });
    c.backward(s2);
    c.grad?.copy_(C.zerosLike(s2));
    expect(Array.from(s2.dataSync())).toEqual([3, 4]);
    for (const t of [a, b, seed, c, s2]) t.dispose();
  });
});
