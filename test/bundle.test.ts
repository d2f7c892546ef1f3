// bundle.test.ts: scripts/bundle.mjs packs a runnable offline bundle. Builds one into a temp dir,
// extracts the tar elsewhere and runs `<dir>/crate info --json` from outside the repo with a clean
// environment (PATH: an empty folder, so neither the system node nor the repo can be used), then
// checks that the addon and the CUDA library were taken from the bundle and that the versions are
// reported. Negative control: with the bundle's crate.node moved away the launcher fails, naming
// the bundle's paths. Skipped, saying so, without tar or without a built addon / lib.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const missing =
  spawnSync('tar', ['--version']).status !== 0
    ? 'tar not found on PATH'
    : !existsSync(join(root, 'build', 'Release', 'crate.node'))
      ? 'build/Release/crate.node not built (npm run build:native)'
      : !existsSync(join(root, 'lib', 'cli', 'main.js'))
        ? 'lib/ not built (npm run build:ts)'
        : null;
if (missing) console.warn(`[crate] bundle test skipped: ${missing}`);

const tmp = mkdtempSync(join(tmpdir(), 'crate-bundle-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(missing !== null)('offline bundle (scripts/bundle.mjs)', () => {
  test('packs a tar that runs `crate info --json` on its own, with the bundled node and addon', () => {
    const out = join(tmp, 'out');
    const b = spawnSync(process.execPath, [join(root, 'scripts', 'bundle.mjs'), '--out', out], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    const name = `${pkg.name}-${pkg.version}-${process.platform}-${process.arch}`;
    expect(readdirSync(out)).toEqual([`${name}.tar`]); // the staging folder is gone

    const x = join(tmp, 'extracted');
    mkdirSync(x);
    const t = spawnSync('tar', ['-xf', join(out, `${name}.tar`), '-C', x], { encoding: 'utf8' });
    expect(t.status).toBe(0);
    const dir = join(x, name);
    // what is in it, and what is not
    for (const f of ['crate', 'runtime/node', 'package.json', 'lib/cli/main.js', 'bin/crate.js', 'BUNDLE.json'])
      expect(existsSync(join(dir, f)), f).toBe(true);
    for (const f of ['crate.node', 'libcrate.so', 'libcrate_cuda.so'])
      expect(existsSync(join(dir, 'build', 'Release', f)), f).toBe(existsSync(join(root, 'build', 'Release', f)));
    for (const dep of Object.keys(pkg.dependencies)) {
      const buildOnly = ['cmake-js', 'node-addon-api', 'node-api-headers'].includes(dep);
      expect(existsSync(join(dir, 'node_modules', dep)), dep).toBe(!buildOnly);
    }
    expect(existsSync(join(dir, 'node_modules', 'typescript'))).toBe(false); // no dev dependencies
    const manifest = JSON.parse(readFileSync(join(dir, 'BUNDLE.json'), 'utf8'));
    expect(manifest.version).toBe(pkg.version);
    expect(manifest.node.version).toBe(process.version);

    // run it from outside the repo with nothing on PATH
    const emptyPath = join(tmp, 'empty-path');
    mkdirSync(emptyPath);
    const env = { PATH: emptyPath, HOME: tmp, LANG: 'C' };
    const run = (args: string[]) => spawnSync(join(dir, 'crate'), args, { encoding: 'utf8', env, cwd: tmp });
    const r = run(['info', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.version).toBe(pkg.version);
    expect(typeof info.cudaCompiled).toBe('boolean');
    expect(info.threads).toBeGreaterThan(0);
    if (existsSync(join(dir, 'build', 'Release', 'libcrate_cuda.so'))) {
      // the addon looks for libcrate_cuda.so beside itself: a bundle path proves the addon is the bundle's
      expect(`${info.cudaLibrary ?? ''} ${info.cudaReason ?? ''}`).toContain(join(dir, 'build', 'Release'));
      expect(info.cuda.runtimeVersion).toBeGreaterThan(0);
    }
    const v = spawnSync(join(dir, 'runtime', 'node'), ['--version'], { encoding: 'utf8', env });
    expect(v.stdout.trim()).toBe(process.version);

    // negative control: without the bundle's addon nothing else is found
    const addon = join(dir, 'build', 'Release', 'crate.node');
    renameSync(addon, `${addon}.away`);
    const r2 = run(['info', '--json']);
    renameSync(`${addon}.away`, addon);
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toContain('could not load the native addon');
    expect(r2.stderr).toContain(addon);
  }, 60_000);

  test('refuses clearly when the addon is not built', () => {
    const r = spawnSync(
      process.execPath,
      [join(root, 'scripts', 'bundle.mjs'), '--out', join(tmp, 'out2'), '--native-dir', join(tmp, 'nothing-here')],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/crate\.node not found: run `npm run build:native`/);
  });
});
