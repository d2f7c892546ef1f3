// index.ts: the nn namespace: Module, layers, CRATE blocks and initialisers.

export * from './crate_blocks.js';
export * from './init.js';
export * from './layers.js';
export * from './module.js';
