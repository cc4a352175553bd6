// The presence bar: everyone in the document, from awareness (each client's `user` state).
import { h, replace } from '../dom.js'

export function presenceBar ({ awareness }) {
  const list = h('ul', { class: 'presence', 'aria-label': 'People in this document' })
  const render = () => {
    const people = new Map() // user id -> user: one chip per person, however many tabs
    for (const [clientId, state] of awareness.getStates()) {
      const user = state?.user
      if (!user || state.server) continue
      const key = user.id ?? `client-${clientId}`
      const me = clientId === awareness.clientID
      if (!people.has(key) || me) people.set(key, { ...user, me })
    }
    const chips = [...people.values()].sort((a, b) => (b.me - a.me) || String(a.name).localeCompare(b.name))
    replace(list, chips.map((user) => h('li', { class: 'person', dataset: { userId: user.id ?? '' }, title: user.name },
      h('span', { class: 'dot', style: `background:${safeColor(user.color)}`, 'aria-hidden': 'true' }),
      user.me ? `${user.name} (you)` : String(user.name))))
  }
  awareness.on('change', render)
  render()
  return { element: list, destroy () { awareness.off('change', render) } }
}

// Awareness is written by peers: only a plain colour may reach a style attribute.
function safeColor (color) {
  return /^#[0-9a-fA-F]{3,8}$/.test(color || '') ? color : '#777'
}
