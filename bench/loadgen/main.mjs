// The load generator: one process, one monotonic clock, one scenario against one server.
//
//   node loadgen/main.mjs '<json config>'    prints one JSON line with the steps measured
//
// Config: {scenario: "s1"|…|"s5", adapter, url, token, serverPid, handshake, mode, trace,
// params: {...}} (see SCENARIOS below for each scenario's params; S5 lives in s5.mjs and may
// print {"restart": true} and read the restarted server's {ok, url, token, serverPid} on stdin). Editors type one
// character per update into a private Y.Doc (valid updates, no CRDT work for what they
// receive); a few witnesses hold the whole document and must end with exactly the expected
// text (the merge of every editor's doc; in S4 the trace's text), else the run is invalid.
// An update is identified on arrival by its client id and clock (Y.parseUpdateMeta): the
// clock is the sender's sequence number, so a missing clock is a drop.
import { performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import { ADAPTERS } from './adapters.mjs'
import { Step } from './measure.mjs'
import { loadTrace, expectedText } from './trace.mjs'
import { s5 } from './s5.mjs'

const REMOTE = Symbol('remote')
const CONNECT_CONCURRENCY = 25
const GENERATOR_CPU_LIMIT = 0.8
const P99_LIMIT_MS = 100
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const now = () => performance.now()

const config = JSON.parse(process.argv[2])
const adapter = ADAPTERS[config.adapter]
const senders = new Map() // clientID -> editor
let step = null
let trace = null

class Editor {
  constructor (document, witness) {
    this.document = document
    this.witness = witness
    this.doc = new Y.Doc()
    this.id = this.doc.clientID
    this.text = this.doc.getText('body')
    this.sentAt = new Float64Array(1024)
    this.seen = new Map() // sender id -> Uint8Array bitmap of clocks seen
    this.acks = []
    senders.set(this.id, this)
    this.doc.on('update', (update, origin) => {
      if (origin === REMOTE) return
      this.client.send(update)
      if (step) step.sent++
      this.acks.push(now())
    })
  }

  async connect () {
    this.client = adapter({ url: config.url, document: this.document, token: config.token, handshake: config.handshake !== false }, {
      onUpdate: (update) => this.received(update),
      onAck: (ok, code) => this.acked(ok, code),
      onClose: () => { this.closedAt ??= now() },
    })
    await this.client.ready
    this.readyAt = now()
  }

  clock () { return Y.getState(this.doc.store, this.id) }

  stamp (clock, length) {
    while (clock + length > this.sentAt.length) {
      const bigger = new Float64Array(this.sentAt.length * 2)
      bigger.set(this.sentAt)
      this.sentAt = bigger
    }
    const t = now()
    for (let c = clock; c < clock + length; c++) this.sentAt[c] = t
  }

  type (char) {
    this.stamp(this.clock(), 1)
    this.text.insert(this.text.length, char)
  }

  received (update) {
    if (this.witness) Y.applyUpdate(this.doc, update, REMOTE)
    const t = now()
    const meta = Y.parseUpdateMeta(update)
    for (const [client, to] of meta.to) {
      const sender = senders.get(client)
      if (client === this.id || !sender) continue
      let bits = this.seen.get(client)
      if (!bits || bits.length * 8 < to) {
        const bigger = new Uint8Array(Math.max(1024, to / 4))
        if (bits) bigger.set(bits)
        this.seen.set(client, (bits = bigger))
      }
      for (let c = meta.from.get(client); c < to; c++) {
        if (bits[c >> 3] & (1 << (c & 7))) continue
        bits[c >> 3] |= 1 << (c & 7)
        const sentAt = sender.sentAt[c]
        if (step && sentAt >= step.t0 && sentAt <= step.t1 && sentAt >= this.readyAt) {
          step.latency.push(t - sentAt)
          step.deliveries++
        }
      }
    }
  }

  acked (ok, code) {
    const sentAt = this.acks.shift()
    if (!step) return
    if (!ok) step.ackErrors[code || 'refused'] = (step.ackErrors[code || 'refused'] || 0) + 1
    else if (sentAt >= step.t0 && sentAt <= step.t1) step.ackLatency.push(now() - sentAt)
  }

  /** Clocks of `sender` sent in [from, to] that this editor has not seen. */
  missing (sender, from, to) {
    const bits = this.seen.get(sender.id)
    let count = 0
    const end = sender.clock()
    for (let c = 0; c < end; c++) {
      const t = sender.sentAt[c]
      if (t < from || t > to) continue
      if (!bits || !(bits[c >> 3] & (1 << (c & 7)))) count++
    }
    return count
  }
}

async function connectAll (editors) {
  for (let i = 0; i < editors.length; i += CONNECT_CONCURRENCY) {
    await Promise.all(editors.slice(i, i + CONNECT_CONCURRENCY).map((e) => e.connect()))
  }
}

function newDocument (name, editors, witnesses) {
  return Array.from({ length: editors }, (_, i) => new Editor(name, i < witnesses))
}

/** Types `rate` chars/s per editor with random phases, until stopped. */
class Typist {
  constructor (rate, text) {
    this.period = 1000 / rate
    this.text = text
    this.editors = []
    this.timer = setInterval(() => this.tick(), 2)
  }

  add (editors) {
    const t = now()
    for (const editor of editors) {
      editor.nextAt = t + Math.random() * this.period
      editor.charAt = Math.floor(Math.random() * this.text.length)
      this.editors.push(editor)
    }
  }

  tick () {
    const t = now()
    for (const editor of this.editors) {
      if (editor.closedAt) continue // the server closed it (S3: a slow consumer)
      while (editor.nextAt <= t) {
        editor.type(this.text[editor.charAt++ % this.text.length])
        editor.nextAt += this.period
      }
    }
  }

  stop () { clearInterval(this.timer) }
}

/** Measure `seconds` of traffic; then wait `grace` and count what never arrived. */
async function measure (seconds, groups, extra, grace = config.params.grace ?? 2) {
  step = new Step(config.serverPid)
  step.t1 = Infinity
  step.start()
  await sleep(seconds * 1000)
  step.t1 = now()
  step.stop()
  await sleep(grace * 1000)
  const window = [step.t0, step.t1]
  const report = step.report({ ...extra, drops: missingIn(groups, window) })
  report.recount = () => { report.lost = missingIn(groups, window) }
  report.valid = report.generator_cpu <= GENERATOR_CPU_LIMIT
  if (!report.valid) report.invalid = `generator at ${Math.round(report.generator_cpu * 100)}% CPU (limit 80%)`
  return report
}

/** Updates sent in the window that some peer of the document has not received. */
function missingIn (groups, [from, to]) {
  let missing = 0
  for (const editors of groups) {
    for (const receiver of editors) {
      for (const sender of editors) {
        if (sender !== receiver) missing += receiver.missing(sender, Math.max(from, receiver.readyAt), to)
      }
    }
  }
  return missing
}

/** Every witness must hold exactly the merge of its document's editors. */
function checkWitnesses (groups) {
  const failures = []
  for (const editors of groups) {
    const reference = new Y.Doc()
    for (const editor of editors) Y.applyUpdate(reference, Y.encodeStateAsUpdate(editor.doc))
    const want = reference.getText('body').toString()
    for (const witness of editors.filter((e) => e.witness)) {
      const got = witness.text.toString()
      if (got !== want) failures.push(`${witness.document}: witness has ${got.length} chars, expected ${want.length}`)
    }
  }
  return failures
}

async function settle (groups, seconds) {
  const deadline = now() + seconds * 1000
  while (now() < deadline && checkWitnesses(groups).length) await sleep(100)
  return checkWitnesses(groups)
}

/** A step that could not be measured because the room was already past its limit. */
function unmeasured (editors, why, generatorCpu) {
  const none = { p50: null, p99: null, p999: null, max: null, count: 0 }
  return {
    editors, valid: true, overloaded: why, generator_cpu: generatorCpu,
    drops: 0, lost: 0, sent: 0, deliveries: 0,
    latency_ms: none, ack_latency_ms: none, server_cpu_us_per_delivery: null,
    server_cpu_us_per_recipient: null, closed_by_server: 0,
  }
}

/** Why a search step is past the limit, or null. */
function overload (report) {
  if (!report.valid) return report.invalid
  if (report.closed_by_server) return `the server closed ${report.closed_by_server} connections`
  if (report.drops > 0) return `${report.drops} updates not delivered within the grace`
  if (report.latency_ms.p99 > P99_LIMIT_MS) return `p99 ${report.latency_ms.p99.toFixed(1)} ms > ${P99_LIMIT_MS} ms`
  return null
}

/**
 * S3's convergence check when the server may have closed some editors (slow consumers):
 * every witness still connected holds every update of every editor still connected, and
 * they all hold the same text. Without closures this is the usual exact check.
 */
function survivorFailures (editors) {
  const open = editors.filter((e) => !e.closedAt)
  if (open.length === editors.length) return checkWitnesses([editors])
  const witnesses = open.filter((e) => e.witness)
  const failures = []
  for (const witness of witnesses) {
    const held = Y.decodeStateVector(Y.encodeStateVector(witness.doc))
    const short = open.filter((e) => (held.get(e.id) ?? 0) < e.clock()).length
    if (short) failures.push(`${witness.document}: witness lacks updates of ${short} connected editors`)
  }
  const texts = new Set(witnesses.map((w) => w.text.toString()))
  if (texts.size > 1) failures.push(`${texts.size} different texts among the connected witnesses`)
  if (!witnesses.length) failures.push('the server closed every witness')
  return failures
}

async function settleSurvivors (editors, seconds) {
  const deadline = now() + seconds * 1000
  while (now() < deadline && survivorFailures(editors).length) await sleep(100)
  return survivorFailures(editors)
}

function docName (n) { return `${config.prefix}-${n}` }

const SCENARIOS = {
  // S1 steady fan-out: {docs, editors, rate, seconds, warmup, witnesses}
  async s1 (p) {
    const groups = Array.from({ length: p.docs }, (_, d) => newDocument(docName(d), p.editors, d < p.witnesses ? 1 : 0))
    await connectAll(groups.flat())
    const typist = new Typist(p.rate, trace.endContent)
    typist.add(groups.flat())
    await sleep(p.warmup * 1000)
    const steps = [await measure(p.seconds, groups, { editors: p.docs * p.editors })]
    typist.stop()
    return { steps, witnessFailures: await settle(groups, 10) }
  },

  // S2 capacity knee: {docs, editors, rate, growth, seconds, warmup, maxDocs, witnesses}
  async s2 (p) {
    const groups = []
    const typist = new Typist(p.rate, trace.endContent)
    const steps = []
    let docs = p.docs
    while (docs <= p.maxDocs) {
      const added = []
      for (let d = groups.length; d < docs; d++) {
        const group = newDocument(docName(d), p.editors, d < p.witnesses ? 1 : 0)
        groups.push(group)
        added.push(...group)
      }
      await connectAll(added)
      typist.add(added)
      await sleep(p.warmup * 1000)
      const report = await measure(p.seconds, groups, { docs, editors: docs * p.editors })
      steps.push(report)
      if (!report.valid || report.drops > 0 || report.latency_ms.p99 > P99_LIMIT_MS) break
      docs = Math.ceil(docs * p.growth)
    }
    typist.stop()
    return { steps, witnessFailures: await settle(groups, 10) }
  },

  // S3 hot document: {sizes: [2, 5, ...], rate, seconds, warmup, witnesses}
  async s3 (p) {
    const editors = []
    const typist = new Typist(p.rate, trace.endContent)
    const steps = []
    for (const size of p.sizes) {
      const added = []
      while (editors.length < size) {
        const editor = new Editor(docName(0), editors.length < p.witnesses)
        editors.push(editor)
        added.push(editor)
      }
      const [joinCpu, joinStart] = [process.cpuUsage(), now()]
      try {
        await connectAll(added)
      } catch (err) {
        // The server closed joiners before they synced (a slow consumer, 1013 on `/ws`):
        // this room size is past its limit. Nothing was measured at it but the generator.
        const used = process.cpuUsage(joinCpu)
        const generatorCpu = (used.user + used.system) / 1000 / Math.max(1, now() - joinStart)
        steps.push(unmeasured(size, `joining failed: ${err.message}`, generatorCpu))
        break
      }
      typist.add(added)
      await sleep(p.warmup * 1000)
      const report = await measure(p.seconds, [editors], { editors: size })
      report.server_cpu_us_per_recipient = report.server_cpu_us_per_delivery
      report.closed_by_server = editors.filter((e) => e.closedAt).length
      steps.push(report)
      // The room is past what the server (or the generator) can carry: later sizes would
      // only be worse, so the search ends here, as S2's does; the step says why.
      const overloaded = overload(report)
      if (overloaded) {
        report.overloaded = overloaded
        break
      }
    }
    typist.stop()
    return { steps, witnessFailures: await settleSurvivors(editors, 10) }
  },

  // S4 trace replay: {rates: [...], seconds, all} - a fresh document per rate.
  async s4 (p) {
    const steps = []
    const witnessFailures = []
    for (const [i, rate] of p.rates.entries()) {
      const [writer, reader] = [new Editor(docName(i), false), new Editor(docName(i), true)]
      await connectAll([writer, reader])
      const count = p.all ? trace.edits.length : Math.min(trace.edits.length, Math.round(rate * p.seconds))
      step = new Step(config.serverPid)
      step.t1 = Infinity
      step.start()
      let sent = 0
      await new Promise((resolve) => {
        const timer = setInterval(() => {
          const due = Math.min(count, Math.floor((now() - step.t0) * rate / 1000))
          for (; sent < due; sent++) {
            const [pos, del, ins] = trace.edits[sent]
            writer.stamp(writer.clock(), ins.length)
            writer.doc.transact(() => {
              if (del) writer.text.delete(pos, del)
              if (ins) writer.text.insert(pos, ins)
            })
          }
          if (sent === count) { clearInterval(timer); resolve() }
        }, 2)
      })
      step.t1 = now()
      step.stop()
      const want = count === trace.edits.length ? trace.endContent : expectedText(trace, count)
      const deadline = now() + 15000
      while (now() < deadline && reader.text.length !== want.length) await sleep(50)
      await sleep(200)
      const report = step.report({ rate, edits: count, drops: reader.missing(writer, step.t0, step.t1) })
      report.exact = reader.text.toString() === want
      if (!report.exact) witnessFailures.push(`rate ${rate}: reader has ${reader.text.length} chars, trace says ${want.length}`)
      report.valid = report.generator_cpu <= GENERATOR_CPU_LIMIT
      if (!report.valid) report.invalid = `generator at ${Math.round(report.generator_cpu * 100)}% CPU (limit 80%)`
      report.sustained = report.valid && report.exact && report.drops === 0 && report.latency_ms.p99 < P99_LIMIT_MS
      steps.push(report)
      writer.client.close()
      reader.client.close()
      if (!report.sustained) break
    }
    return { steps, witnessFailures }
  },

  // S5 cold join and memory: see s5.mjs.
  s5: (p) => s5(p, { config, adapter, trace, docName }),
}

async function main () {
  trace = await loadTrace(config.trace)
  const started = now()
  const result = await SCENARIOS[config.scenario](config.params)
  // `drops`: not received within the grace after the step; `lost`: never, once traffic stopped.
  for (const report of result.steps) {
    report.recount?.()
    delete report.recount
  }
  // S1 is one step: a saturated generator voids it. The others search for a limit: a
  // saturated step ends the search (and is marked), the steps before it stand.
  const invalid = config.scenario === 's1' ? result.steps.filter((s) => !s.valid).map((s) => s.invalid) : []
  if (result.invalid) invalid.push(...result.invalid)
  if (result.witnessFailures.length) invalid.push(...result.witnessFailures.map((f) => `witness: ${f}`))
  console.log(JSON.stringify({
    ok: true, scenario: config.scenario, valid: invalid.length === 0, invalid,
    seconds: Math.round((now() - started) / 100) / 10, steps: result.steps,
  }))
  process.exit(0)
}

const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `timed out after ${config.timeoutSeconds} s` }))
  process.exit(1)
}, (config.timeoutSeconds || 600) * 1000)
watchdog.unref()

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack || err) }))
  process.exit(1)
})
