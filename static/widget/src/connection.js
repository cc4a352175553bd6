/**
 * The widget's link to namespace `/notifications` (docs/protocol.md): it connects with a
 * token provider or the session cookie, merges pushed events into the store, loads the newest
 * notifications (`latest`) on the first connect, and after every reconnect catches up from
 * the server with `since`, so nothing sent while the tab was offline is missed and nothing is
 * shown twice (the store dedupes by id).
 */

import { io } from 'socket.io-client'

const PAGE = 200
const ACK_TIMEOUT_MS = 15000
// Ids are assigned at insert but pushed after commit, so a lower id can commit after a
// higher one was seen: catch-up re-reads this many ids below the cursor (dupes drop by id).
const OVERLAP_IDS = 100
const RETRY_MIN_MS = 2000
const RETRY_MAX_MS = 60000

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.server  the server's origin, e.g. https://cms.example.com
   * @param {(() => string | Promise<string>) | null} options.token  token provider, or null
   *   to authenticate with the session cookie
   * @param {boolean} options.withCredentials  send cookies cross-origin
   * @param {string[]} options.transports  Socket.IO transports
   * @param {import('./store.js').NotificationStore} options.store
   * @param {(state: string) => void} options.onState  connecting | connected | offline |
   *   unauthorized | ended
   * @param {(notification: object) => void} options.onNew  a live notification not seen before
   */
  constructor ({ server, token, withCredentials, transports, store, onState, onNew }) {
    this.store = store
    this.onState = onState
    this.onNew = onNew
    this.token = token
    this.retryMs = RETRY_MIN_MS
    this.retryTimer = null
    this.loaded = false
    this.socket = io(`${server.replace(/\/+$/, '')}/notifications`, {
      path: '/socket.io/',
      transports,
      tryAllTransports: true,
      withCredentials,
      autoConnect: false,
      auth: (callback) => this.auth(callback)
    })
    this.bindSocket()
    this.onOffline = () => this.socket.disconnect()
    this.onOnline = () => this.connect()
  }

  start () {
    window.addEventListener('offline', this.onOffline)
    window.addEventListener('online', this.onOnline)
    this.connect()
  }

  stop () {
    window.removeEventListener('offline', this.onOffline)
    window.removeEventListener('online', this.onOnline)
    clearTimeout(this.retryTimer)
    this.socket.disconnect()
  }

  connect () {
    clearTimeout(this.retryTimer)
    if (this.socket.connected) return
    this.onState('connecting')
    this.socket.connect()
  }

  auth (callback) {
    if (!this.token) return callback({})
    Promise.resolve()
      .then(() => this.token())
      .then((token) => callback(typeof token === 'string' && token ? { token } : {}),
        () => callback({}))
  }

  bindSocket () {
    const socket = this.socket
    socket.on('connect', () => {
      this.retryMs = RETRY_MIN_MS
      this.onState('connected')
      this.sync()
    })
    socket.on('disconnect', (reason) => {
      // The server ends a connection only when its session ended: no automatic retry then.
      this.onState(reason === 'io server disconnect' ? 'ended' : 'offline')
    })
    socket.on('connect_error', (error) => {
      if (socket.active) return this.onState('offline')
      this.onState(error?.data?.code === 'unauthorized' ? 'unauthorized' : 'offline')
      // A token provider may have a fresh token by the next try; a cookie will not.
      if (this.token) this.retryLater()
    })
    socket.on('notification', (notification) => {
      for (const added of this.store.merge([notification])) this.onNew(added)
    })
    socket.on('unread', (unread) => this.store.setUnread(unread))
    socket.on('read', (read) => this.store.markRead(read || {}))
    socket.on('session_ended', () => this.onState('ended'))
  }

  retryLater () {
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs)
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS)
  }

  /** Load (first connect) or catch up (reconnects); on failure try again while connected. */
  sync () {
    const work = this.loaded ? this.catchUp() : this.loadLatest()
    work.catch(() => {
      setTimeout(() => this.socket.connected && this.sync(), RETRY_MIN_MS)
    })
  }

  /** The first paint: the newest notifications, not every one the user ever had. */
  async loadLatest () {
    const answer = await this.request('latest', { limit: this.store.maxItems })
    this.store.merge(answer.notifications)
    this.store.setUnread(answer.unread)
    this.loaded = true
  }

  /** Everything after the cursor (less an overlap), page by page, in id order. */
  async catchUp () {
    const highest = this.store.highestId
    let after = highest > 0 ? Math.max(0, highest - OVERLAP_IDS) : 0
    for (;;) {
      const answer = await this.request('since', { after_id: after, limit: PAGE })
      this.store.merge(answer.notifications)
      this.store.setUnread(answer.unread)
      if (!answer.more || answer.notifications.length === 0) return
      after = answer.notifications[answer.notifications.length - 1].id
    }
  }

  async markRead (ids) {
    const answer = await this.request('mark_read', { ids })
    this.store.markRead({ ids: answer.read })
    this.store.setUnread(answer.unread)
  }

  async markAllRead () {
    const answer = await this.request('mark_all_read', {})
    this.store.markRead({ all: true })
    this.store.setUnread(answer.unread)
  }

  /** An event with an acknowledgement; rejects on an error ack or a timeout. */
  async request (event, payload) {
    const answer = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload)
    if (!answer || !answer.ok) {
      const error = new Error(answer?.error?.message || `${event} failed`)
      error.code = answer?.error?.code
      throw error
    }
    return answer
  }
}
