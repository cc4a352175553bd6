/**
 * CollabProvider: keeps a Yjs document in sync with realtime_cms over the `/collab`
 * Socket.IO namespace (docs/protocol.md). It imports nothing: the caller injects yjs,
 * socket.io-client and (optionally) y-protocols/awareness, so the same file runs in Node,
 * in a browser <script type="module">, or inside a bundle.
 *
 *   import * as Y from 'yjs'
 *   import { io } from 'socket.io-client'
 *   import * as awarenessProtocol from 'y-protocols/awareness'
 *   import { CollabProvider } from '/static/collab-provider.js'
 *
 *   const doc = new Y.Doc()
 *   const awareness = new awarenessProtocol.Awareness(doc)      // optional
 *   const provider = new CollabProvider({
 *     url: 'https://cms.example.com', token, documentId: 'content:42', doc, Y, io,
 *     awareness, awarenessProtocol,
 *   })
 *   provider.on('synced', (synced) => ...)       // true once joined and caught up
 *   provider.on('pending', (count) => ...)       // 0 = every local change is durable
 *   provider.connect()
 *
 * constructor({ url, token, documentId, doc, Y, io, awareness?, awarenessProtocol?,
 *               socket?, socketOptions?, ackTimeout? })
 *   url: the server's base URL ('' = same origin); the namespace `/collab` is appended.
 *   socket: an already created `/collab` socket to share between providers (then `url`,
 *     `token` and `socketOptions` are unused, and destroy() leaves but does not disconnect).
 *   socketOptions: passed to io(); msgpack framing (one frame per event instead of a JSON
 *     header plus one per binary field, and less server CPU per update) is
 *     `{ path: '/socket.io-msgpack/', parser }` with `socket.io-msgpack-parser`.
 * connect()          opens the socket (or joins at once on a shared, connected socket)
 * destroy()          removes our awareness state, leaves the document, closes the socket
 * on(event, cb) / off(event, cb), with events:
 *   'status'     { status: 'connecting' | 'connected' | 'disconnected' }
 *   'synced'     true after a join's reply is applied, false when the connection drops
 *   'pending'    the new value of `pendingAcks`
 *   'permission' the new role: 'read' | 'write' | 'admin' | null (null: access revoked;
 *                nothing is sent any more)
 *   'error'      an Error with `.code` (a docs/protocol.md code, 'timeout' or 'disconnected')
 * synced       true while joined and caught up
 * role         the role the server gave on join (or a later 'permission' event)
 * pendingAcks  local changes not yet acknowledged as durable (including those made while
 *              offline; they are sent, as one update, when the document is joined again)
 * notSaved     true once the server answered that a change is not saved yet (a store
 *              fault, the ack deadline, or changes it could not integrate), until every
 *              local change is acknowledged: what an editor shows as "Not saved yet"
 *
 * Local changes (doc updates whose origin is not this provider) are sent as `update` events.
 * On a `read` seat they are still sent and refused by the server (an 'error' with code
 * `read_only`): make the editor read-only when role is 'read'. After a reconnect (which
 * socket.io-client does by itself) the document is joined again, exchanging what each side
 * is missing; so is it after `room_closed` or `not_joined`. After `store_unavailable`,
 * `store_failed`, `missing_dependencies`, `too_many_pending` or `rate_limited` the changes are kept and a
 * `sync` round (what each side lacks) runs again, with backoff, until they are saved. When
 * the server holds one of our updates whose dependencies it lacks, it sends a `sync` event
 * with its state vector, and the provider answers with what it is missing.
 */

const EVENTS = ['status', 'synced', 'pending', 'permission', 'error']
// Codes after which the changes are not lost: joining again sends what the server lacks.
const REJOIN_CODES = new Set(['timeout', 'disconnected', 'room_closed', 'not_joined'])
// Codes after which the changes are kept and a `sync` round sends what the server lacks.
const RESYNC_CODES = new Set(['store_unavailable', 'store_failed', 'missing_dependencies', 'too_many_pending', 'rate_limited'])
const MIN_BACKOFF_MS = 200
const MAX_BACKOFF_MS = 5000

const toBytes = (data) => (data instanceof Uint8Array ? data : new Uint8Array(data))
// Binary fields go out as ArrayBuffers: both parsers send those as bytes (the msgpack one,
// in browsers, would encode a Uint8Array as a map of its indices).
const toWire = (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)

