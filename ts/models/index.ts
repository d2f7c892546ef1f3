// index.ts: the model families.
export * from './crate.js';
