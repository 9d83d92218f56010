// Replay a sequential editing trace through Yjs, doing per edit what rtsim's CrdtReplica
// does through pycrdt (benchmarks/bench_traces.py, rtsim/lab/traces.py::_seq_crdt):
// one transaction per trace transaction (delete, then insert, on one Y.Text), and the
// transaction's Yjs v1 update bytes captured from doc.on('update') (the replica's
// doc.observe). At the end the whole state is encoded and read into a fresh doc.
//
//   node benchmarks/peers/yjs_replay.mjs TRACE.json[.gz] [LIMIT]
//
// Prints one JSON line: cpu_s (process user+system CPU of the replay), wall_s, edits,
// bytes_exchanged, bytes_per_edit, final_doc_bytes, matches_end_content, fresh_matches,
// yjs version. Positions: the trace counts UTF-16 units (josephg/editing-traces), as Y.Text.
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { createRequire } from 'node:module'
import * as Y from 'yjs'

const [path, limitArg] = process.argv.slice(2)
if (!path) {
  console.error('usage: node yjs_replay.mjs TRACE.json[.gz] [LIMIT]')
  process.exit(2)
}
let raw = readFileSync(path)
if (path.endsWith('.gz')) raw = gunzipSync(raw)
const trace = JSON.parse(raw.toString('utf8'))
if (trace.kind === 'concurrent') {
  console.error(`${path} is a concurrent trace; this replays sequential ones`)
  process.exit(2)
}
const txns = limitArg ? trace.txns.slice(0, Number(limitArg)) : trace.txns

const cpu0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
const doc = new Y.Doc()
doc.clientID = 1
const text = doc.getText('text')
let exchanged = 0
let edits = 0
doc.on('update', (u) => { exchanged += u.length })
if (trace.startContent) text.insert(0, trace.startContent)
for (const t of txns) {
  doc.transact(() => {
    for (const [pos, del, ins] of t.patches) {
      if (del) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
      edits++
    }
  })
}
const state = Y.encodeStateAsUpdate(doc)
const check = new Y.Doc()
check.clientID = 2
Y.applyUpdate(check, state)
const wall = Number(process.hrtime.bigint() - t0) / 1e9
const cpu = process.cpuUsage(cpu0)
const out = text.toString()
const require = createRequire(import.meta.url)
console.log(JSON.stringify({
  strategy: 'yjs',
  cpu_s: (cpu.user + cpu.system) / 1e6,
  wall_s: wall,
  edits,
  bytes_exchanged: exchanged,
  bytes_per_edit: exchanged / edits,
  final_doc_bytes: state.length,
  matches_end_content: limitArg ? null : out === trace.endContent,
  fresh_matches: check.getText('text').toString() === out,
  yjs: require('yjs/package.json').version,
  node: process.version
}))