export class CollabProvider {
  constructor ({ url = '', token, documentId, doc, Y, io, awareness = null, awarenessProtocol = null, socket = null, socketOptions = {}, ackTimeout = 30000 }) {
    if (!documentId || !doc || !Y || (!io && !socket)) {
      throw new TypeError('CollabProvider needs documentId, doc, Y and io (or a socket)')
    }
    if (awareness && !awarenessProtocol) {
      throw new TypeError('pass awarenessProtocol (y-protocols/awareness) with awareness')
    }
    Object.assign(this, { documentId, doc, Y, awareness, awarenessProtocol, ackTimeout })
    this.role = null
    this._revoked = false // a 'permission' event with role null: nothing is sent any more
    this._synced = false
    this._joined = false // the server has us seated (role may still be 'read')
    this._inflight = 0 // local changes sent and not acknowledged yet
    this._held = 0 // local changes not sent (offline) or to be re-sent by the next join
    this._joining = null
    this._retry = null
    this._resyncing = null // the running sync round, if any
    this._backoff = MIN_BACKOFF_MS
    this._notSaved = false
    this._listeners = new Map(EVENTS.map((name) => [name, new Set()]))
    this._ownsSocket = !socket
    this.socket = socket || io(`${url.replace(/\/+$/, '')}/collab`, {
      auth: { token }, transports: ['websocket'], autoConnect: false, ...socketOptions,
    })

    this._handlers = {
      connect: () => { this._emit('status', { status: 'connected' }); this._join() },
      disconnect: () => this._onDisconnect(),
      connect_error: (err) => this._emit('error', codedError(err.data?.code || 'connect_error', err.data?.message || err.message)),
      update: (data) => { if (this._mine(data)) Y.applyUpdate(doc, toBytes(data.update), this) },
      awareness: (data) => {
        if (this._mine(data) && awareness) awarenessProtocol.applyAwarenessUpdate(awareness, toBytes(data.update), this)
      },
      permission: (data) => { if (this._mine(data)) this._onPermission(data.role) },
      // The server holds an update of ours whose dependencies it lacks: send them.
      sync: (data) => { if (this._mine(data) && this._joined) this._sendMissing(toBytes(data.state_vector), 0) },
    }
    for (const [event, handler] of Object.entries(this._handlers)) this.socket.on(event, handler)
    this._onDocUpdate = (update, origin) => { if (origin !== this) this._sendLocal(update) }
    doc.on('update', this._onDocUpdate)
    this._onAwarenessUpdate = ({ added, updated, removed }, origin) => {
      // Relay only our own client id: the server refuses entries owned by other peers
      // (and y-protocols removes timed-out remote states locally, with origin 'timeout').
      const own = [...added, ...updated, ...removed].filter((id) => id === doc.clientID)
      if (origin !== this && own.length > 0 && this._joined) this._sendAwareness(own)
    }
    if (awareness) awareness.on('update', this._onAwarenessUpdate)
  }

  get synced () { return this._synced }
  get pendingAcks () { return this._inflight + this._held }
  get notSaved () { return this._notSaved }

  on (event, cb) { this._listeners.get(event).add(cb); return this }
  off (event, cb) { this._listeners.get(event).delete(cb); return this }

  connect () {
    if (this.socket.connected) return this._join()
    this._emit('status', { status: 'connecting' })
    this.socket.connect()
  }

