// The content list: filter by type and status, search titles, open an item, create a new one.
import { api, describe, query } from '../api.js'
import { h, replace, when } from '../dom.js'

const STATUSES = ['draft', 'scheduled', 'published', 'archived', 'expired']
const PAGE = 50

export function listPage (main, { me }) {
  const canCreate = me.permissions.includes('content.create')
  let types = []
  let offset = 0
  let searchTimer = null

  const typeFilter = h('select', { id: 'filter-type', onchange: () => load() }, h('option', { value: '' }, 'All types'))
  const statusFilter = h('select', { id: 'filter-status', onchange: () => load() },
    h('option', { value: '' }, 'Any status'), STATUSES.map((s) => h('option', { value: s }, s)))
  const search = h('input', { id: 'filter-q', type: 'search', placeholder: 'Title or excerpt', oninput: () => { clearTimeout(searchTimer); searchTimer = setTimeout(load, 250) } })
  const list = h('ul', { class: 'items', 'aria-label': 'Content items' })
  const summary = h('p', { class: 'muted', role: 'status' })
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => load(offset) }, 'Show more')
  const error = h('p', { class: 'error', role: 'alert', hidden: true })

  replace(main,
    h('div', { class: 'list-head' },
      h('h1', {}, 'Content'),
      canCreate ? createForm() : null,
    ),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); load() } },
      h('div', {}, h('label', { for: 'filter-q' }, 'Search'), search),
      h('div', {}, h('label', { for: 'filter-type' }, 'Filter by type'), typeFilter),
      h('div', {}, h('label', { for: 'filter-status' }, 'Filter by status'), statusFilter),
    ),
    error, summary, list, more,
  )

  function typeName (id) { return types.find((t) => t.id === id)?.name || `type ${id}` }

  async function load (from = 0) {
    error.hidden = true
    const params = {
      q: search.value.trim(),
      'filter[content_type_id]': typeFilter.value,
      'filter[status]': statusFilter.value,
      sort: '-updated_at',
      limit: PAGE,
      offset: from,
    }
    try {
      const page = await api.get(`/api/v1/content-items${query(params)}`)
      if (from === 0) list.replaceChildren()
      for (const item of page.data) list.append(row(item))
      offset = from + page.data.length
      summary.textContent = page.meta.total === 0 ? 'No content matches.' : `${page.meta.total} item${page.meta.total === 1 ? '' : 's'}`
      more.hidden = offset >= page.meta.total
    } catch (e) {
      error.textContent = describe(e)
      error.hidden = false
    }
  }

  function row (item) {
    return h('li', { class: 'item' },
      h('a', { href: `#/items/${item.id}` }, item.title),
      h('span', { class: `status status-${item.status}` }, item.status),
      h('span', { class: 'muted' }, typeName(item.content_type_id)),
      h('span', { class: 'muted' }, `updated ${when(item.updated_at || item.created_at)}`),
    )
  }

  function createForm () {
    const type = h('select', { id: 'new-type', required: true })
    const title = h('input', { id: 'new-title', required: true, maxlength: 255 })
    const message = h('p', { class: 'error', role: 'alert', hidden: true })
    const form = h('form', { class: 'card create', onsubmit: create },
      h('h2', {}, 'New item'),
      h('div', { class: 'row' },
        h('div', {}, h('label', { for: 'new-title' }, 'Title'), title),
        h('div', {}, h('label', { for: 'new-type' }, 'Type'), type),
        h('button', { type: 'submit' }, 'Create'),
      ),
      message,
    )
    form.fillTypes = () => replace(type, types.map((t) => h('option', { value: t.id }, t.name)))
    async function create (event) {
      event.preventDefault()
      message.hidden = true
      try {
        const siteId = me.user.site_id || (await api.get('/api/v1/sites?limit=1')).data[0]?.id
        const created = await api.post('/api/v1/content-items', {
          site_id: siteId, content_type_id: Number(type.value), title: title.value,
        })
        location.hash = `#/items/${created.data.id}`
      } catch (e) {
        message.textContent = describe(e)
        message.hidden = false
      }
    }
    return form
  }

  api.get('/api/v1/content-types?limit=200').then((page) => {
    types = page.data
    typeFilter.append(...types.map((t) => h('option', { value: t.id }, t.name)))
    main.querySelector('form.create')?.fillTypes()
    return load()
  }).catch((e) => { error.textContent = describe(e); error.hidden = false })

  return { destroy () { clearTimeout(searchTimer) } }
}
