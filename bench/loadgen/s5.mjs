// S5 cold join and memory (called by main.mjs). Two parts, each on a server of its own:
//
// 1. Cold join. A local Y.Doc replays the trace (one transaction per patch); one writer
//    sends it to a fresh document as a few updates of at most `chunkBytes` each (ours
//    refuses updates over 256 KiB by default, the whole automerge-paper doc is ~290 KB), and
//    a checker connection must then sync to exactly that text. In durable mode everybody
//    leaves, the server is restarted (the orchestrator does it, see `restartServer`), so the
//    joins load the document from storage; in memory mode the writer stays connected (an
//    in-memory server drops a document its last client left) and the joins find it loaded.
//    Then `joins` clients connect at the same moment; time-to-synced for each runs from
//    opening its connection to receiving the sync reply (sync step 2, or the join answer
//    on /collab) that brings the document. What each joiner received is then applied to a
//    Y.Doc off the clock (once per distinct reply) and must be exactly the text, else the
//    run is invalid; the generator's CPU stays out of the figure.
// 2. Idle connections, on a restarted (fresh) server: the server's VmRSS with nothing open,
//    then with `docs` documents open (one connection each), then with `connections`
//    connections over those documents (round robin), each held `hold` seconds. Connections
//    are opened at most `connectRate` per second, `connectConcurrency` at a time, one per
//    (client, document) for every protocol, and each is joined (synced) before it counts;
//    both ramps together stop after `rampSeconds` (a server that cannot keep up is measured
//    with what it took, and the step says so in `shortfall`). KiB per idle connection =
//    ΔRSS(second ramp) / connections it opened; KiB per open document = ΔRSS(first ramp) /
//    docs it opened − KiB per connection (the room, without its first client).
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import { procCpuSeconds, procRssKiB, round, roundAll, Samples } from './measure.mjs'

const GENERATOR_CPU_LIMIT = 0.8
// Joins over in less than this are reported with the generator's CPU share but never voided
// by it: a burst of 50 connections keeps one Node core busy for tens of ms whatever the
// server, so a fast server's sub-second times are upper bounds, not invalid.
const JOIN_WINDOW_FOR_CPU_RULE = 1.0
const MAX_CONNECT_FAILURES = 10
const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null
}

