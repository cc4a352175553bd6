// The editor page of one content item: fields, Markdown body with remote cursors, preview,
// presence, connection and saved state, read-only mode and the version history.
import { api, describe, query } from '../api.js'
import { h, replace } from '../dom.js'
import { rememberUser } from '../users.js'
import { openSession } from './session.js'
import { fieldsForm } from './fields.js'
import { bodyEditor } from './body.js'
import { presenceBar } from './presence.js'
import { bindPreview } from './preview.js'
import { historyPanel } from './history.js'

const CONNECTION_TEXT = { connected: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline' }
const SAVED_TEXT = { saved: 'All changes saved', idle: 'Not synced yet', saving: 'Saving…', unsaved: 'Unsaved changes', not_saved: 'Not saved yet' }
// Errors the provider recovers from by itself (it joins again and resends): not for people.
// Codes the provider gets past by itself (it keeps the change and syncs again); the badge
// says "not saved yet" meanwhile, so they are not shown as a refusal.
const QUIET = new Set(['disconnected', 'timeout', 'room_closed', 'not_joined', 'connect_error', 'store_unavailable', 'store_failed', 'too_many_pending', 'missing_dependencies', 'rate_limited'])

export function editorPage (main, { me, itemId }) {
  rememberUser(me.user)
  let destroyed = false
  const parts = []
  replace(main, h('p', { class: 'muted', role: 'status' }, 'Opening…'))

  start().catch((error) => {
    if (!destroyed) replace(main, h('p', { class: 'error', role: 'alert' }, `This item cannot be opened: ${describe(error)}`), h('p', {}, h('a', { href: '#/items' }, 'Back to the content list')))
  })

  async function start () {
    const item = (await api.get(`/api/v1/content-items/${itemId}`)).data
    const definitions = (await api.get(`/api/v1/content-types/${item.content_type_id}/fields${query({ limit: 200 })}`)).data
    if (destroyed) return

    const title = h('h1', { class: 'doc-title' }, item.title)
    const readOnlyBadge = h('span', { class: 'badge readonly', hidden: true }, 'Read only')
    const connection = h('span', { class: 'connection', role: 'status' })
    const saved = h('span', { class: 'saved', role: 'status' })
    const problem = h('p', { class: 'error', role: 'alert', hidden: true })
    const historyToggle = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': 'history-drawer', onclick: toggleHistory }, 'History')
    const bodyHost = h('div', { class: 'body-editor' })
    const preview = h('div', { class: 'preview markdown', 'aria-labelledby': 'preview-title' })

    const session = openSession({ itemId, me, onChange: update })
    parts.push(session)
    // For debugging and the browser tests: the live document of this page.
    window.rcms = { session }

    const form = fieldsForm({ doc: session.doc, fields: session.fields, definitions })
    const presence = presenceBar({ awareness: session.awareness })
    const history = historyPanel({
      itemId,
      canSave: me.permissions.includes('content.update') || me.permissions.includes('content.update.own'),
      canRestore: me.permissions.includes('versions.restore'),
    })
    const drawer = h('aside', { id: 'history-drawer', class: 'drawer', hidden: true, 'aria-label': 'Version history' },
      h('button', { type: 'button', class: 'secondary close', onclick: toggleHistory }, 'Close history'),
      history.element)
    parts.push(form, presence)

    replace(main,
      h('div', { class: 'editor-head' },
        h('a', { href: '#/items', class: 'back' }, '← Content'),
        title,
        h('div', { class: 'badges' }, readOnlyBadge, connection, saved, historyToggle),
      ),
      presence.element,
      problem,
      h('div', { class: 'editor-grid' },
        h('section', { class: 'edit', 'aria-label': 'Edit' },
          form.element,
          h('div', { class: 'field' }, h('span', { id: 'body-label', class: 'label' }, 'Body (Markdown)'), bodyHost),
        ),
        h('section', { class: 'preview-pane', 'aria-labelledby': 'preview-title' },
          h('h2', { id: 'preview-title' }, 'Preview'), preview),
      ),
      drawer,
    )

    const body = bodyEditor({ parent: bodyHost, ytext: session.body, awareness: session.awareness, labelId: 'body-label' })
    parts.push(body, bindPreview(preview, session.body))

    const showTitle = () => { title.textContent = session.fields.get('title') || item.title }
    session.fields.observe(showTitle)
    parts.push({ destroy: () => session.fields.unobserve(showTitle) })
    const showValidation = () => form.setValidation(session.validation())
    session.awareness.on('change', showValidation)
    parts.push({ destroy: () => session.awareness.off('change', showValidation) })

    let hadRole = false
    function update () {
      const state = session.state()
      connection.textContent = CONNECTION_TEXT[state.connection]
      connection.dataset.state = state.connection
      saved.textContent = state.pending > 0 && state.saved !== 'saving' ? `${SAVED_TEXT[state.saved]} (${state.pending})` : SAVED_TEXT[state.saved]
      saved.dataset.state = state.saved
      const readOnly = state.role !== 'write' && state.role !== 'admin'
      readOnlyBadge.hidden = state.role !== 'read'
      form.setReadOnly(readOnly)
      body.setReadOnly(readOnly)
      history.setWritable(!readOnly)
      if (state.role) hadRole = true
      if (hadRole && state.role === null) {
        showProblem('Your access to this item was revoked: changes are no longer sent.')
      } else if (state.error?.code === 'no_access') {
        showProblem('You have no access to this item.')
      } else if (state.error && !QUIET.has(state.error.code)) {
        showProblem(state.error.code === 'read_only' ? 'You can only read this item: your change was refused.' : `The server refused a change: ${state.error.message}`)
      }
    }

    function showProblem (text) {
      problem.textContent = text
      problem.hidden = false
      session.clearError()
    }

    function toggleHistory () {
      const open = drawer.hidden
      drawer.hidden = !open
      historyToggle.setAttribute('aria-expanded', String(open))
      if (open) {
        history.refresh()
        drawer.querySelector('button, textarea, select')?.focus()
      } else {
        historyToggle.focus()
      }
    }
    drawer.addEventListener('keydown', (event) => { if (event.key === 'Escape') toggleHistory() })

    update()
    showValidation()
    session.start()
  }

  return {
    destroy () {
      destroyed = true
      if (window.rcms?.session && parts.includes(window.rcms.session)) delete window.rcms
      for (const part of parts.reverse()) part.destroy()
    },
  }
}
