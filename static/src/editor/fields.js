// Inputs bound to the document's `fields` Y.Map: title, slug, excerpt and the custom fields
// of the item's type. Each input writes its whole value under its key (last writer wins
// per field); remote changes update the input without moving a focused caret.
import { h, uid } from '../dom.js'

// Transaction origin of this module's writes, so their echo does not rewrite the input.
const LOCAL = Symbol('fields-input')

const STANDARD = [
  { field_name: 'title', field_label: 'Title', field_type: 'text', options: { max_length: 255 }, standard: true },
  { field_name: 'slug', field_label: 'Slug', field_type: 'text', options: { max_length: 255 }, standard: true, hint: 'lowercase letters, digits and single hyphens' },
  { field_name: 'excerpt', field_label: 'Excerpt', field_type: 'textarea', options: {}, standard: true },
]

const plain = (value) => (value && typeof value.toJSON === 'function' ? value.toJSON() : value)
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

// Per field type: the control, how to show a value in it, how to read it back.
// `read` answers undefined when the input holds nothing writable yet (a local message says why).
const KINDS = {
  text: { control: (id, o) => h('input', { id, type: 'text', maxlength: o.max_length }), show: (el, v) => { el.value = v ?? '' }, read: (el, std) => (el.value === '' && !std ? null : el.value) },
  textarea: { control: (id, o) => h('textarea', { id, rows: 3, maxlength: o.max_length }), show: (el, v) => { el.value = v ?? '' }, read: (el, std) => (el.value === '' && !std ? null : el.value) },
  url: { control: (id) => h('input', { id, type: 'url', inputmode: 'url' }), show: (el, v) => { el.value = v ?? '' }, read: (el) => el.value || null },
  email: { control: (id) => h('input', { id, type: 'email' }), show: (el, v) => { el.value = v ?? '' }, read: (el) => el.value || null },
  number: {
    control: (id, o) => h('input', { id, type: 'number', step: o.integer ? 1 : 'any', inputmode: 'decimal' }),
    show: (el, v) => { el.value = v ?? '' },
    read: (el) => (el.validity.badInput ? undefined : el.value === '' ? null : Number(el.value)),
    local: (el) => (el.validity.badInput ? 'not a number' : ''),
  },
  boolean: { control: (id) => h('input', { id, type: 'checkbox' }), show: (el, v) => { el.checked = v === true }, read: (el) => el.checked, event: 'change' },
  date: { control: (id) => h('input', { id, type: 'date' }), show: (el, v) => { el.value = v ?? '' }, read: (el) => el.value || null, event: 'change' },
  datetime: {
    // Shown and entered in UTC; the server keeps ISO 8601 with a Z.
    control: (id) => h('input', { id, type: 'datetime-local', step: 1 }),
    show: (el, v) => { el.value = typeof v === 'string' ? v.replace(/Z$|[+-]00:00$/, '').slice(0, 19) : '' },
    read: (el) => (el.value ? `${el.value.length === 16 ? `${el.value}:00` : el.value}Z` : null),
    event: 'change',
  },
  select: {
    control: (id, o) => h('select', { id }, h('option', { value: '' }, '(none)'), (o.choices || []).map((c) => h('option', { value: c }, c))),
    show: (el, v) => { el.value = v ?? '' },
    read: (el) => el.value || null,
    event: 'change',
  },
  multiselect: {
    control: (id, o) => h('div', { id, class: 'choices', role: 'group' },
      (o.choices || []).map((c) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', value: c }), ` ${c}`))),
    show: (el, v) => { for (const box of el.querySelectorAll('input')) box.checked = Array.isArray(v) && v.includes(box.value) },
    read: (el) => [...el.querySelectorAll('input:checked')].map((box) => box.value),
    event: 'change',
  },
  json: {
    control: (id) => h('textarea', { id, rows: 4, class: 'code', spellcheck: false }),
    show: (el, v) => {
      if (document.activeElement === el && (() => { try { return same(JSON.parse(el.value), v) } catch { return false } })()) return
      el.value = v === undefined || v === null ? '' : JSON.stringify(v, null, 2)
    },
    read: (el) => { if (el.value.trim() === '') return null; try { return JSON.parse(el.value) } catch { return undefined } },
    local: (el) => { if (el.value.trim() === '') return ''; try { JSON.parse(el.value); return '' } catch { return 'not valid JSON yet: not saved' } },
  },
}

/** Put `value` into a text control, keeping a focused caret where it was (clamped). */
function showKeepingCaret (kind, el, value) {
  const focused = document.activeElement === el && typeof el.selectionStart === 'number'
  const [start, end] = focused ? [el.selectionStart, el.selectionEnd] : [0, 0]
  kind.show(el, value)
  if (focused) {
    try { el.setSelectionRange(Math.min(start, el.value.length), Math.min(end, el.value.length)) } catch { /* not a text input */ }
  }
}

/**
 * Build the field inputs for `definitions` (GET /content-types/{id}/fields) bound to
 * `fields` (Y.Map). Answers { element, setReadOnly(bool), setValidation(map), destroy() }.
 */
export function fieldsForm ({ doc, fields, definitions }) {
  const rows = new Map() // field name -> { def, kind, control, message, local }
  const specs = [...STANDARD, ...definitions.map((d) => ({ ...d, options: d.options || {} }))]
  const element = h('div', { class: 'fields' })
  let serverMessages = {}

  for (const def of specs) {
    const kind = KINDS[def.field_type] || KINDS.text
    const id = uid(`field-${def.field_name}`)
    const messageId = `${id}-message`
    const control = kind.control(id, def.options)
    control.dataset.field = def.field_name
    control.setAttribute('aria-describedby', def.hint ? `${id}-hint ${messageId}` : messageId)
    const message = h('p', { id: messageId, class: 'field-message', 'aria-live': 'polite' })
    const label = def.field_type === 'multiselect'
      ? h('span', { class: 'label', id: `${id}-label` }, def.field_label)
      : h('label', { for: id }, def.field_label)
    if (def.field_type === 'multiselect') control.setAttribute('aria-labelledby', `${id}-label`)
    const required = def.is_required ? h('span', { class: 'muted' }, ' (required to publish)') : null
    const hint = def.hint ? h('span', { class: 'muted hint', id: `${id}-hint` }, def.hint) : null
    const wrapper = h('div', { class: `field field-${def.field_type}${def.field_type === 'boolean' ? ' field-inline' : ''}` },
      def.field_type === 'boolean' ? [control, label, required] : [label, required, hint, control], message)
    const row = { def, kind, control, message, local: '' }
    rows.set(def.field_name, row)
    element.append(wrapper)

    control.addEventListener(kind.event || 'input', () => {
      row.local = kind.local ? kind.local(control) : ''
      const value = kind.read(control, def.standard)
      if (value !== undefined && !same(plain(fields.get(def.field_name)) ?? null, value)) {
        doc.transact(() => {
          if (value === null) fields.delete(def.field_name)
          else fields.set(def.field_name, value)
        }, LOCAL)
      }
      renderMessage(row)
    })
  }

  function renderMessage (row) {
    const text = row.local || serverMessages[row.def.field_name] || ''
    row.message.textContent = text
    row.control.toggleAttribute('aria-invalid', Boolean(text))
    row.control.closest('.field').classList.toggle('invalid', Boolean(text))
  }

  function showValue (name) {
    const row = rows.get(name)
    if (!row) return
    const value = plain(fields.get(name))
    if (!same(row.kind.read(row.control, row.def.standard) ?? null, value ?? null)) showKeepingCaret(row.kind, row.control, value)
    row.local = ''
    renderMessage(row)
  }

  // Deep: a JSON object value the server seeded is a nested Y.Map.
  const observer = (events, transaction) => {
    if (transaction.origin === LOCAL) return
    const changed = new Set()
    for (const event of events) {
      if (event.target === fields) for (const name of event.keysChanged) changed.add(name)
      else changed.add(event.path[0])
    }
    for (const name of changed) showValue(name)
  }
  fields.observeDeep(observer)
  for (const name of rows.keys()) showValue(name)

  return {
    element,
    setReadOnly (readOnly) {
      for (const { control } of rows.values()) {
        const inputs = control.matches('input, select, textarea') ? [control] : control.querySelectorAll('input')
        for (const input of inputs) input.disabled = readOnly
      }
    },
    setValidation (messages) {
      serverMessages = messages || {}
      for (const row of rows.values()) renderMessage(row)
    },
    destroy () { fields.unobserveDeep(observer) },
  }
}
