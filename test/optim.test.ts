// optim.test.ts: AdamW, SGD (momentum, dampening, Nesterov, weight decay) and Lion against
// independent plain-JS implementations of the torch / lion-pytorch formulas, lr schedules,
// state-dict round trips, gradient clipping, decay groups and leak checks.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { loadSafetensors, saveSafetensors } from '../ts/io/safetensors.js';
import {
  AdamW,
  clipGradNorm,
  constant,
  decayGroups,
  Lion,
  type Optimizer,
  optimizerStateFromTensors,
  optimizerStateToTensors,
  SGD,
  warmupCosine,
} from '../ts/optim/index.js';

const P0 = [0.5, -1.25, 2, 0.1, -0.3, 0];
/** Gradients for steps 1..3 (a zero and sign changes included). */
const G = [
  [0.1, -0.2, 0.3, 0, -1, 2],
  [-0.4, 0.5, 0.05, 0.2, 0.3, -1],
  [0.2, 0.2, -0.6, 1.5, 0, 0.01],
];

function param(values = P0): C.Tensor {
  return C.tensor(values, { dtype: 'f64', requiresGrad: true });
}
function setGrad(p: C.Tensor, g: number[]): void {
  p.grad?.dispose();
  p.grad = C.keep(C.tensor(g, { dtype: 'f64' }));
}
function run(opt: Optimizer, p: C.Tensor, steps = 3, lrs?: number[]): number[][] {
  const out: number[][] = [];
  for (let s = 0; s < steps; s++) {
    if (lrs) opt.setLr(lrs[s] as number);
    setGrad(p, G[s % G.length] as number[]);
    opt.step();
    out.push(Array.from(p.dataSync()));
  }
  return out;
}
function close(a: number[][], b: number[][], tol = 1e-12): void {
  expect(a.length).toBe(b.length);
  a.forEach((row, i) => {
    row.forEach((v, j) => {
      expect(Math.abs(v - (b[i]?.[j] as number))).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v)));
    });
  });
}

// ------------------------------------------------------------------ references (torch formulas)
function refAdamW(o: { lr: number; b1: number; b2: number; eps: number; wd: number }, lrs?: number[]): number[][] {
  const p = [...P0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const out: number[][] = [];
  for (let t = 1; t <= 3; t++) {
    const g = G[t - 1] as number[];
    const lr = lrs ? (lrs[t - 1] as number) : o.lr;
    for (let i = 0; i < p.length; i++) {
      p[i] = (p[i] as number) * (1 - lr * o.wd);
      m[i] = o.b1 * (m[i] as number) + (1 - o.b1) * (g[i] as number);
      v[i] = o.b2 * (v[i] as number) + (1 - o.b2) * (g[i] as number) ** 2;
      const bc1 = 1 - o.b1 ** t;
      const bc2 = 1 - o.b2 ** t;
      const denom = Math.sqrt(v[i] as number) / Math.sqrt(bc2) + o.eps;
      p[i] = (p[i] as number) - (lr / bc1) * ((m[i] as number) / denom);
    }
    out.push([...p]);
  }
  return out;
}
function refSGD(o: { lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number }): number[][] {
  const p = [...P0];
  let buf: number[] | null = null;
  const out: number[][] = [];
  for (let t = 0; t < 3; t++) {
    const g = G[t] as number[];
    const d = p.map((pi, i) => (g[i] as number) + o.wd * pi);
    let step = d;
    if (o.momentum !== 0) {
      if (!buf) buf = [...d];
      else buf = buf.map((b, i) => o.momentum * b + (1 - o.dampening) * (d[i] as number));
      const bb = buf;
      step = o.nesterov ? d.map((di, i) => di + o.momentum * (bb[i] as number)) : bb;
    }
    for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) - o.lr * (step[i] as number);
    out.push([...p]);
  }
  return out;
}
function refLion(o: { lr: number; b1: number; b2: number; wd: number }): number[][] {
  const p = [...P0];
  const m = p.map(() => 0);
  const out: number[][] = [];
  for (let t = 0; t < 3; t++) {
    const g = G[t] as number[];
    for (let i = 0; i < p.length; i++) {
      p[i] = (p[i] as number) * (1 - o.lr * o.wd);
      const c = o.b1 * (m[i] as number) + (1 - o.b1) * (g[i] as number);
      p[i] = (p[i] as number) - o.lr * Math.sign(c);
      m[i] = o.b2 * (m[i] as number) + (1 - o.b2) * (g[i] as number);
    }
    out.push([...p]);
  }
  return out;
}

