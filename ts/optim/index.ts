// index.ts: the optimizers' public API (AdamW, SGD, Lion, schedules, clipping, param groups).
export * from './adamw.js';
export * from './clip.js';
export * from './lion.js';
export * from './optimizer.js';
export * from './paramGroups.js';
export * from './schedule.js';
export * from './sgd.js';
