// Co-edit one realtime_cms document from Node with real npm Yjs providers, concurrently:
//
//   collab     static/collab-provider.js over the `/collab` Socket.IO namespace
//   ywebsocket y-websocket's WebsocketProvider on ws://HOST/ws/<document>?token=...
//   ysocketio  y-socket.io's SocketIOProvider on the namespace `/yjs|<document>`
//
// Each client has its own Y.Doc (no BroadcastChannel shortcut between them: everything goes
// through the server), inserts --words distinct words at random word boundaries of the
// Y.Text "body" with small random delays, then waits until every client holds the same
// text with --expect-total words (other writers, e.g. a Python client, may add theirs) and
// that text stays unchanged for a moment. Prints one JSON line and exits 0; on an error or
// timeout prints a JSON line with `ok: false` and exits 1.
//
//   node coedit.mjs --url http://127.0.0.1:8080 --document notes:demo --token TOKEN \
//     [--collab-token T] [--ws-token T] [--sio-token T] [--clients collab,ywebsocket,ysocketio]
//     [--words 50] [--expect-total N] [--seed N] [--timeout-ms 30000] [--awareness on|off]
//   node coedit.mjs --mode read-only --url ... --document ... --token VIEWER_TOKEN
//   node coedit.mjs --mode gap --url ... --document ... --token T [--answer-sync on|off]
//
// Every option can also be given as an environment variable: --ws-token is COEDIT_WS_TOKEN.
// --mode read-only joins with the collab provider only, tries one edit and reports the role,
// the text it received and the error codes the server answered.

import * as Y from 'yjs'
import { io } from 'socket.io-client'
import * as awarenessProtocol from 'y-protocols/awareness'
import { CollabProvider } from '../../static/collab-provider.js'

const started = Date.now()
const clients = []
let options, url, documentId, timeoutMs, random, deadline

async function coedit () {
  const names = (options.clients || 'collab,ywebsocket,ysocketio').split(',').filter(Boolean)
  for (const name of names) clients.push(await FACTORIES[name](tokenFor(name)))
  await Promise.all(clients.map((client) => client.synced))
  const words = Number(options.words || 50)
  const expectTotal = Number(options['expect-total'] || words * clients.length)
  await Promise.all(clients.map((client) => insertWords(client, words)))
  await until(() => {
    const texts = clients.map((client) => client.text.toString())
    return texts.every((text) => text === texts[0]) && wordsOf(texts[0]).length === expectTotal &&
      clients.every((client) => client.settled())
  }, 'all clients equal with every word', 300)
  // Awareness is best effort here: wait a little for every client to see every other.
  if (options.awareness !== 'off') {
    await until(() => clients.every((c) => awarenessNames(c).length >= clients.length), 'awareness', 0, 3000)
      .catch(() => {})
  }
  finish({
    ok: true,
    seed: options.seed,
    texts: Object.fromEntries(clients.map((c) => [c.name, c.text.toString()])),
    inserted: Object.fromEntries(clients.map((c) => [c.name, c.inserted])),
    awareness: Object.fromEntries(clients.map((c) => [c.name, awarenessNames(c)])),
    errors: Object.fromEntries(clients.map((c) => [c.name, c.errors])),
  }, 0)
}

async function readOnly () {
  const client = await FACTORIES.collab(tokenFor('collab'))
  clients.push(client)
  const refused = once(client.provider, 'error', () => true)
  if (await Promise.race([client.synced, refused.then(() => false)]) === false) {
    return finish({ ok: false, error: 'join refused', errors: client.errors }, 1)
  }
  const received = client.text.toString()
  client.doc.transact(() => client.text.insert(0, 'forbidden '))
  await until(() => client.errors.length > 0 && client.provider.pendingAcks === 0, 'an error ack')
  finish({ ok: true, role: client.provider.role, received, errors: client.errors }, 0)
}

// --mode gap: the collab provider keeps one edit to itself (applied with the provider as
// origin, as if the server had sent it), then types --words words after it, each depending
// on that edit. The server must hold them, ask for what it lacks (its `sync` event) and ack
// them once integrated; with --answer-sync off the provider ignores that request, the ack
// deadline answers `missing_dependencies`, and the provider's own sync rounds must save
// them. Reports the text, the words and the error codes once every change is saved.
async function gap () {
  const client = await FACTORIES.collab(tokenFor('collab'))
  clients.push(client)
  await client.synced
  const { provider, doc, text } = client
  if (options['answer-sync'] === 'off') provider.socket.off('sync', provider._handlers.sync)
  const hidden = `hidden${Math.floor(random() * 1e6)}`
  doc.transact(() => text.insert(text.length, `${hidden} `), provider)
  let sawNotSaved = false
  provider.on('pending', () => { sawNotSaved ||= provider.notSaved })
  const words = Number(options.words || 5)
  for (let i = 0; i < words; i++) {
    const word = `after${i}x${Math.floor(random() * 1e6)}`
    text.insert(text.length, `${word} `)
    client.inserted.push(word)
    await sleep(10)
  }
  await until(() => provider.pendingAcks === 0 && !provider.notSaved, 'every change saved')
  finish({ ok: true, hidden, words: client.inserted, text: text.toString(), errors: client.errors, saw_not_saved: sawNotSaved }, 0)
}

// --- the three clients -------------------------------------------------------------------

