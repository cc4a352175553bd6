// The sequential editing traces of ../shared/bench-data (josephg/editing-traces format).
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'

/** {startContent, endContent, edits: [[pos, delCount, insText], ...]} */
export function loadTrace (path) {
  let raw
  try {
    raw = JSON.parse(gunzipSync(readFileSync(path)).toString('utf8'))
  } catch (err) {
    throw new Error(`trace ${path} missing or unreadable (see shared/bench-data/README.md): ${err.message}`)
  }
  if (raw.startContent) throw new Error('traces with startContent are not supported')
  const edits = raw.txns.flatMap((txn) => txn.patches)
  return { endContent: raw.endContent, edits }
}

/** The text after the first `count` edits, from the trace alone (no CRDT). */
export function expectedText (trace, count) {
  let text = ''
  for (let i = 0; i < count; i++) {
    const [pos, del, ins] = trace.edits[i]
    text = text.slice(0, pos) + ins + text.slice(pos + del)
  }
  return text
}
