// run.ts: `crate bench` entry: runs bench/run.mjs (the benchmark harness), or with --registry
// bench/registry.mjs (every registry op on its perf case), with the other args.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../native.js';

export function runBench(argv: string[]): number {
  const registry = argv.includes('--registry');
  const script = join(packageRoot, 'bench', registry ? 'registry.mjs' : 'run.mjs');
  if (!existsSync(script)) {
    console.error(`crate bench: ${script} not found (benchmarks ship with the repository, not the npm package)`);
    return 1;
  }
  const rest = argv.filter((a) => a !== '--registry');
  return spawnSync(process.execPath, [script, ...rest], { stdio: 'inherit' }).status ?? 1;
}
