// tensor.test.ts: creation, dtypes, seeded randomness, printing, memory management.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';

describe('creation', () => {
  test('nested arrays, typed arrays and scalars', () => {
    const a = C.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe('f32');
    expect(Array.from(a.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    const b = C.tensor(new Float64Array([1, 2, 3, 4]), { shape: [2, 2] });
    expect(b.dtype).toBe('f64');
    expect(b.toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    const s = C.tensor(3.5);
    expect(s.shape).toEqual([]);
    expect(s.item()).toBe(3.5);
    const i = C.tensor([1, -2, 3], { dtype: 'i32' });
    expect(i.dataSync()).toBeInstanceOf(Int32Array);
    for (const t of [a, b, s, i]) t.dispose();
  });
  test('zeros, ones, full, arange', () => {
    expect(Array.from(C.zeros([3]).dataSync())).toEqual([0, 0, 0]);
    expect(Array.from(C.ones([2], { dtype: 'f64' }).dataSync())).toEqual([1, 1]);
    expect(Array.from(C.full([2], 7, { dtype: 'i32' }).dataSync())).toEqual([7, 7]);
    expect(Array.from(C.arange(5).dataSync())).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(C.arange(1, 2, 0.25, { dtype: 'f64' }).dataSync())).toEqual([1, 1.25, 1.5, 1.75]);
    expect(C.arange(3, 3).shape).toEqual([0]);
  });
  test('seeded random draws are reproducible and have the right moments', () => {
    C.manualSeed(42);
    const a = C.randn([20000]).dataSync();
    C.manualSeed(42);
    const b = C.randn([20000]).dataSync();
    expect(Array.from(a)).toEqual(Array.from(b));
    const c = C.randn([20000]).dataSync();
    expect(Array.from(c)).not.toEqual(Array.from(a));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const v = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(v - 1)).toBeLessThan(0.05);
    const u = C.uniform([20000], -2, 3, { seed: 7 }).dataSync();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-2);
    expect(Math.max(...u)).toBeLessThan(3);
    expect(Math.abs(u.reduce((s, x) => s + x, 0) / u.length - 0.5)).toBeLessThan(0.05);
    expect(Array.from(C.rand([5], { seed: 3 }).dataSync())).toEqual(Array.from(C.rand([5], { seed: 3 }).dataSync()));
  });
  test('toString prints like PyTorch', () => {
    const t = C.tensor([
      [1, 2.5],
      [-3, 4],
    ]);
    expect(String(t)).toBe('tensor([[ 1., 2.5],\n        [-3.,  4.]])');
    expect(String(C.tensor([1, 2], { dtype: 'i32' }))).toBe('tensor([1, 2], dtype=i32)');
    const g = C.tensor([1, 2], { requiresGrad: true });
    expect(String(g)).toContain('requires_grad=True');
    expect(String(g.mul(2))).toContain('grad_fn=<affine>');
    expect(String(C.tensor(2))).toBe('tensor(2.)');
    const big = C.arange(2000);
    expect(String(big)).toContain('...');
  });
  test('reshape shares storage; dispose of one view keeps the other', () => {
    const a = C.arange(6);
    const b = a.reshape([2, 3]);
    a.dispose();
    expect(b.toArray()).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    b.dispose();
  });
});

