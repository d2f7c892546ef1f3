// common.mjs: what every bench script shares: the commit a report is for, and the barrier that
// brackets a timed region on the device.
import { execSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The short commit of the checkout; CRATE_COMMIT where there is no git (a GPU box's copy). */
export function gitCommit() {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: here, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return process.env.CRATE_COMMIT ?? 'unknown';
  }
}

/** A function that waits for the device's queued work (a no-op on the CPU, whose ops are synchronous). */
export function deviceSync(C, device) {
  return device === 'cuda' ? () => C.synchronize() : () => {};
}
