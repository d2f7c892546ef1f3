// child.ts: runs Node in a child process (a script file, or an inline ES module) from the
// repository root and returns the JSON value printed on its last stdout line; a child that fails
// throws with its stderr (or stdout).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

// biome-ignore lint/suspicious/noExplicitAny: the child's JSON, shaped by each test
export function nodeJson(args: string[], env: NodeJS.ProcessEnv = process.env): any {
  const r = spawnSync(process.execPath, args, { cwd: root, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr || r.stdout);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

/** nodeJson of an inline ES module (`node --input-type=module -e script`). */
// biome-ignore lint/suspicious/noExplicitAny: the child's JSON, shaped by each test
export function moduleJson(script: string, env: NodeJS.ProcessEnv = process.env): any {
  return nodeJson(['--input-type=module', '-e', script], env);
}
