/**
 * The bell and its dropdown, rendered into the container's shadow root from the store.
 * Text goes in with textContent only: notification titles and messages are never HTML.
 * The container carries `data-state` (connection) and `data-unread` (badge) for host pages.
 */

import { CSS } from './styles.js'

const DEFAULT_COLOUR = '#3498db'
const COLOUR = /^#[0-9a-fA-F]{6}$/
const BELL_PATH = 'M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 ' +
  '1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z'
const STATUS_TEXT = {
  connecting: 'Connecting…',
  offline: 'Offline: reconnecting…',
  unauthorized: 'Sign in to see your notifications.',
  ended: 'Your session ended; sign in again.'
}
let panels = 0

export class BellView {
  /**
   * @param {HTMLElement} host  the container element
   * @param {import('./store.js').NotificationStore} store
   * @param {{markRead: (id: number) => void, markAllRead: () => void}} actions
   */
  constructor (host, store, actions) {
    this.host = host
    this.store = store
    this.actions = actions
    this.root = host.attachShadow({ mode: 'open' })
    this.build()
    this.unsubscribe = store.onChange(() => this.render())
    this.onDocumentClick = (event) => {
      if (!event.composedPath().includes(this.host)) this.setOpen(false)
    }
    document.addEventListener('click', this.onDocumentClick)
    this.setState('connecting')
    this.render()
  }

  destroy () {
    this.unsubscribe()
    document.removeEventListener('click', this.onDocumentClick)
    this.root.replaceChildren()
  }

  build () {
    const panelId = `rcms-notifications-panel-${++panels}`
    addStyles(this.root)
    this.button = el('button', { class: 'button', type: 'button', 'aria-haspopup': 'true',
      'aria-expanded': 'false', 'aria-controls': panelId })
    this.button.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="${BELL_PATH}"/></svg>`
    this.badge = el('span', { class: 'badge', 'aria-hidden': 'true' })
    this.button.append(this.badge)
    this.button.addEventListener('click', () => this.setOpen(this.panel.hidden))
    this.heading = el('h2', { id: `${panelId}-title` }, 'Notifications')
    this.markAll = el('button', { class: 'link mark-all', type: 'button' }, 'Mark all as read')
    this.markAll.addEventListener('click', () => this.actions.markAllRead())
    this.status = el('p', { class: 'status', role: 'status' })
    this.list = el('div', { class: 'groups' })
    this.panel = el('div', { class: 'panel', id: panelId, role: 'region',
      'aria-labelledby': this.heading.id, hidden: '' })
    this.panel.append(el('div', { class: 'header' }, this.heading, this.markAll), this.status, this.list)
    this.panel.addEventListener('keydown', (event) => this.onKey(event))
    this.announcer = el('p', { class: 'sr-only', 'aria-live': 'polite' })
    this.root.append(this.button, this.panel, this.announcer)
  }

  setOpen (open) {
    if (open === !this.panel.hidden) return
    this.panel.hidden = !open
    this.button.setAttribute('aria-expanded', String(open))
    if (open) this.focusItem(0)
  }

  setState (state) {
    this.host.dataset.state = state
    const text = STATUS_TEXT[state] || ''
    this.status.textContent = text
    this.status.hidden = !text
  }

  announce (notification) {
    this.announcer.textContent = `New notification: ${notification.title}`
  }

  render () {
    const total = this.store.unread.total
    this.host.dataset.unread = String(total)
    this.badge.textContent = total > 99 ? '99+' : String(total)
    this.badge.hidden = total === 0
    this.button.setAttribute('aria-label', total ? `Notifications, ${total} unread` : 'Notifications')
    this.markAll.disabled = total === 0
    const focusedId = this.root.activeElement?.closest?.('.item')?.dataset.id
    const groups = this.store.groups()
    this.list.replaceChildren(...groups.map((group) => this.renderGroup(group)))
    if (groups.length === 0) this.list.append(el('p', { class: 'empty' }, 'No notifications yet.'))
    if (focusedId) this.list.querySelector(`.item[data-id="${focusedId}"]`)?.focus()
  }

  renderGroup ({ key, category, items }) {
    const colour = category && COLOUR.test(category.color_code || '') ? category.color_code : DEFAULT_COLOUR
    const name = category ? category.name : 'General'
    const headingId = `${this.panel.id}-group-${key}`
    const unread = this.store.unreadIn(key)
    const heading = el('h3', { id: headingId }, el('span', { class: 'swatch', 'aria-hidden': 'true' }), name)
    if (unread) heading.append(el('span', { class: 'sr-only' }, `, ${unread} unread`))
    const list = el('ul', { role: 'list', 'aria-labelledby': headingId })
    list.append(...items.map((notification) => this.renderItem(notification)))
    const section = el('section', { class: 'group', 'data-category': key }, heading, list)
    section.style.setProperty('--category', colour)
    return section
  }

  renderItem (notification) {
    const read = Boolean(notification.is_read)
    const item = el('li', { class: 'item', tabindex: '-1', 'data-id': String(notification.id),
      'data-read': String(read) })
    item.append(el('span', { class: 'title' }, read ? '' : el('span', { class: 'sr-only' }, 'Unread: '),
      String(notification.title ?? '')))
    if (notification.message) item.append(el('p', { class: 'message' }, String(notification.message)))
    const when = new Date(notification.created_at)
    if (!Number.isNaN(when.getTime())) {
      item.append(el('time', { datetime: when.toISOString() }, when.toLocaleString()))
    }
    if (!read) {
      const mark = el('button', { class: 'link mark-read', type: 'button' }, 'Mark as read')
      mark.setAttribute('aria-label', `Mark “${notification.title}” as read`)
      mark.addEventListener('click', () => this.actions.markRead(notification.id))
      item.append(mark)
    }
    return item
  }

  /** Escape closes; arrows, Home and End move between notifications. */
  onKey (event) {
    const items = [...this.list.querySelectorAll('.item')]
    const current = items.indexOf(this.root.activeElement?.closest?.('.item'))
    const moves = { ArrowDown: current + 1, ArrowUp: current - 1, Home: 0, End: items.length - 1 }
    if (event.key === 'Escape') {
      this.setOpen(false)
      this.button.focus()
    } else if (event.key in moves && items.length) {
      event.preventDefault()
      this.focusItem(Math.max(0, Math.min(items.length - 1, moves[event.key])))
    } else {
      return
    }
    event.stopPropagation()
  }

  focusItem (index) {
    const item = this.list.querySelectorAll('.item')[index]
    if (item) item.focus()
    else if (!this.markAll.disabled) this.markAll.focus()
  }
}

function addStyles (root) {
  if ('adoptedStyleSheets' in root && typeof CSSStyleSheet.prototype.replaceSync === 'function') {
    const sheet = new CSSStyleSheet()
    sheet.replaceSync(CSS)
    root.adoptedStyleSheets = [sheet]
  } else {
    root.append(el('style', {}, CSS))
  }
}

function el (tag, attributes, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value)
  node.append(...children.filter((child) => child !== ''))
  return node
}
