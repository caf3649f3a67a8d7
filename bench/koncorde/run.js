// Runs Koncorde on the filters and documents koncorde_bench.py generated.
//
//   node --expose-gc run.js <input.json> <output.json> [rounds]
//
// Times are CPU seconds of this process (process.cpuUsage: user + system), so
// that time spent descheduled on a shared machine does not count. test() runs
// over every document `rounds` times (default 3); test_s is the fastest round.
// input:  {"filters": [koncorde filter, ...], "docs": [doc, ...]}
// output: {"first": [i -> index of the first filter with the same id],
//          "matches": [[first index of each matched id, ...] per doc],
//          "register_s", "test_s", "test_wall_s", "remove_s", "heap_bytes", "rss_bytes",
//          "distinct"}
"use strict";

const fs = require("fs");
const { Koncorde } = require("koncorde");

function settle() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

function cpuSeconds(since) {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

function main() {
  const [input, output, roundsArg] = process.argv.slice(2);
  const rounds = Number(roundsArg || 3);
  const { filters, docs } = JSON.parse(fs.readFileSync(input, "utf8"));

  const before = settle();
  const koncorde = new Koncorde();
  let t0 = process.cpuUsage();
  const ids = filters.map((f) => koncorde.register(f));
  const registerS = cpuSeconds(t0);
  const after = settle();

  const first = new Map();
  const firstOf = ids.map((id, i) => {
    if (!first.has(id)) first.set(id, i);
    return first.get(id);
  });

  // Warm-up (JIT), then the timed pass over every document.
  for (let i = 0; i < Math.min(200, docs.length); i++) koncorde.test(docs[i]);
  const results = new Array(docs.length);
  let testS = Infinity;
  let testWallS = Infinity;
  for (let round = 0; round < rounds; round++) {
    t0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    for (let i = 0; i < docs.length; i++) results[i] = koncorde.test(docs[i]);
    testS = Math.min(testS, cpuSeconds(t0));
    testWallS = Math.min(testWallS, Number(process.hrtime.bigint() - w0) / 1e9);
  }

  const matches = results.map((r) => r.map((id) => first.get(id)));

  t0 = process.cpuUsage();
  for (const id of first.keys()) koncorde.remove(id);
  const removeS = cpuSeconds(t0);

  fs.writeFileSync(
    output,
    JSON.stringify({
      first: firstOf,
      matches,
      register_s: registerS,
      test_s: testS,
      test_wall_s: testWallS,
      remove_s: removeS,
      heap_bytes: after.heap - before.heap,
      rss_bytes: after.rss - before.rss,
      distinct: first.size,
    }),
  );
}

main();