describe('AdamW', () => {
  test('defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0.01)', () => {
    const p = param();
    close(run(new AdamW([p]), p), refAdamW({ lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 }));
  });
  test('large lr, strong weight decay, other betas and eps', () => {
    const p = param();
    const o = { lr: 0.1, b1: 0.8, b2: 0.95, eps: 1e-3, wd: 0.5 };
    close(run(new AdamW([p], { lr: o.lr, betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd }), p), refAdamW(o));
  });
  test('lr from a schedule, set each step', () => {
    const p = param();
    const sched = warmupCosine({ baseLr: 0.05, warmupSteps: 2, totalSteps: 4 });
    const lrs = [1, 2, 3].map(sched);
    expect(lrs).toEqual([0.025, 0.05, 0.025]);
    close(
      run(new AdamW([p], { lr: 99 }), p, 3, lrs),
      refAdamW({ lr: 0, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 }, lrs),
    );
  });
  test('f32 parameters track the f64 reference', () => {
    const p = C.tensor(P0, { dtype: 'f32', requiresGrad: true });
    const opt = new AdamW([p], { lr: 0.01 });
    const got: number[][] = [];
    for (let s = 0; s < 3; s++) {
      p.grad?.dispose();
      p.grad = C.keep(C.tensor(G[s] as number[], { dtype: 'f32' }));
      opt.step();
      got.push(Array.from(p.dataSync()));
    }
    close(got, refAdamW({ lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 }), 1e-6);
  });
});

describe('SGD', () => {
  const cases = [
    { lr: 0.1, momentum: 0, dampening: 0, nesterov: false, wd: 0 },
    { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, wd: 0 },
    { lr: 0.05, momentum: 0.9, dampening: 0.5, nesterov: false, wd: 0 },
    { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: true, wd: 0 },
    { lr: 0.1, momentum: 0.8, dampening: 0, nesterov: true, wd: 0.1 },
    { lr: 0.2, momentum: 0, dampening: 0, nesterov: false, wd: 0.3 },
  ];
  test.each(cases)('lr $lr momentum $momentum dampening $dampening nesterov $nesterov wd $wd', (o) => {
    const p = param();
    const opt = new SGD([p], {
      lr: o.lr,
      momentum: o.momentum,
      dampening: o.dampening,
      nesterov: o.nesterov,
      weightDecay: o.wd,
    });
    close(run(opt, p), refSGD(o));
  });
  test('Nesterov needs momentum and zero dampening', () => {
    expect(() => new SGD([param()], { lr: 0.1, nesterov: true })).toThrow(/Nesterov momentum needs momentum > 0/);
  });
});

describe('Lion', () => {
  test('defaults (lr 1e-4, betas 0.9/0.99, wd 0)', () => {
    const p = param();
    close(run(new Lion([p]), p), refLion({ lr: 1e-4, b1: 0.9, b2: 0.99, wd: 0 }));
  });
  test('decoupled weight decay and other betas', () => {
    const p = param();
    const o = { lr: 0.01, b1: 0.95, b2: 0.98, wd: 0.5 };
    close(run(new Lion([p], { lr: o.lr, betas: [o.b1, o.b2], weightDecay: o.wd }), p), refLion(o));
  });
});

