/**
 * The widget's state: notifications by id (so every merge dedupes), the highest id seen
 * (the catch-up cursor) and the server's unread counts. It knows nothing of the DOM or the
 * socket; `onChange` listeners re-render.
 */

export const NO_CATEGORY = 'none'

export class NotificationStore {
  /** @param {{maxItems: number}} options  how many of the newest notifications to keep */
  constructor ({ maxItems }) {
    this.maxItems = maxItems
    this.items = new Map()
    this.highestId = 0
    this.unread = { total: 0, by_category: {} }
    this.listeners = new Set()
  }

  onChange (listener) {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Add or update notifications; returns the ones not seen before (for announcements). */
  merge (notifications) {
    const added = []
    for (const notification of notifications) {
      if (!isNotification(notification)) continue
      if (!this.items.has(notification.id)) added.push(notification)
      this.items.set(notification.id, notification)
      this.highestId = Math.max(this.highestId, notification.id)
    }
    this.trim()
    this.changed()
    return added
  }

  setUnread (unread) {
    if (!unread || typeof unread.total !== 'number') return
    this.unread = { total: unread.total, by_category: { ...(unread.by_category || {}) } }
    this.changed()
  }

  /** Mark notifications read locally: by id, or all of them. */
  markRead ({ ids = [], all = false } = {}) {
    const wanted = new Set(ids)
    for (const notification of this.items.values()) {
      if (all || wanted.has(notification.id)) notification.is_read = true
    }
    this.changed()
  }

  /** Notifications grouped by category, newest group first, newest first within a group. */
  groups () {
    const byKey = new Map()
    for (const notification of this.newestFirst()) {
      const key = categoryKey(notification)
      if (!byKey.has(key)) {
        byKey.set(key, { key, category: notification.category || null, items: [] })
      }
      byKey.get(key).items.push(notification)
    }
    return [...byKey.values()]
  }

  unreadIn (key) {
    return this.unread.by_category[key] || 0
  }

  newestFirst () {
    return [...this.items.values()].sort((a, b) => b.id - a.id)
  }

  trim () {
    if (this.items.size <= this.maxItems) return
    for (const notification of this.newestFirst().slice(this.maxItems)) {
      this.items.delete(notification.id)
    }
  }

  changed () {
    for (const listener of this.listeners) listener()
  }
}

export function categoryKey (notification) {
  return notification.category ? String(notification.category.id) : NO_CATEGORY
}

function isNotification (value) {
  return value !== null && typeof value === 'object' && Number.isInteger(value.id)
}
