// c_abi.test.ts: the plain C ABI (build/Release/libcrate.so): the C test programs in test/c are
// compiled with the system C compiler and run (their own checks against f64 loops and finite
// differences), and abi_vs_ts.c runs the kernels through the ABI on inputs from this test so the
// results can be compared with the TypeScript path. Skipped, saying so, without a C compiler
// or without libcrate.so (node-gyp builds do not produce it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { packageRoot } from '../ts/native.js';
import { relErr } from './helpers/harness.js';

const lib = join(packageRoot, 'build', 'Release');
const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
const missing = !cc
  ? 'no C compiler (cc/gcc/clang) on PATH'
  : !existsSync(join(lib, 'libcrate.so'))
    ? `${lib}/libcrate.so not built (cmake build only)`
    : null;
if (missing) console.warn(`[crate] C ABI tests skipped: ${missing}`);
const tmp = mkdtempSync(join(tmpdir(), 'crate-abi-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function build(src: string): string {
  const exe = join(tmp, src.replace(/\W/g, '_'));
  const r = spawnSync(
    cc as string,
    [
      '-std=c99',
      '-O1',
      `-I${join(packageRoot, 'native', 'include')}`,
      join(packageRoot, 'test', 'c', src),
      `-L${lib}`,
      '-lcrate',
      '-lm',
      `-Wl,-rpath,${lib}`,
      '-o',
      exe,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`compiling ${src} failed:\n${r.stderr}`);
  return exe;
}

describe.skipIf(missing !== null)('C ABI', () => {
  for (const src of ['test_mssa_ista.c', 'test_rate_tssa.c']) {
    test(`${src} passes its checks`, () => {
      const r = spawnSync(build(src), [], { encoding: 'utf8', timeout: 300_000 });
      expect(r.stderr + r.stdout).not.toMatch(/FAIL/);
      expect(r.status).toBe(0);
    });
  }
  test('the ABI gives the same results as the TypeScript ops', () => {
    const [B, N, H, p, d] = [2, 17, 3, 8, 12];
    const P = C.randn([B, N, H * p], { dtype: 'f64', seed: 1 });
    const W = C.randn([d, d], { dtype: 'f64', seed: 2, std: 0.3 });
    const Y = C.randn([B, N, d], { dtype: 'f64', seed: 3 });
    const temp = C.uniform([H], 0.5, 2, { dtype: 'f64', seed: 4 });
    const header = new BigInt64Array([B, N, H, p, d].map(BigInt));
    const parts = [header, P.dataSync(), W.dataSync(), Y.dataSync(), temp.dataSync()];
    writeFileSync(
      join(tmp, 'in.bin'),
      Buffer.concat(parts.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))),
    );
    const r = spawnSync(build('abi_vs_ts.c'), [join(tmp, 'in.bin'), join(tmp, 'out.bin')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = new Float64Array(new Uint8Array(readFileSync(join(tmp, 'out.bin'))).buffer);
    const nP = B * N * H * p;
    const nY = B * N * d;
    const ts = {
      mssa: C.mssa(P, { heads: H, scale: 0.125 }).dataSync(),
      ista: C.ista(Y, W, 0.1, 0.1).dataSync(),
      logdet: C.logdetGramHeads(P, 0.5, H).dataSync(),
      tssa: C.tssa(P, temp, H).dataSync(),
    };
    expect(relErr(out.subarray(0, nP), ts.mssa)).toBeLessThan(1e-14);
    expect(relErr(out.subarray(nP, nP + nY), ts.ista)).toBeLessThan(1e-14);
    expect(relErr(out.subarray(nP + nY, nP + nY + B * H), ts.logdet)).toBeLessThan(1e-14);
    expect(relErr(out.subarray(nP + nY + B * H), ts.tssa)).toBeLessThan(1e-14);
  });
});