describe('optimizer base', () => {
  test('param groups carry their own hyper-parameters; params without grad are skipped', () => {
    const a = param();
    const b = param();
    const c = param();
    const opt = new SGD(
      [
        { params: [a], lr: 0.1 },
        { params: [b, c], weightDecay: 0.3, lr: 0.2 },
      ],
      { lr: 1 },
    );
    expect(opt.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual([
      [0.1, 0],
      [0.2, 0.3],
    ]);
    setGrad(a, G[0] as number[]);
    setGrad(b, G[0] as number[]);
    opt.step();
    close(
      [Array.from(a.dataSync()), Array.from(b.dataSync()), Array.from(c.dataSync())],
      [
        refSGD({ lr: 0.1, momentum: 0, dampening: 0, nesterov: false, wd: 0 })[0] as number[],
        refSGD({ lr: 0.2, momentum: 0, dampening: 0, nesterov: false, wd: 0.3 })[0] as number[],
        P0,
      ],
    );
    expect(opt.stateOf(c)).toBeUndefined();
    opt.zeroGrad();
    expect(a.grad).toBeNull();
    expect(b.grad).toBeNull();
  });

  test('bad inputs fail clearly', () => {
    expect(() => new AdamW([])).toThrow(/empty parameter list/);
    const p = param();
    expect(() => new AdamW([{ params: [p] }, { params: [p] }])).toThrow(/appears in more than one group/);
    expect(() => new AdamW([C.tensor([1], { dtype: 'i32' })])).toThrow(/only f32\/f64/);
    expect(() => new AdamW([p], { lr: -1 })).toThrow(/^AdamW: group 0 lr must be >= 0, got -1$/);
    expect(() => new AdamW([p], { betas: [0.9, 1] })).toThrow(/^AdamW: group 0 betas must be two numbers/);
    const opt = new AdamW([p]);
    p.grad = C.keep(C.tensor([1, 2], { dtype: 'f64' }));
    expect(() => opt.step()).toThrow(/gradient of 0\.0 is \[2\] f64, parameter is \[6\] f64/);
  });

  for (const [name, make] of [
    ['AdamW', (ps: C.Tensor[]) => new AdamW(ps, { lr: 0.01 })],
    ['SGD', (ps: C.Tensor[]) => new SGD(ps, { lr: 0.01, momentum: 0.9, nesterov: true })],
    ['Lion', (ps: C.Tensor[]) => new Lion(ps, { lr: 0.01, weightDecay: 0.1 })],
  ] as const) {
    test(`${name}: stateDict round trip continues identically (also through safetensors)`, () => {
      const a = param();
      const b = param(P0.map((v) => v * 2));
      const opt = make([a, b]);
      for (let s = 0; s < 2; s++) {
        setGrad(a, G[s] as number[]);
        setGrad(b, G[s + 1] as number[]);
        opt.step();
      }
      const sd = opt.stateDict();
      expect(sd.type).toBe(name);
      expect(sd.step).toBe(2);
      // A fresh optimizer over copies of the parameters, loaded from the state dict.
      const a2 = param(Array.from(a.dataSync()));
      const b2 = param(Array.from(b.dataSync()));
      const opt2 = make([a2, b2]);
      opt2.setLr(123); // overwritten by the state dict
      opt2.loadStateDict(sd);
      expect(opt2.lr).toBe(0.01);
      // And a third through a safetensors file.
      const dir = mkdtempSync(join(tmpdir(), 'crate-optim-'));
      const { tensors, meta } = optimizerStateToTensors(sd);
      saveSafetensors(join(dir, 'o.safetensors'), tensors, { optimizer: meta });
      const file = loadSafetensors(join(dir, 'o.safetensors'));
      rmSync(dir, { recursive: true });
      const a3 = param(Array.from(a.dataSync()));
      const b3 = param(Array.from(b.dataSync()));
      const opt3 = make([a3, b3]);
      opt3.loadStateDict(optimizerStateFromTensors(file.tensors, file.metadata.optimizer as string));
      for (const t of Object.values(file.tensors)) t.dispose();
      for (const [o, x, y] of [
        [opt, a, b],
        [opt2, a2, b2],
        [opt3, a3, b3],
      ] as const) {
        setGrad(x, G[2] as number[]);
        setGrad(y, G[0] as number[]);
        o.step();
      }
      expect(Array.from(a2.dataSync())).toEqual(Array.from(a.dataSync()));
      expect(Array.from(b2.dataSync())).toEqual(Array.from(b.dataSync()));
      expect(Array.from(a3.dataSync())).toEqual(Array.from(a.dataSync()));
      expect(Array.from(b3.dataSync())).toEqual(Array.from(b.dataSync()));
      expect(opt2.stepCount).toBe(3);
    });
  }

  test('loadStateDict rejects mismatches and changes nothing', () => {
    const a = param();
    const opt = new AdamW([a]);
    setGrad(a, G[0] as number[]);
    opt.step();
    const sd = opt.stateDict();
    expect(() => new SGD([param()], { lr: 1 }).loadStateDict(sd)).toThrow(/from AdamW, not SGD/);
    expect(() => new AdamW([param(), param()]).loadStateDict(sd)).toThrow(
      /group 0 has 1 params in the state dict, 2 here/,
    );
    expect(() => new AdamW([{ params: [param()] }, { params: [param()] }]).loadStateDict(sd)).toThrow(
      /1 param groups, this optimizer 2/,
    );
    const other = new AdamW([param([1, 2])]);
    expect(() => other.loadStateDict(sd)).toThrow(/state '0\.0\.exp_avg' has shape \[6\], parameter 0\.0 has \[2\]/);
    expect(other.stateDict().state).toEqual({});
    expect(() => other.loadStateDict({ ...sd, state: { '5.0': {} } })).toThrow(/'5\.0' names no parameter/);
  });

  test('no tensor leaks across 10 steps', () => {
    for (const make of [
      (ps: C.Tensor[]) => new AdamW(ps, { lr: 0.01 }),
      (ps: C.Tensor[]) => new SGD(ps, { lr: 0.01, momentum: 0.9, weightDecay: 0.1 }),
      (ps: C.Tensor[]) => new Lion(ps, { lr: 0.01, weightDecay: 0.1 }),
    ]) {
      const w = C.randn([8, 4], { dtype: 'f64', requiresGrad: true, seed: 1 });
      const b = C.zeros([4], { dtype: 'f64', requiresGrad: true });
      const x = C.randn([16, 8], { dtype: 'f64', seed: 2 });
      const opt = make([w, b]);
      const iterate = () => {
        const loss = C.tidy(() => C.matmul(x, w).add(b).square().mean());
        loss.backward();
        loss.dispose();
        clipGradNorm([w, b], 1);
        opt.step();
        opt.zeroGrad();
      };
      iterate(); // creates the optimizer state
      const before = C.memory();
      for (let s = 0; s < 10; s++) iterate();
      const after = C.memory();
      expect(after.numTensors).toBe(before.numTensors);
      expect(after.cpu.bytes).toBe(before.cpu.bytes);
      opt.dispose();
      for (const t of [w, b, x]) t.dispose();
    }
  });
});

describe('schedules', () => {
  test('warmupCosine: 0 at step 0, linear warmup, base at the end of warmup, cosine to minLr', () => {
    const s = warmupCosine({ baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5 });
    expect(s(0)).toBe(0);
    expect(s(5)).toBeCloseTo(5e-4, 15);
    expect(s(10)).toBeCloseTo(1e-3, 15);
    expect(s(60)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) / 2, 15); // half-way through the cosine
    expect(s(35)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + Math.cos(Math.PI / 4)), 15);
    expect(s(110)).toBeCloseTo(1e-5, 15);
    expect(s(500)).toBe(1e-5);
    const noWarm = warmupCosine({ baseLr: 2, warmupSteps: 0, totalSteps: 4 });
    expect([0, 1, 2, 3, 4].map(noWarm).map((v) => Number(v.toFixed(12)))).toEqual([
      2,
      Number((1 + Math.cos(Math.PI / 4)).toFixed(12)),
      1,
      Number((1 - Math.cos(Math.PI / 4)).toFixed(12)),
      0,
    ]);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 5, totalSteps: 4 })).toThrow(/totalSteps/);
    expect(() => s(-1)).toThrow(/step must be >= 0/);
  });
  test('constant, with and without warmup', () => {
    expect([0, 5, 1000].map(constant(0.1))).toEqual([0.1, 0.1, 0.1]);
    expect([0, 2, 4, 9].map(constant(0.1, { warmupSteps: 4 }))).toEqual([0, 0.05, 0.1, 0.1]);
  });
});

