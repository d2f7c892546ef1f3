// run.ts: `crate bench` entry: runs bench/run.mjs (the benchmark harness) with the given args.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../native.js';

export function runBench(argv: string[]): number {
  const script = join(packageRoot, 'bench', 'run.mjs');
  if (!existsSync(script)) {
    console.error(`crate bench: ${script} not found (benchmarks ship with the repository, not the npm package)`);
    return 1;
  }
  return spawnSync(process.execPath, [script, ...argv], { stdio: 'inherit' }).status ?? 1;
}
