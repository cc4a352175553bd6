// One thin adapter per protocol. Each returns a client:
//   { ready: Promise, send(update), close() }
// and calls hooks.onUpdate(update) for every document update that arrives, where the
// protocol acknowledges updates hooks.onAck(ok) once per sent update, in order, and
// hooks.onClose(reason) if the connection closes (whoever closed it).
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import msgpackParser from 'socket.io-msgpack-parser'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

const SYNC = 0
const STEP1 = 0
const STEP2 = 1
const UPDATE = 2
const EMPTY_SV = new Uint8Array([0])
const EMPTY_UPDATE = new Uint8Array([0, 0])
const HP_AUTH = 2
const HP_SYNC_REPLY = 4
const HP_SYNC_STATUS = 8

function frame (prefix, ...parts) {
  const encoder = encoding.createEncoder()
  if (prefix !== null) encoding.writeVarString(encoder, prefix)
  for (const part of parts) {
    if (part instanceof Uint8Array) encoding.writeVarUint8Array(encoder, part)
    else if (typeof part === 'string') encoding.writeVarString(encoder, part)
    else encoding.writeVarUint(encoder, part)
  }
  return encoding.toUint8Array(encoder)
}

function opened (ws, ready, hooks) {
  ws.binaryType = 'nodebuffer'
  ws.on('error', (err) => ready.reject(err))
  ws.on('close', (code) => {
    ready.reject(new Error(`closed ${code}`))
    hooks.onClose?.(code)
  })
}