describe('clipGradNorm', () => {
  test('global L2 norm, scaling in place like torch', () => {
    const a = param([0, 0]);
    const b = param([0, 0, 0]);
    const c = param([1]); // no gradient: skipped
    setGrad(a, [3, 4]);
    setGrad(b, [0, 12, 0]);
    const norm = clipGradNorm([a, b, c], 6.5);
    expect(norm).toBeCloseTo(13, 12);
    const coef = 6.5 / (13 + 1e-6);
    close(
      [Array.from(a.grad?.dataSync() ?? []), Array.from(b.grad?.dataSync() ?? [])],
      [
        [3 * coef, 4 * coef],
        [0, 12 * coef, 0],
      ],
    );
    // Under the threshold: untouched.
    expect(clipGradNorm([a, b], 100)).toBeCloseTo(6.5, 5);
    close([Array.from(a.grad?.dataSync() ?? [])], [[3 * coef, 4 * coef]]);
  });
  test('infinity norm and non-finite norms', () => {
    const a = param([0, 0]);
    setGrad(a, [-5, 2]);
    expect(clipGradNorm([a], 1, { normType: Number.POSITIVE_INFINITY })).toBe(5);
    close([Array.from(a.grad?.dataSync() ?? [])], [[(-5 * 1) / (5 + 1e-6), (2 * 1) / (5 + 1e-6)]]);
    setGrad(a, [Number.NaN, 1]);
    expect(clipGradNorm([a], 1)).toBeNaN();
    expect(a.grad?.dataSync()[1]).toBe(1); // left for the caller to handle
    setGrad(a, [Number.POSITIVE_INFINITY, 1]);
    expect(clipGradNorm([a], 1)).toBe(Number.POSITIVE_INFINITY);
    expect(clipGradNorm([param()], 1)).toBe(0);
  });
});