describe('memory', () => {
  test('tidy frees everything but the result; memory() counts tensors and bytes', () => {
    const before = C.memory();
    const r = C.tidy(() => {
      const a = C.ones([1000]);
      const b = a.mul(2);
      return { r: b.add(1), n: 3 };
    });
    const mid = C.memory();
    expect(mid.numTensors).toBe(before.numTensors + 1);
    expect(mid.cpu.bytes).toBe(before.cpu.bytes + 4000);
    expect(r.r.dataSync()[0]).toBe(3);
    r.r.dispose();
    const after = C.memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.cpu.bytes).toBe(before.cpu.bytes);
  });
  test('keep() survives tidy; nested tidy passes results up', () => {
    const before = C.memory().numTensors;
    let kept: C.Tensor | null = null;
    const out = C.tidy(() => {
      kept = C.keep(C.zeros([3]));
      return C.tidy(() => C.ones([2]).add(1));
    });
    expect(C.memory().numTensors).toBe(before + 2);
    expect(Array.from(out.dataSync())).toEqual([2, 2]);
    out.dispose();
    (kept as unknown as C.Tensor).dispose();
    expect(C.memory().numTensors).toBe(before);
  });
  test('tidy disposes on throw and refuses async functions', () => {
    const before = C.memory().numTensors;
    expect(() =>
      C.tidy(() => {
        C.ones([4]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(C.memory().numTensors).toBe(before);
    expect(() => C.tidy(() => Promise.resolve(1) as unknown as number)).toThrow(/synchronous/);
  });
  test('use after dispose names the op and never crashes', () => {
    const a = C.ones([3]);
    a.dispose();
    a.dispose(); // idempotent
    expect(() => a.add(1)).toThrow(/add.*used after dispose/);
    expect(() => C.matmul(a, a)).toThrow(/matmul.*used after dispose/);
    expect(() => a.dataSync()).toThrow(/dataSync.*used after dispose/);
    expect(() => a.sum()).toThrow(/sum.*used after dispose/);
  });
  test('async data() resolves with a copy', async () => {
    const a = C.tensor([1, 2, 3]);
    const [d1, d2] = await Promise.all([a.data(), a.mul(2).data()]);
    expect(Array.from(d1)).toEqual([1, 2, 3]);
    expect(Array.from(d2)).toEqual([2, 4, 6]);
  });
});

describe('in-place updates', () => {
  test('copy_ broadcasts, keeps identity and is not recorded', () => {
    const p = C.zeros([2, 3], { requiresGrad: true });
    const id = p.id;
    C.noGrad(() => p.copy_(C.tensor([1, 2, 3])));
    expect(p.id).toBe(id);
    expect(p.toArray()).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(() => p.copy_(C.ones([4]))).toThrow(/copy_: cannot copy \[4\] into \[2, 3\]/);
    expect(() => p.copy_(C.ones([3], { dtype: 'f64' }))).toThrow(/src is f64/);
    p.fill_(0.5);
    expect(p.dataSync()[5]).toBe(0.5);
  });
});

describe('devices', () => {
  test.skipIf(C.cudaAvailable())('without a usable GPU, cuda tensors are refused with the reason', () => {
    expect(() => C.zeros([2], { device: 'cuda' })).toThrow(/device 'cuda' is not available: .+/);
    const x = C.ones([3]);
    expect(() => x.to('cuda')).toThrow(/device 'cuda' is not available/);
    expect(x.to('cpu').dataSync()).toEqual(new Float32Array([1, 1, 1])); // a copy on the same device
    x.dispose();
  });
  test.skipIf(!C.cudaAvailable())('cpu -> cuda -> cpu round trip keeps values, await data() works', async () => {
    const x = C.randn([33, 7], { seed: 3 });
    const g = x.to('cuda');
    expect(g.device).toBe('cuda');
    expect(Array.from(await g.data())).toEqual(Array.from(x.dataSync()));
    const back = g.to('cpu');
    expect(Array.from(back.dataSync())).toEqual(Array.from(x.dataSync()));
    expect(() => C.zeros([2], { device: 'cuda', dtype: 'f64' })).toThrow(/f64.*not supported on device 'cuda'/);
    for (const t of [x, g, back]) t.dispose();
  });
  test('autocast leaves CPU matmuls in f32 (bf16 GEMMs are CUDA-only) and nests', () => {
    const a = C.randn([5, 7], { seed: 1 });
    const b = C.randn([7, 3], { seed: 2 });
    const plain = C.tidy(() => Array.from(a.matmul(b).dataSync()));
    const auto = C.autocast(() => {
      expect(C.isAutocast()).toBe(true);
      return C.autocast(() => C.tidy(() => Array.from(a.matmul(b).dataSync())));
    });
    expect(C.isAutocast()).toBe(false);
    expect(auto).toEqual(plain);
    expect(() => C.autocast(() => 0, { dtype: 'f16' as 'bf16' })).toThrow(/dtype must be 'bf16'/);
    a.dispose();
    b.dispose();
  });
  test.skipIf(!C.cudaAvailable())('autocast on cuda: bf16 GEMM within bf16 rounding of f32, gradients f32', () => {
    const a = C.randn([64, 96], { seed: 1 });
    const b = C.randn([96, 32], { seed: 2 });
    const ref = C.tidy(() => Array.from(a.matmul(b).dataSync()));
    const ga = a.to('cuda');
    const gb = b.to('cuda');
    ga.requiresGrad_(true);
    const out = C.autocast(() => C.tidy(() => ga.matmul(gb)));
    expect(out.dtype).toBe('f32');
    const got = Array.from(out.dataSync());
    const scale = Math.max(...ref.map(Math.abs));
    for (let i = 0; i < ref.length; i++)
      expect(Math.abs((got[i] as number) - (ref[i] as number))).toBeLessThan(0.02 * scale);
    out.backward(C.onesLike(out));
    expect(ga.grad?.dtype).toBe('f32');
    for (const t of [a, b, ga, gb, out]) t.dispose();
  });
  test('Module.to(cpu) keeps the same parameter objects and values', () => {
    const lin = new C.nn.Linear(4, 3);
    const w = lin.weight;
    const before = Array.from(w.dataSync());
    expect(lin.to('cpu')).toBe(lin);
    expect(lin.weight).toBe(w);
    expect(lin.device).toBe('cpu');
    expect(Array.from(w.dataSync())).toEqual(before);
    lin.dispose();
  });
});
