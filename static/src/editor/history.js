// The version history panel: the item's versions (who, when, notes, autosave), a diff of
// any two, "save version" with notes, and restore. A restore is applied by the server to
// the live document, so everyone in it sees the restored text arrive as edits.
import { api, describe, query } from '../api.js'
import { h, replace, when } from '../dom.js'
import { userName } from '../users.js'

export function historyPanel ({ itemId, canSave, canRestore }) {
  const base = `/api/v1/content-items/${itemId}/versions`
  let versions = []
  let mayWrite = false // the live seat's role allows writing
  let loading = null

  const notes = h('textarea', { id: 'version-notes', rows: 2, maxlength: 10000, placeholder: 'What changed?' })
  const saveButton = h('button', { type: 'submit' }, 'Save version')
  const status = h('p', { class: 'muted', role: 'status' })
  const error = h('p', { class: 'error', role: 'alert', hidden: true })
  const list = h('ol', { class: 'versions', 'aria-label': 'Versions, newest first' })
  // Until someone picks versions to compare, the two newest are preselected.
  let picked = false
  const fromSelect = h('select', { id: 'diff-from', onchange: () => { picked = true } })
  const toSelect = h('select', { id: 'diff-to', onchange: () => { picked = true } })
  const diffOut = h('div', { class: 'diff', 'aria-live': 'polite' })

  const saveForm = h('form', { class: 'save-version', onsubmit: save },
    h('label', { for: 'version-notes' }, 'Notes for a new version'), notes, saveButton)
  const element = h('section', { class: 'history', 'aria-labelledby': 'history-title' },
    h('div', { class: 'history-head' },
      h('h2', { id: 'history-title' }, 'Version history'),
      h('button', { type: 'button', class: 'secondary', onclick: () => refresh() }, 'Refresh'),
    ),
    canSave ? saveForm : null,
    error, status, list,
    h('form', { class: 'compare', onsubmit: compare },
      h('h3', {}, 'Compare versions'),
      h('div', { class: 'row' },
        h('div', {}, h('label', { for: 'diff-from' }, 'From'), fromSelect),
        h('div', {}, h('label', { for: 'diff-to' }, 'To'), toSelect),
        h('button', { type: 'submit', class: 'secondary' }, 'Show changes'),
      ),
    ),
    diffOut,
  )

  function fail (e) { error.textContent = describe(e); error.hidden = false }

  function refresh () {
    error.hidden = true
    loading = api.get(`${base}${query({ limit: 100 })}`).then((page) => {
      versions = page.data
      status.textContent = versions.length ? `${page.meta.total} version${page.meta.total === 1 ? '' : 's'}` : 'No versions yet.'
      replace(list, versions.map(row))
      const options = () => versions.map((v) => h('option', { value: v.id }, `v${v.version_number} — ${when(v.created_at)}`))
      const listed = (id) => versions.some((v) => String(v.id) === id)
      const [from, to] = [fromSelect.value, toSelect.value]
      replace(fromSelect, options())
      replace(toSelect, options())
      const keep = picked && listed(from) && listed(to)
      toSelect.value = keep ? to : String(versions[0]?.id ?? '')
      fromSelect.value = keep ? from : String(versions[1]?.id ?? versions[0]?.id ?? '')
    }, fail).finally(() => { loading = null })
    return loading
  }

  function row (version) {
    const who = h('span', { class: 'who' }, version.username || '…')
    if (!version.username) userName(version.user_id).then((name) => { who.textContent = name })
    const actions = h('div', { class: 'actions' })
    if (canRestore) actions.append(restoreButton(version, actions))
    return h('li', { class: 'version', dataset: { versionId: version.id, versionNumber: version.version_number } },
      h('div', {},
        h('strong', {}, `v${version.version_number}`), ' ',
        version.is_autosave ? h('span', { class: 'badge' }, 'autosave') : h('span', { class: 'badge manual' }, 'saved'),
        ' by ', who, ' · ', h('time', { datetime: version.created_at || '' }, when(version.created_at)),
      ),
      version.notes ? h('p', { class: 'notes' }, version.notes) : null,
      actions,
    )
  }

  // Two steps, without a blocking dialog: "Restore", then "Confirm restore" or "Cancel".
  function restoreButton (version, actions) {
    const label = `Restore v${version.version_number}`
    const button = h('button', { type: 'button', class: 'secondary restore', disabled: !mayWrite, onclick: ask }, label)
    function ask () {
      const confirm = h('button', { type: 'button', class: 'danger', onclick: go }, `Confirm restore of v${version.version_number}`)
      const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => { replace(actions, restoreButton(version, actions)); actions.firstChild.focus() } }, 'Cancel')
      replace(actions, confirm, cancel)
      confirm.focus()
    }
    async function go () {
      replace(actions, h('span', { class: 'muted' }, 'Restoring…'))
      try {
        const made = await api.post(`${base}/${version.id}/restore`)
        await refresh()
        status.textContent = `Restored v${version.version_number} (recorded as v${made.data.version_number}).`
      } catch (e) {
        fail(e)
        replace(actions, restoreButton(version, actions))
      }
    }
    return button
  }

  async function save (event) {
    event.preventDefault()
    saveButton.disabled = true
    try {
      const made = await api.post(base, { notes: notes.value.trim() || null })
      notes.value = ''
      await refresh()
      status.textContent = `Saved v${made.data.version_number}.`
    } catch (e) {
      fail(e)
    } finally {
      saveButton.disabled = !mayWrite
    }
  }

  async function compare (event) {
    event.preventDefault()
    if (!fromSelect.value || !toSelect.value) return
    try {
      const diff = (await api.get(`${base}/diff${query({ from: fromSelect.value, to: toSelect.value })}`)).data
      replace(diffOut, renderDiff(diff))
    } catch (e) {
      fail(e)
    }
  }

  return {
    element,
    refresh,
    /** Writing controls follow the live seat: a read seat can only look. */
    setWritable (writable) {
      mayWrite = writable
      saveButton.disabled = !writable
      notes.disabled = !writable
      for (const button of list.querySelectorAll('button.restore')) button.disabled = !writable
    },
  }
}

function renderDiff (diff) {
  const title = h('h3', {}, `Changes from v${diff.from_version.version_number} to v${diff.to_version.version_number}`)
  if (!diff.hunks.length && !diff.fields.length) return [title, h('p', { class: 'muted' }, 'No differences.')]
  const fields = diff.fields.length
    ? h('table', { class: 'field-changes' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
      h('tbody', {}, diff.fields.map((f) => h('tr', { class: `change-${f.change}` },
        h('th', { scope: 'row' }, f.field), h('td', {}, show(f.old)), h('td', {}, show(f.new))))))
    : null
  const hunks = diff.hunks.map((hunk) => h('pre', { class: 'hunk' },
    h('span', { class: 'hunk-head' }, `@@ -${hunk.old_start},${hunk.old_lines} +${hunk.new_start},${hunk.new_lines} @@\n`),
    hunk.lines.map((line) => {
      const kind = line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : 'ctx'
      const sr = kind === 'add' ? 'added: ' : kind === 'del' ? 'removed: ' : ''
      return h('span', { class: `line ${kind}` }, sr ? h('span', { class: 'sr-only' }, sr) : null, `${line}\n`)
    })))
  return [title, fields, h('div', { class: 'body-diff', 'aria-label': 'Body changes' }, hunks)]
}

function show (value) {
  if (value === null || value === undefined) return '—'
  return typeof value === 'string' ? value : JSON.stringify(value)
}