describe('decayGroups', () => {
  test('1-D params and temp/denom/pos_embedding/cls_token names get no weight decay', () => {
    const named: [string, C.Tensor][] = [
      ['blocks.0.attn.qkv.weight', C.zeros([4, 4], { requiresGrad: true })],
      ['blocks.0.attn.qkv.bias', C.zeros([4], { requiresGrad: true })],
      ['blocks.0.norm.weight', C.zeros([4], { requiresGrad: true })],
      ['blocks.0.attn.temp', C.zeros([1, 1], { requiresGrad: true })],
      ['pos_embedding', C.zeros([1, 5, 4], { requiresGrad: true })],
      ['cls_token', C.zeros([1, 1, 4], { requiresGrad: true })],
      ['blocks.0.ista.denom', C.zeros([2, 2], { requiresGrad: true })],
      ['head.weight', C.zeros([4, 3], { requiresGrad: true })],
      ['frozen.weight', C.zeros([4, 3])],
    ];
    const [decay, none] = decayGroups(named, { weightDecay: 0.05 });
    expect(decay?.names).toEqual(['blocks.0.attn.qkv.weight', 'head.weight']);
    expect(decay?.weightDecay).toBe(0.05);
    expect(none?.names).toEqual([
      'blocks.0.attn.qkv.bias',
      'blocks.0.norm.weight',
      'blocks.0.attn.temp',
      'pos_embedding',
      'cls_token',
      'blocks.0.ista.denom',
    ]);
    expect(none?.weightDecay).toBe(0);
    const custom = decayGroups(named, { weightDecay: 0.1, noDecay: (n) => n.startsWith('head') });
    expect(custom[1]?.names).toEqual(['head.weight']);
    const opt = new AdamW(decayGroups(named, { weightDecay: 0.05 }), { lr: 1e-3 });
    expect(opt.paramGroups.map((g) => g.weightDecay)).toEqual([0.05, 0]);
  });
});
