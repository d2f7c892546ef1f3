#!/usr/bin/env node
// crate: the command-line entry (train | eval | info | bench). The implementation is lib/cli/main.js.
import('../lib/cli/main.js')
  .then((m) => m.main(process.argv.slice(2)))
  .then((code) => {
    process.exitCode = code;
  })
  .catch((e) => {
    console.error(`crate: ${e?.message ?? e}`);
    process.exitCode = 1;
  });