const FACTORIES = {
  async collab (token) {
    const client = newClient('collab')
    const provider = new CollabProvider({
      url, token, documentId, doc: client.doc, Y, io, awareness: client.awareness, awarenessProtocol,
      ackTimeout: 10000,
    })
    provider.on('error', (err) => client.errors.push(err.code))
    client.synced = once(provider, 'synced', (synced) => synced)
    client.settled = () => provider.pendingAcks === 0
    client.provider = provider
    client.destroy = () => provider.destroy()
    provider.connect()
    return client
  },

  async ywebsocket (token) {
    const { WebsocketProvider } = await import('y-websocket')
    const { default: WebSocket } = await import('ws')
    const client = newClient('ywebsocket')
    const provider = new WebsocketProvider(url.replace(/^http/, 'ws') + '/ws', documentId, client.doc, {
      params: { token }, WebSocketPolyfill: WebSocket, awareness: client.awareness, disableBc: true,
    })
    provider.on('connection-error', (event) => client.errors.push(`connection-error: ${event?.message || event?.type}`))
    provider.on('connection-close', (event) => { if (event) client.errors.push(`connection-close: ${event.code} ${event.reason}`) })
    client.synced = once(provider, 'synced', (synced) => synced)
    client.destroy = () => provider.destroy()
    return client
  },

  async ysocketio (token) {
    const { SocketIOProvider } = await import('y-socket.io')
    const client = newClient('ysocketio')
    const provider = new SocketIOProvider(url, documentId, client.doc, {
      auth: { token }, awareness: client.awareness, disableBc: true,
    })
    provider.on('connection-error', (err) => client.errors.push(`connection-error: ${err?.message}`))
    provider.on('connection-close', (reason) => client.errors.push(`connection-close: ${reason}`))
    client.synced = once(provider, 'synced', (synced) => synced)
    client.destroy = () => provider.destroy()
    return client
  },
}

function newClient (name) {
  const doc = new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  // With --awareness off no client publishes a state (isolates document sync from awareness).
  awareness.setLocalState(options.awareness === 'off' ? null : { user: { name } })
  return { name, doc, awareness, text: doc.getText('body'), inserted: [], errors: [], settled: () => true }
}

function tokenFor (name) {
  const own = { collab: 'collab-token', ywebsocket: 'ws-token', ysocketio: 'sio-token' }[name]
  const token = options[own] || options.token
  if (!token) throw new Error(`no token for ${name}: pass --${own} or --token`)
  return token
}

// --- editing -------------------------------------------------------------------------------

async function insertWords (client, count) {
  for (let i = 0; i < count; i++) {
    await sleep(random() * 20)
    const word = `${client.name}${i}x${Math.floor(random() * 1e6)}`
    const text = client.text.toString()
    // Word boundaries only (the start, or just after a space), so no word is split.
    const boundaries = [0]
    for (let at = 0; at < text.length; at++) if (text[at] === ' ') boundaries.push(at + 1)
    client.text.insert(boundaries[Math.floor(random() * boundaries.length)], `${word} `)
    client.inserted.push(word)
  }
}

function wordsOf (text) {
  return text.split(/\s+/).filter(Boolean)
}

function awarenessNames (client) {
  return [...client.awareness.getStates().values()].map((state) => state?.user?.name).filter(Boolean).sort()
}

// --- plumbing ------------------------------------------------------------------------------

function finish (result, code) {
  clearTimeout(deadline)
  if (code !== 0) {
    result.texts = Object.fromEntries(clients.map((c) => [c.name, c.text.toString()]))
    result.errors = Object.fromEntries(clients.map((c) => [c.name, c.errors]))
  }
  result.elapsed_ms = Date.now() - started
  process.stdout.write(JSON.stringify(result) + '\n')
  for (const client of clients) {
    try { client.destroy?.() } catch {}
  }
  // Give the leave/close frames a moment, then exit even if a socket lingers.
  setTimeout(() => process.exit(code), 100)
}

function once (emitter, event, accept) {
  return new Promise((resolve) => {
    const listener = (value) => {
      if (!accept(value)) return
      emitter.off(event, listener)
      resolve(value)
    }
    emitter.on(event, listener)
  })
}

async function until (check, what, stableMs = 0, within = timeoutMs) {
  const end = Date.now() + within
  let since = null
  while (Date.now() < end) {
    if (check()) {
      since ??= Date.now()
      if (Date.now() - since >= stableMs) return
    } else {
      since = null
    }
    await sleep(20)
  }
  throw new Error(`not reached in time: ${what}`)
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function mulberry32 (seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function parseOptions (argv) {
  const parsed = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('COEDIT_')) parsed[key.slice(7).toLowerCase().replaceAll('_', '-')] = value
  }
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`)
    parsed[argv[i].slice(2)] = argv[++i]
  }
  return parsed
}

function required (name) {
  if (!options[name]) throw new Error(`--${name} is required`)
  return options[name]
}

// --- main (last, so that every declaration above is initialised) ----------------------------

try {
  options = parseOptions(process.argv.slice(2))
  url = required('url').replace(/\/+$/, '')
  documentId = required('document')
  timeoutMs = Number(options['timeout-ms'] || 30000)
  options.seed ||= String(Date.now() % 1e9)
  random = mulberry32(Number(options.seed))
  deadline = setTimeout(() => finish({ ok: false, error: `timeout after ${timeoutMs} ms` }, 1), timeoutMs)
  const mode = options.mode || 'coedit'
  if (mode === 'read-only') await readOnly()
  else if (mode === 'gap') await gap()
  else await coedit()
} catch (err) {
  finish({ ok: false, error: String(err?.stack || err) }, 1)
}