function deferred () {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

// Reads one y-protocols sync message (after any prefix); calls onUpdate for steps 2 and
// updates; returns the step.
function readSync (decoder, hooks) {
  const step = decoding.readVarUint(decoder)
  if (step === STEP2 || step === UPDATE) hooks.onUpdate(decoding.readVarUint8Array(decoder))
  return step
}

/** y-websocket protocol: ours at /ws/<doc>, y-websocket, pycrdt-websocket, the floors. */
function ywebsocket ({ url, document, token, handshake = true }, hooks) {
  const ready = deferred()
  const query = token ? `?token=${encodeURIComponent(token)}` : ''
  const ws = new WebSocket(`${url}/${encodeURIComponent(document)}${query}`, { perMessageDeflate: false })
  opened(ws, ready, hooks)
  ws.on('open', () => {
    if (!handshake) return ready.resolve()
    ws.send(frame(null, SYNC, STEP1, EMPTY_SV))
  })
  ws.on('message', (data) => {
    const decoder = decoding.createDecoder(data)
    if (decoding.readVarUint(decoder) !== SYNC) return
    const step = readSync(decoder, hooks)
    if (step === STEP2) ready.resolve()
    else if (step === STEP1 && handshake) ws.send(frame(null, SYNC, STEP2, EMPTY_UPDATE))
  })
  return {
    ready: ready.promise,
    send: (update) => ws.send(frame(null, SYNC, UPDATE, update)),
    close: () => ws.terminate(),
  }
}

/** Hocuspocus's protocol: every message prefixed by the document name; token first. */
function hocuspocus ({ url, document, token }, hooks) {
  const ready = deferred()
  const ws = new WebSocket(url, { perMessageDeflate: false })
  opened(ws, ready, hooks)
  ws.on('open', () => ws.send(frame(document, HP_AUTH, 0, token || 'bench')))
  ws.on('message', (data) => {
    const decoder = decoding.createDecoder(data)
    decoding.readVarString(decoder)
    const type = decoding.readVarUint(decoder)
    if (type === HP_AUTH) {
      if (decoding.readVarUint(decoder) !== 2) return ready.reject(new Error('hocuspocus auth refused'))
      ws.send(frame(document, SYNC, STEP1, EMPTY_SV))
    } else if (type === SYNC || type === HP_SYNC_REPLY) {
      const step = readSync(decoder, hooks)
      if (step === STEP2) ready.resolve()
      else if (step === STEP1) ws.send(frame(document, SYNC, STEP2, EMPTY_UPDATE))
    } else if (type === HP_SYNC_STATUS) {
      hooks.onAck?.(decoding.readVarUint(decoder) === 1)
    }
  })
  return {
    ready: ready.promise,
    send: (update) => ws.send(frame(document, SYNC, UPDATE, update)),
    close: () => ws.terminate(),
  }
}

// `options` adds to (or overrides) the client options: e.g. another Engine.IO `path` and
// `parser` for the msgpack endpoint.
function socket (url, namespace, token, options = {}) {
  return io(`${url}${namespace}`, {
    auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false, ...options,
  })
}

// Binary payloads arrive as Buffer (JSON framing's attachments, msgpack's bin in Node) or
// ArrayBuffer (msgpack in a browser build): always a fresh Uint8Array.
const bytes = (data) => new Uint8Array(data)

/**
 * Ours, `/collab`: join with an ack; each update is acked once durable. `client` adds to the
 * Socket.IO client options; `binary` turns an outgoing update into what the parser sends as
 * binary.
 */
function collab ({ url, document, token }, hooks, { client = {}, binary = (update) => update } = {}) {
  const ready = deferred()
  const sock = socket(url, '/collab', token, client)
  sock.on('connect_error', (err) => ready.reject(err))
  sock.on('disconnect', (reason) => {
    ready.reject(new Error(`disconnected: ${reason}`))
    hooks.onClose?.(reason)
  })
  sock.on('connect', () => {
    sock.emit('join', { document }, (answer) => {
      if (!answer?.ok) return ready.reject(new Error(`join: ${JSON.stringify(answer?.error)}`))
      const update = answer.update ? bytes(answer.update) : null
      if (update?.length > 2) hooks.onUpdate(update)
      ready.resolve()
    })
  })
  sock.on('update', (message) => hooks.onUpdate(bytes(message.update)))
  return {
    ready: ready.promise,
    send: (update) => sock.emit('update', { document, update: binary(update) }, (answer) => hooks.onAck?.(answer?.ok === true, answer?.error?.code)),
    close: () => sock.disconnect(),
  }
}

/**
 * Ours, `/collab` over msgpack framing (socket.io-msgpack-parser; the server's second
 * Engine.IO endpoint, /socket.io-msgpack/): same events and acks as `collab`, but a binary
 * payload travels inside its one msgpack frame, not as a JSON header plus an attachment.
 */
function collabMsgpack (config, hooks) {
  return collab(config, hooks, {
    client: { path: '/socket.io-msgpack/', parser: msgpackParser },
    // notepack.io (the parser's msgpack) packs only a Buffer as msgpack bin: any other
    // Uint8Array becomes ext type 0 holding its whole underlying ArrayBuffer, which the
    // server refuses (invalid_payload). A Buffer view of the same bytes: no copy.
    binary: (update) => Buffer.from(update.buffer, update.byteOffset, update.byteLength),
  })
}

/** y-socket.io protocol (ours at `/yjs|<doc>`): bare binary arguments, no update acks. */
function ysocketio ({ url, document, token }, hooks) {
  const ready = deferred()
  const sock = socket(url, `/yjs|${document}`, token)
  sock.on('connect_error', (err) => ready.reject(err))
  sock.on('disconnect', (reason) => {
    ready.reject(new Error(`disconnected: ${reason}`))
    hooks.onClose?.(reason)
  })
  sock.on('sync-step-1', (sv, ack) => ack(EMPTY_UPDATE))
  sock.on('connect', () => {
    sock.emit('sync-step-1', EMPTY_SV, (update) => {
      hooks.onUpdate(bytes(update))
      ready.resolve()
    })
  })
  sock.on('sync-update', (update) => hooks.onUpdate(bytes(update)))
  return {
    ready: ready.promise,
    send: (update) => sock.emit('sync-update', update),
    close: () => sock.disconnect(),
  }
}

export const ADAPTERS = { ywebsocket, hocuspocus, collab, 'collab-msgpack': collabMsgpack, ysocketio }
