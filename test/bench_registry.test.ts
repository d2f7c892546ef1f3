// bench_registry.test.ts: bench/registry.mjs (every registry op timed on its perf case) runs over
// the whole registry and reports what it says it does: a fwd row per op and a fwd+bwd row per
// differentiable op, positive times, the napkin bytes and FLOPs of the specs, and GB/s / GFLOP/s
// that follow from them. (Timings themselves are never asserted: bench/results has the numbers.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { CRATE_REGISTRY } from './helpers/crate_registry.js';
import { REGISTRY } from './helpers/registry.js';

const root = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'crate-bench-registry-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('bench/registry.mjs: the registry drives the benchmarks', () => {
  test('every registry op has a perf case, with the arity of one of its checked cases', () => {
    for (const spec of [...REGISTRY, ...CRATE_REGISTRY]) {
      expect(spec.perf, spec.name).toBeDefined();
      expect(
        spec.cases.map((c) => c.inputs.length),
        spec.name,
      ).toContain(spec.perf.inputs.length);
    }
  });

  test('one run over every op: rows, bytes, FLOPs and rates', () => {
    const r = spawnSync(
      process.execPath,
      ['bench/registry.mjs', '--reps', '1', '--warmup', '0', '--threads', '2', '--outdir', out, '--name', 'reg'],
      { cwd: root, encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(r.stderr || r.stdout);
    const lines = readFileSync(join(out, 'reg.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].meta.deviceKind).toBe('cpu');
    expect(lines[0].meta.reps).toBe(1);
    const rows = lines.slice(1);
    const specs = [...REGISTRY, ...CRATE_REGISTRY];
    const want = specs.flatMap((s) => (s.noGrad ? [`${s.name}:fwd`] : [`${s.name}:fwd`, `${s.name}:fwd+bwd`]));
    expect(rows.map((x) => `${x.op}:${x.pass}`)).toEqual(want);
    for (const row of rows) {
      expect(row.median, row.op).toBeGreaterThan(0);
      // training-sized: every forward moves at least 1 MiB (inputs + output)
      if (row.pass === 'fwd') expect(row.bytes, `${row.op} ${row.shape}`).toBeGreaterThanOrEqual(2 ** 20);
      expect(row.min).toBeLessThanOrEqual(row.median);
      const spec = specs.find((s) => s.name === row.op);
      const flops = spec?.perf.flops;
      if (flops) {
        expect(row.flops).toBe(row.pass === 'fwd' ? flops : 3 * flops);
        expect(row.gflops).toBeCloseTo(row.flops / (row.median * 1e6), 6);
      } else expect(row.gflops).toBeNull();
    }
    // napkin bytes of the forward: inputs read once + output written once, 4 bytes each
    const add = rows.find((x) => x.op === 'add' && x.pass === 'fwd');
    expect(add.bytes).toBe(4 * (4096 * 1024 + 1024 + 4096 * 1024));
    expect(add.gbs).toBeCloseTo(add.bytes / (add.median * 1e6), 6);
    const sum = rows.find((x) => x.op === 'reduce sum' && x.pass === 'fwd');
    expect(sum.bytes).toBe(4 * (4096 * 1024 + 4096));
    const md = readFileSync(join(out, 'reg.md'), 'utf8');
    expect(md).toMatch(/node bench\/registry\.mjs --reps 1/);
    expect(md.split('\n').filter((l) => l.startsWith('| mssa (fused)'))).toHaveLength(2);
  }, 300_000);
});
