// The presence bar: everyone in the document, from awareness (each client's `user` state).
import { h, replace } from '../dom.js'
import { safeColor } from './colors.js'

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
      dot(safeColor(user.color)),
      user.me ? `${user.name} (you)` : String(user.name))))
  }
  awareness.on('change', render)
  render()
  return { element: list, destroy () { awareness.off('change', render) } }
}

// Coloured through CSSOM: the page's CSP refuses style attributes.
function dot (color) {
  const el = h('span', { class: 'dot', 'aria-hidden': 'true' })
  el.style.background = color
  return el
}
