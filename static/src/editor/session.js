// One live document: a Y.Doc kept in sync with the server by CollabProvider over `/collab`,
// an awareness carrying this user's name and colour, and the connection/saved state.
import * as Y from 'yjs'
import { io } from 'socket.io-client'
import msgpackParser from 'socket.io-msgpack-parser'
import * as awarenessProtocol from 'y-protocols/awareness'
import { CollabProvider } from '../../collab-provider.js'
import { colorFor } from './colors.js'

// The server's awareness client id: its state carries the validation messages.
export const SERVER_CLIENT_ID = 4294967294

/**
 * Open `content:<itemId>`. The socket authenticates with the session cookie (same origin),
 * so no token is kept in JavaScript. `onChange` is called whenever `state()` may differ.
 */
export function openSession ({ itemId, me, onChange }) {
  const doc = new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  const user = me.user
  awareness.setLocalStateField('user', {
    id: user.id,
    name: [user.first_name, user.last_name].filter(Boolean).join(' ') || user.username,
    color: colorFor(user.id),
    colorLight: colorFor(user.id) + '33',
  })
  // msgpack framing: one frame per event (see collab-provider.js), the server's cheaper path.
  const socketOptions = { path: '/socket.io-msgpack/', parser: msgpackParser }
  const provider = new CollabProvider({ documentId: `content:${itemId}`, doc, Y, io, awareness, awarenessProtocol, socketOptions })
  let status = 'connecting'
  let lastError = null

  provider.on('status', (event) => { status = event.status; onChange() })
  provider.on('synced', onChange)
  provider.on('pending', onChange)
  provider.on('permission', onChange)
  provider.on('error', (error) => { lastError = error; onChange() })

  // The browser knows when the network is gone: stop at once, and come back as soon as it
  // returns instead of waiting for socket.io's backoff. Edits made meanwhile are held and
  // sent by the provider's next join.
  const goneOffline = () => { provider.socket.disconnect(); onChange() }
  const backOnline = () => { if (!provider.socket.connected) provider.connect(); onChange() }
  window.addEventListener('offline', goneOffline)
  window.addEventListener('online', backOnline)

  return {
    doc,
    awareness,
    provider,
    body: doc.getText('body'),
    fields: doc.getMap('fields'),
    /** What the page shows about the connection and durability. */
    state () {
      const online = navigator.onLine
      const connection = !online ? 'offline' : status === 'connected' && provider.synced ? 'connected' : status === 'connecting' && !provider.role ? 'connecting' : 'reconnecting'
      const pending = provider.pendingAcks
      // 'not_saved': the server answered that changes are not saved yet (its store is
      // down or slow); the provider keeps them and retries until they are.
      const saved = pending === 0 && provider.synced ? 'saved' : pending === 0 ? 'idle' : provider.notSaved ? 'not_saved' : connection === 'connected' ? 'saving' : 'unsaved'
      return { connection, saved, pending, role: provider.role, error: lastError }
    },
    clearError () { lastError = null },
    /** The server's validation messages by field name. */
    validation () {
      return awareness.getStates().get(SERVER_CLIENT_ID)?.validation || {}
    },
    start () {
      if (navigator.onLine) provider.connect()
    },
    destroy () {
      window.removeEventListener('offline', goneOffline)
      window.removeEventListener('online', backOnline)
      provider.destroy()
      awareness.destroy()
      doc.destroy()
    },
  }
}
