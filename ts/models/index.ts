// index.ts: the model families.
export * from './crate.js';
export * from './crate_alpha.js';
export * from './crate_lm.js';
export * from './crate_mae.js';
export * from './tost.js';