function withTimeout (promise, ms, what) {
  let timer
  const limit = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${Math.round(ms / 1000)} s`)), ms)
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

/** One client connection to one document; keeps what it receives only when asked to. */
class Conn {
  constructor (ctx, document, { keep = false, apply = null } = {}) {
    this.ctx = ctx
    this.document = document
    this.keep = keep
    this.apply = apply
    this.updates = []
    this.arrivals = []
    this.acks = []
    this.lost = false
    this.closing = false
  }

  open () {
    const { config, adapter } = this.ctx
    this.t0 = now()
    this.client = adapter({
      url: config.url, document: this.document, token: config.token, handshake: config.handshake !== false,
    }, {
      onUpdate: (update) => {
        if (this.keep) {
          this.updates.push(update)
          this.arrivals.push(now())
        }
        if (this.apply) Y.applyUpdate(this.apply, update)
      },
      onAck: (ok, code) => this.acks.push(ok ? 'ok' : code || 'refused'),
      onClose: () => { if (!this.closing) this.lost = true },
    })
    return this.client.ready.then(() => { this.readyAt = now() })
  }

  close () {
    this.closing = true
    this.client?.close()
  }
}

let stdinLines = null

/** Ask the orchestrator (bench/run.py) to restart the server; it answers the new pid, url, token. */
async function restartServer (config) {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  console.log(JSON.stringify({ restart: true }))
  const { value, done } = await stdinLines.next()
  if (done) throw new Error('the orchestrator closed stdin instead of restarting the server')
  const reply = JSON.parse(value)
  if (!reply.ok) throw new Error(`server restart failed: ${reply.error}`)
  Object.assign(config, { url: reply.url, token: reply.token, serverPid: reply.serverPid })
}

/** The trace's first `count` patches as a few updates of at most `chunkBytes` each. */
function buildSeed (trace, count, chunkBytes) {
  const doc = new Y.Doc()
  const text = doc.getText('body')
  const diffs = []
  let sv = new Uint8Array([0])
  const every = 5000
  for (let i = 0; i < count; i++) {
    const [pos, del, ins] = trace.edits[i]
    doc.transact(() => {
      if (del) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    })
    if ((i + 1) % every === 0 || i + 1 === count) {
      diffs.push(Y.encodeStateAsUpdate(doc, sv))
      sv = Y.encodeStateVector(doc)
    }
  }
  const chunks = []
  let current = null
  for (const diff of diffs) {
    if (diff.length > chunkBytes) throw new Error(`${every} patches make an update of ${diff.length} bytes > chunkBytes ${chunkBytes}`)
    const merged = current && Y.mergeUpdates([current, diff])
    if (merged && merged.length <= chunkBytes) current = merged
    else {
      if (current) chunks.push(current)
      current = diff
    }
  }
  if (current) chunks.push(current)
  const want = text.toString()
  if (count === trace.edits.length && want !== trace.endContent) throw new Error('the replayed trace does not end with its endContent')
  return { chunks, want, bytes: Y.encodeStateAsUpdate(doc).length }
}

/**
 * When each joiner first held exactly `want` (null: never): the arrival of the update that
 * completed it, and not before its sync reply. The first update (the reply, nearly always the
 * whole document) is judged once per distinct content; other joiners replay what they got.
 */
function syncedTimes (joiners, want, verdicts) {
  const exact = (text) => text.length === want.length && text.toString() === want
  return joiners.map((joiner) => {
    if (joiner.readyAt === undefined || !joiner.updates.length) return null
    const key = createHash('sha1').update(joiner.updates[0]).digest('hex')
    if (!verdicts.has(key)) {
      const doc = new Y.Doc()
      Y.applyUpdate(doc, joiner.updates[0])
      verdicts.set(key, exact(doc.getText('body')))
    }
    if (verdicts.get(key)) return Math.max(joiner.readyAt, joiner.arrivals[0])
    const doc = new Y.Doc()
    for (const [i, update] of joiner.updates.entries()) {
      Y.applyUpdate(doc, update)
      if (exact(doc.getText('body'))) return Math.max(joiner.readyAt, joiner.arrivals[i])
    }
    return null
  })
}

async function coldJoin (p, ctx) {
  const { config, trace } = ctx
  const cold = config.mode === 'durable'
  const count = p.patches ? Math.min(p.patches, trace.edits.length) : trace.edits.length
  const seed = buildSeed(trace, count, p.chunkBytes)
  const document = ctx.docName('cold')
  const writer = new Conn(ctx, document)
  await withTimeout(writer.open(), 30000, 'the writer did not sync')
  for (const chunk of seed.chunks) writer.client.send(chunk)
  // The server has the document once a fresh connection syncs to exactly its text.
  const checkDoc = new Y.Doc()
  const checker = new Conn(ctx, document, { apply: checkDoc })
  await withTimeout(checker.open(), 60000, 'the checker did not sync')
  const deadline = now() + 60000
  const checkText = checkDoc.getText('body')
  while (now() < deadline && !(checkText.length === seed.want.length && checkText.toString() === seed.want)) {
    if (writer.acks.some((a) => a !== 'ok')) break
    await sleep(50)
  }
  const refused = writer.acks.filter((a) => a !== 'ok')
  if (refused.length) throw new Error(`the server refused the seed: ${refused.join(', ')}`)
  if (checkText.toString() !== seed.want) throw new Error(`seeding: a fresh connection holds ${checkText.length} chars, expected ${seed.want.length}`)
  checker.close()
  if (cold) {
    writer.close()
    await sleep(p.settle * 1000) // debounced stores (Hocuspocus) write once the last client left
    await restartServer(config)
  }

  const pid = config.serverPid
  await sleep(500)
  const rssBefore = procRssKiB(pid)
  const server0 = procCpuSeconds(pid)
  const cpu0 = process.cpuUsage()
  const t0 = now()
  const joiners = Array.from({ length: p.joins }, () => new Conn(ctx, document, { keep: true }))
  const outcomes = await Promise.allSettled(joiners.map((j) => withTimeout(j.open(), p.joinTimeout * 1000, 'no sync reply')))
  const replied = joiners.filter((j) => j.readyAt !== undefined)
  const tReplied = replied.length ? Math.max(...replied.map((j) => j.readyAt)) : now()
  const cpu = process.cpuUsage(cpu0)
  // A server may answer before it has loaded the document and send the rest after: wait for
  // the rest (until the join timeout), checking off the generator's clock.
  const verdicts = new Map()
  let synced = syncedTimes(joiners, seed.want, verdicts)
  const joinDeadline = t0 + p.joinTimeout * 1000
  await sleep(1000)
  while (synced.some((t, i) => t === null && joiners[i].readyAt !== undefined) && now() < joinDeadline) {
    await sleep(500)
    synced = syncedTimes(joiners, seed.want, verdicts)
  }
  const serverCpu = procCpuSeconds(pid) - server0
  const done = synced.filter((t) => t !== null)
  const t1 = done.length ? Math.max(...done) : tReplied
  const seconds = Math.max(t1 - t0, 1) / 1000
  const replySeconds = Math.max(tReplied - t0, 1) / 1000
  const generatorCpu = (cpu.user + cpu.system) / 1e6 / replySeconds
  const times = new Samples()
  for (const [i, t] of synced.entries()) if (t !== null) times.push(t - joiners[i].t0)
  const rssAfter = procRssKiB(pid)
  for (const joiner of joiners) joiner.close()
  writer.close()

  const problems = []
  const failed = outcomes.filter((o) => o.status === 'rejected')
  if (failed.length) problems.push(`join: ${failed.length} of ${p.joins} joins failed (${failed[0].reason?.message || failed[0].reason})`)
  const inexact = synced.filter((t, i) => t === null && joiners[i].readyAt !== undefined).length
  if (inexact) problems.push(`join: ${inexact} joiners never held the exact text within ${p.joinTimeout} s`)
  const generatorBound = generatorCpu > GENERATOR_CPU_LIMIT
  if (generatorBound && replySeconds >= JOIN_WINDOW_FOR_CPU_RULE) problems.push(`join: generator at ${Math.round(generatorCpu * 100)}% CPU (limit 80%)`)
  return {
    part: 'join',
    cold,
    joins: p.joins,
    synced: done.length,
    patches: count,
    text_chars: seed.want.length,
    doc_bytes: seed.bytes,
    seed_updates: seed.chunks.length,
    time_to_synced_ms: roundAll(times.percentiles()),
    reply_bytes: median(replied.map((j) => j.updates[0]?.length ?? 0)),
    completed_later: synced.filter((t, i) => t !== null && t > joiners[i].readyAt).length,
    distinct_replies: verdicts.size,
    exact: done.length === p.joins,
    seconds: round(seconds, 3),
    server_cpu_seconds: round(serverCpu, 3),
    server_cpu: round(serverCpu / seconds, 3),
    generator_cpu: round(generatorCpu, 3),
    generator_bound: generatorBound,
    rss_before_mib: round(rssBefore / 1024, 1),
    rss_after_mib: round(rssAfter / 1024, 1),
    valid: problems.length === 0,
    invalid: problems.join('; ') || undefined,
    problems,
  }
}

/** Hold `seconds`, sampling the server's VmRSS every 250 ms: median RSS and server CPU share. */
async function hold (pid, seconds) {
  const samples = []
  const server0 = procCpuSeconds(pid)
  const t0 = now()
  const end = t0 + seconds * 1000
  while (now() < end) {
    samples.push(procRssKiB(pid))
    await sleep(Math.min(250, Math.max(1, end - now())))
  }
  const elapsed = (now() - t0) / 1000
  return { rssKiB: median(samples), serverCpu: (procCpuSeconds(pid) - server0) / elapsed }
}

/** Open `conns` at most `rate` per second, `concurrency` at a time; stops after a few
 * failures or at `deadline` (a server that cannot keep up gets the connections it took). */
async function ramp (conns, rate, concurrency, timeoutMs, deadline) {
  const start = now()
  const failures = []
  let next = 0
  async function worker () {
    while (next < conns.length && failures.length < MAX_CONNECT_FAILURES && now() < deadline) {
      const i = next++
      const wait = start + i * 1000 / rate - now()
      if (wait > 0) await sleep(wait)
      try {
        await withTimeout(conns[i].open(), timeoutMs, 'not synced')
      } catch (err) {
        failures.push(String(err?.message || err))
        conns[i].close()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, conns.length) }, worker))
  const seconds = (now() - start) / 1000
  const opened = conns.filter((c) => c.readyAt !== undefined).length
  return { seconds, opened, perSecond: opened / seconds, failures }
}

async function idleConnections (p, ctx) {
  const { config } = ctx
  const pid = config.serverPid
  const docs = Math.max(1, Math.min(p.docs, p.connections))
  const timeoutMs = 30000
  await sleep(1000) // the fresh server settles
  const base = await hold(pid, p.hold)
  const deadline = now() + p.rampSeconds * 1000
  const first = Array.from({ length: docs }, (_, d) => new Conn(ctx, ctx.docName(`idle-${d}`)))
  const rampDocs = await ramp(first, p.connectRate, p.connectConcurrency, timeoutMs, deadline)
  const withDocs = await hold(pid, p.hold)
  const more = Array.from({ length: p.connections - docs }, (_, i) => new Conn(ctx, ctx.docName(`idle-${i % docs}`)))
  const rampMore = await ramp(more, p.connectRate, p.connectConcurrency, timeoutMs,
    rampDocs.failures.length ? 0 : deadline)
  const withConns = more.length ? await hold(pid, p.hold) : withDocs
  const all = [...first, ...more]
  const open = all.filter((c) => c.readyAt !== undefined && !c.lost).length
  const lost = all.filter((c) => c.lost && c.readyAt !== undefined).length
  for (const conn of all) conn.close()

  // Slopes over what the server actually took (a saturated server takes fewer in the time).
  const perConn = rampMore.opened ? (withConns.rssKiB - withDocs.rssKiB) / rampMore.opened : null
  const perDoc = rampDocs.opened ? (withDocs.rssKiB - base.rssKiB) / rampDocs.opened - (perConn ?? 0) : null
  const problems = []
  if (!rampDocs.opened || (more.length && !rampMore.opened)) problems.push('idle: no connection could be opened')
  const failures = [...rampDocs.failures, ...rampMore.failures]
  const shortfall = []
  if (open < p.connections) shortfall.push(`${open} of ${p.connections} connections held`)
  if (failures.length) shortfall.push(`${failures.length} failed (${failures[0]})`)
  else if (rampDocs.opened + rampMore.opened < p.connections) shortfall.push(`ramp stopped after ${p.rampSeconds} s`)
  if (lost) shortfall.push(`the server closed ${lost} idle connections`)
  return {
    part: 'idle',
    docs,
    connections: p.connections,
    opened_docs: rampDocs.opened,
    opened_more: rampMore.opened,
    open,
    lost,
    shortfall: shortfall.join('; ') || undefined,
    rss_base_mib: round(base.rssKiB / 1024, 1),
    rss_docs_mib: round(withDocs.rssKiB / 1024, 1),
    rss_connections_mib: round(withConns.rssKiB / 1024, 1),
    kib_per_connection: round(perConn, 2),
    kib_per_doc: round(perDoc, 2),
    server_cpu_base: round(base.serverCpu, 3),
    server_cpu_docs: round(withDocs.serverCpu, 3),
    server_cpu_idle: round(withConns.serverCpu, 3),
    connects_per_s_docs: round(rampDocs.perSecond, 1),
    connects_per_s_more: round(rampMore.perSecond, 1),
    ramp_seconds: round(rampDocs.seconds + rampMore.seconds, 1),
    valid: problems.length === 0,
    invalid: problems.join('; ') || undefined,
    problems,
  }
}

/** S5: {patches, chunkBytes, joins, joinTimeout, settle, docs, connections, hold, connectRate,
 * connectConcurrency, rampSeconds}; `patches` 0 = the whole trace. */
export async function s5 (p, ctx) {
  const steps = []
  if (ctx.config.handshake === false) {
    steps.push({ part: 'join', na: 'the relay floor keeps no document: it cannot serve a sync', valid: true, problems: [] })
  } else {
    steps.push(await coldJoin(p, ctx))
    await restartServer(ctx.config) // the memory part starts on a fresh server
  }
  steps.push(await idleConnections(p, ctx))
  const invalid = steps.flatMap((s) => s.problems)
  for (const step of steps) delete step.problems
  return { steps, witnessFailures: [], invalid }
}