  destroy () {
    this.doc.off('update', this._onDocUpdate)
    if (this.awareness) {
      this.awareness.off('update', this._onAwarenessUpdate)
      if (this._joined && this.awareness.getLocalState() !== null) {
        this.awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'destroy')
        this._sendAwareness([this.doc.clientID])
      }
    }
    if (this._joined) this.socket.emit('leave', { document: this.documentId })
    for (const [event, handler] of Object.entries(this._handlers)) this.socket.off(event, handler)
    if (this._ownsSocket) this.socket.disconnect()
    clearTimeout(this._retry)
    clearTimeout(this._resyncing)
    this._retry = 'destroyed' // no later rejoin or resync
    this._joined = this._synced = false
  }

  // Emit an event and resolve with its ack; reject with an Error carrying `.code`.
  _call (event, payload) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(this.ackTimeout).emit(event, payload, (err, reply) => {
        if (err) return reject(codedError(this.socket.connected ? 'timeout' : 'disconnected', err.message))
        if (!reply || reply.ok !== true) {
          const { code = 'bad_reply', message = JSON.stringify(reply) } = reply?.error || {}
          return reject(codedError(code, message))
        }
        resolve(reply)
      })
    })
  }

  _join () {
    if (this._joining || !this.socket.connected) return this._joining
    const { Y, doc } = this
    const payload = { document: this.documentId, state_vector: toWire(Y.encodeStateVector(doc)) }
    this._joining = this._call('join', payload).then((reply) => {
      this._joined = true
      this._revoked = false
      this._setRole(reply.role)
      Y.applyUpdate(doc, toBytes(reply.update), this)
      if (this.awareness) {
        this.awarenessProtocol.applyAwarenessUpdate(this.awareness, toBytes(reply.awareness), this)
        if (this.awareness.getLocalState() !== null) this._sendAwareness([doc.clientID])
      }
      // Send what the server is missing: changes made offline, or refused with a retry code.
      const held = this._held
      this._held = 0
      if (!this._sendMissing(toBytes(reply.state_vector), Math.max(held, 1))) this._settle()
      this._setSynced(true)
    }, (err) => {
      if (REJOIN_CODES.has(err.code) || RESYNC_CODES.has(err.code)) this._rejoinSoon()
      this._emit('error', err)
    }).finally(() => { this._joining = null })
    return this._joining
  }

  // Join again shortly (not while disconnected: the 'connect' handler does it then).
  _rejoinSoon () {
    this._joined = false // local changes wait for the join, which sends them
    if (this._retry || !this.socket.connected) return // pending already, destroyed, or offline
    this._retry = setTimeout(() => { this._retry = null; this._join() }, 500)
  }

  // Send what a holder of `stateVector` lacks, standing for `weight` local changes; false
  // when there is nothing to send (or nothing may be sent on this seat).
  _sendMissing (stateVector, weight) {
    if (this.role === 'read' || this.role === null) return false
    const missing = this.Y.encodeStateAsUpdate(this.doc, stateVector)
    if (isEmptyUpdate(missing)) return false
    this._send(missing, weight)
    return true
  }

  // The server has not saved some changes but keeps the room: run `sync` rounds (each gets
  // what we lack and sends what the server lacks) with backoff until one is acknowledged.
  _resync (weight) {
    this._held += weight
    this._notSaved = true
    this._emit('pending', this.pendingAcks)
    if (this._resyncing || this._retry === 'destroyed') return
    const round = () => {
      if (!this._joined || this._retry === 'destroyed') { this._resyncing = null; return } // the next join sends them
      const payload = { document: this.documentId, state_vector: toWire(this.Y.encodeStateVector(this.doc)) }
      this._call('sync', payload).then((reply) => {
        this.Y.applyUpdate(this.doc, toBytes(reply.update), this)
        const held = this._held
        this._held = 0
        this._resyncing = null
        if (!this._sendMissing(toBytes(reply.state_vector), held)) this._settle()
      }, (err) => {
        this._resyncing = null
        if (REJOIN_CODES.has(err.code)) return this._rejoinSoon()
        if (!RESYNC_CODES.has(err.code)) return this._emit('error', err)
        this._resync(0)
      })
    }
    const delay = this._backoff * (0.8 + 0.4 * Math.random())
    this._backoff = Math.min(2 * this._backoff, MAX_BACKOFF_MS)
    this._resyncing = setTimeout(round, delay)
  }

  // Every local change acknowledged: the document is saved.
  _settle () {
    if (this.pendingAcks === 0) {
      this._notSaved = false
      this._backoff = MIN_BACKOFF_MS
    }
    this._emit('pending', this.pendingAcks)
  }

  _sendLocal (update) {
    if (this._revoked) return // access revoked: the change stays local
    if (!this._joined) {
      this._held += 1 // the next join sends it
      this._emit('pending', this.pendingAcks)
      return
    }
    this._send(update, 1)
  }

  // Send an update standing for `weight` local changes; count them until acknowledged.
  _send (update, weight) {
    this._inflight += weight
    this._emit('pending', this.pendingAcks)
    this._call('update', { document: this.documentId, update: toWire(update) }).then(() => {
      this._inflight -= weight
      this._settle()
    }, (err) => {
      this._inflight -= weight
      if (RESYNC_CODES.has(err.code)) {
        this._resync(weight)
      } else {
        if (REJOIN_CODES.has(err.code)) {
          this._held += weight
          this._rejoinSoon()
        }
        this._emit('pending', this.pendingAcks)
      }
      this._emit('error', err)
    })
  }

  _sendAwareness (clientIds) {
    const update = this.awarenessProtocol.encodeAwarenessUpdate(this.awareness, clientIds)
    this._call('awareness', { document: this.documentId, update: toWire(update) }).catch((err) => this._emit('error', err))
  }

  _onPermission (role) {
    const before = this.role
    this._setRole(role)
    if (role === null) {
      this._revoked = true
      this._joined = false
      this._setSynced(false)
    } else if (before === 'read' && role !== 'read') {
      this._joined = false // join again: sends what the server lacks (edits it refused)
      this._join()
    }
  }

  _onDisconnect () {
    this._joined = false
    this._setSynced(false)
    this._emit('status', { status: 'disconnected' })
    if (this.awareness) {
      const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID)
      this.awarenessProtocol.removeAwarenessStates(this.awareness, others, this)
    }
  }

  _mine (data) { return Boolean(data && data.document === this.documentId && (this._joined || this._joining)) }

  _setRole (role) {
    if (role === this.role) return
    this.role = role
    this._emit('permission', role)
  }

  _setSynced (synced) {
    if (synced === this._synced) return
    this._synced = synced
    this._emit('synced', synced)
  }

  _emit (event, ...args) {
    for (const cb of this._listeners.get(event)) cb(...args)
  }
}

function codedError (code, message) {
  return Object.assign(new Error(`${code}: ${message}`), { code })
}

// An update encoding no structs and no deletions: `[0, 0]`.
function isEmptyUpdate (update) {
  return update.length === 2 && update[0] === 0 && update[1] === 0
}
