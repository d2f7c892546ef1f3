// schedule.ts: learning-rate schedules as functions of the step: linear warmup then cosine decay
// (per step, as the CRATE and timm recipes), and constant (with optional warmup).
export type Schedule = (step: number) => number;

export interface WarmupCosineOptions {
  baseLr: number;
  warmupSteps: number;
  totalSteps: number;
  /** The floor the cosine decays to (default 0). */
  minLr?: number;
}

function checkStep(step: number): void {
  if (!Number.isFinite(step) || step < 0) throw new RangeError(`schedule: step must be >= 0, got ${step}`);
}

/**
 * lr(step): baseLr * step / warmupSteps for step < warmupSteps (0 at step 0, baseLr at the end of
 * warmup), then minLr + (baseLr - minLr) * (1 + cos(pi * progress)) / 2 with progress from 0 at
 * warmupSteps to 1 at totalSteps; minLr after totalSteps.
 */
export function warmupCosine(opts: WarmupCosineOptions): Schedule {
  const { baseLr, warmupSteps, totalSteps } = opts;
  const minLr = opts.minLr ?? 0;
  if (!(baseLr >= 0) || !(minLr >= 0)) throw new RangeError(`warmupCosine: baseLr and minLr must be >= 0`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
    throw new RangeError(`warmupCosine: bad warmupSteps ${warmupSteps}`);
  }
  if (!Number.isInteger(totalSteps) || totalSteps < warmupSteps) {
    throw new RangeError(`warmupCosine: totalSteps (${totalSteps}) must be an integer >= warmupSteps (${warmupSteps})`);
  }
  return (step: number): number => {
    checkStep(step);
    if (step < warmupSteps) return (baseLr * step) / warmupSteps;
    if (step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / (totalSteps - warmupSteps);
    return minLr + (baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** A constant lr, optionally after a linear warmup from 0 over warmupSteps. */
export function constant(lr: number, opts: { warmupSteps?: number } = {}): Schedule {
  if (!(lr >= 0)) throw new RangeError(`constant: lr must be >= 0, got ${lr}`);
  const w = opts.warmupSteps ?? 0;
  if (!Number.isInteger(w) || w < 0) throw new RangeError(`constant: bad warmupSteps ${w}`);
  return (step: number): number => {
    checkStep(step);
    return step < w ? (lr * step) / w : lr;
  };
}
