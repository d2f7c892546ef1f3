// index.ts: the data pipeline's public API (datasets, readers, tokenizers, transforms, loader).
export * from './cifar.js';
export * from './corpus.js';
export * from './dataset.js';
export * from './idx.js';
export * from './imagefolder.js';
export * from './loader.js';
export * from './mnist.js';
export * from './rng.js';
export * from './text.js';
export * from './transforms.js';
