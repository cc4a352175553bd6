// "Background work": queue depth, failed, running and queued jobs (retry, cancel, discard),
// batches with their progress, the worker processes' health and the open heartbeat alerts
// (suppress, unsuppress), kept live by the `jobs`, `batches` and `alerts` pushes of
// `/notifications`.
//
// The pushes carry queue depth and which jobs changed; the lists are read again over REST
// (at most once a second) when jobs changed, and after every reconnect, so a push lost while
// offline costs nothing. A batch push updates its row in place. Worker heartbeats are not
// pushed: the workers (and alerts, for users who see workers but not jobs) are read every 5 s.
import { io } from 'socket.io-client'
import { api, describe, query } from '../api.js'
import { h, replace, when } from '../dom.js'

const REFRESH_GAP_MS = 1000
const WORKERS_EVERY_MS = 5000
const ALERTS_GAP_MS = 250
const BATCHES_QUERY = { sort: '-created_at', limit: 20 }
const LISTS = [
  { key: 'failed', title: 'Failed jobs', empty: 'No failed jobs.', params: { 'filter[status]': 'failed', sort: '-completed_at', limit: 50 } },
  { key: 'running', title: 'Running', empty: 'Nothing running.', params: { 'filter[status]': 'processing', sort: 'started_at', limit: 50 } },
  { key: 'queued', title: 'Queued', empty: 'Nothing queued.', params: { 'filter[status]': 'queued', sort: 'run_at', limit: 20 } },
]

function seconds (value) {
  if (value === null || value === undefined) return '—'
  if (value < 90) return `${Math.round(value)} s`
  if (value < 5400) return `${Math.round(value / 60)} min`
  return `${Math.round(value / 3600)} h`
}

function age (iso) {
  return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : null
}

// `fn` run once at most every `gapMs`, however often it is asked for.
function throttled (fn, gapMs) {
  let timer = null
  return () => {
    if (!timer) timer = setTimeout(() => { timer = null; fn() }, gapMs)
  }
}

export function backgroundPage (main, { me }) {
  const can = (permission) => me.permissions.includes(permission)
  const manage = can('jobs.manage')
  const manageWorkers = can('workers.manage')
  const connection = h('span', { class: 'connection', 'data-state': 'connecting' }, 'connecting')
  const error = h('p', { class: 'error', role: 'alert', hidden: true })
  const queues = h('tbody')
  const lists = Object.fromEntries(LISTS.map((list) => [list.key, h('ul', { class: 'jobs', id: `jobs-${list.key}`, 'aria-label': list.title })]))
  const workers = h('tbody')
  const alerts = h('tbody')
  const batches = h('ul', { class: 'jobs', id: 'batches', 'aria-label': 'Batches' })
  // Shown once the batches API answered: a server without it (404) has no such section.
  const batchesCard = h('section', { class: 'card work', hidden: true }, h('h2', {}, 'Batches'), batches)
  let batchesAvailable = can('jobs.view')
  let refreshTimer = null
  let refreshing = false
  let again = null
  let lastRefresh = 0
  let destroyed = false

  if (!can('jobs.view') && !can('workers.view')) {
    replace(main, h('h1', {}, 'Background work'), h('p', { class: 'error', role: 'alert' }, 'Seeing background work needs the jobs.view or workers.view permission.'))
    return { destroy () {} }
  }

  replace(main,
    h('div', { class: 'list-head' }, h('h1', {}, 'Background work'), connection),
    error,
    can('jobs.view') ? [
      h('section', { class: 'card work' },
        h('h2', {}, 'Queues'),
        h('div', { class: 'scroll' }, h('table', { class: 'grid', id: 'queues' },
          h('thead', {}, h('tr', {}, ['Queue', 'Due now', 'Waiting', 'Running', 'Failed', 'Oldest due'].map((t) => h('th', { scope: 'col' }, t)))),
          queues)),
      ),
      ...LISTS.map((list) => h('section', { class: 'card work' }, h('h2', {}, list.title), lists[list.key])),
      batchesCard,
    ] : null,
    can('workers.view') ? h('section', { class: 'card work' },
      h('h2', {}, 'Workers'),
      h('div', { class: 'scroll' }, h('table', { class: 'grid', id: 'workers' },
        h('thead', {}, h('tr', {}, ['Process', 'Status', 'Heartbeat', 'Workload', 'Memory', 'Health', 'Failures'].map((t) => h('th', { scope: 'col' }, t)))),
        workers)),
    ) : null,
    can('workers.view') ? h('section', { class: 'card work' },
      h('h2', {}, 'Open alerts'),
      h('p', { class: 'muted' }, 'Worker processes gone silent. Suppressing an alert acknowledges it: nobody is notified of it again, its escalation is still recorded.'),
      h('div', { class: 'scroll' }, h('table', { class: 'grid', id: 'alerts' },
        h('thead', {}, h('tr', {}, ['Worker', 'Level', 'Silent since', 'Failures', 'State', manageWorkers ? 'Action' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
        alerts)),
    ) : null,
  )

  function fail (e) {
    error.textContent = describe(e)
    error.hidden = false
  }

  function renderQueues (rows) {
    replace(queues, rows.map((q) => h('tr', { dataset: { queue: q.queue } },
      h('th', { scope: 'row' }, q.queue),
      h('td', { class: 'due' }, String(q.due)),
      h('td', {}, String(q.queued - q.due)),
      h('td', { class: 'processing' }, String(q.processing)),
      h('td', { class: q.failed ? 'failed bad' : 'failed' }, String(q.failed)),
      h('td', {}, q.oldest_due_at ? `${seconds(age(q.oldest_due_at))} ago` : '—'),
    )))
  }

  function actions (job) {
    if (!manage) return null
    const buttons = []
    if (job.status === 'failed' || job.status === 'cancelled') buttons.push(['Retry', 'retry', 'POST', `/api/v1/jobs/${job.id}/retry`])
    if (job.status === 'queued') buttons.push(['Cancel', 'cancel', 'POST', `/api/v1/jobs/${job.id}/cancel`])
    if (['completed', 'failed', 'cancelled'].includes(job.status)) buttons.push(['Discard', 'discard', 'DELETE', `/api/v1/jobs/${job.id}`])
    return h('div', { class: 'actions' }, buttons.map(([label, action, method, path]) => h('button', {
      type: 'button',
      class: action === 'retry' ? '' : 'secondary',
      dataset: { action },
      'aria-label': `${label} ${job.type} job ${job.id}`,
      onclick: async (event) => {
        event.currentTarget.disabled = true
        error.hidden = true
        try {
          await (method === 'DELETE' ? api.delete(path) : api.post(path))
        } catch (e) {
          fail(e)
        }
        refresh(true)
      },
    }, label)))
  }

  function jobRow (job) {
    const timing = job.status === 'processing' ? `started ${when(job.started_at)}`
      : job.status === 'queued' ? `due ${when(job.run_at)}`
        : `ended ${when(job.completed_at)}`
    return h('li', { class: 'job', dataset: { id: job.id, status: job.status } },
      h('div', { class: 'job-head' },
        h('strong', {}, job.type),
        h('span', { class: `status status-${job.status}` }, job.status),
        h('span', { class: 'muted' }, `queue ${job.queue}`),
        h('span', { class: 'muted' }, `attempt ${job.attempts} of ${job.max_attempts}`),
        h('span', { class: 'muted' }, timing),
      ),
      job.last_error ? h('pre', { class: 'job-error' }, job.last_error) : null,
      actions(job),
    )
  }

  async function loadLists () {
    const pages = await Promise.all(LISTS.map((list) => api.get(`/api/v1/jobs${query(list.params)}`)))
    LISTS.forEach((list, i) => {
      const page = pages[i]
      replace(lists[list.key], page.data.length ? page.data.map(jobRow) : h('li', { class: 'muted empty' }, list.empty))
      if (page.meta.total > page.data.length) lists[list.key].append(h('li', { class: 'muted' }, `and ${page.meta.total - page.data.length} more`))
    })
  }

  async function loadWorkers () {
    if (!can('workers.view')) return
    const page = await api.get(`/api/v1/workers${query({ 'filter[status][in]': 'idle,working,failed', sort: '-created_at', limit: 50 })}`)
    replace(workers, page.data.length ? page.data.map((w) => h('tr', { dataset: { id: w.id, alive: String(w.alive) } },
      h('th', { scope: 'row' }, `${w.hostname || '?'}:${w.pid ?? '?'}`, h('span', { class: 'muted' }, ` ${w.kind}`)),
      h('td', {}, h('span', { class: `status ${w.alive ? 'status-published' : 'status-failed'}` }, w.alive ? w.status : `${w.status} (not heartbeating)`)),
      h('td', {}, `${seconds(w.heartbeat_age_seconds)} ago`),
      h('td', {}, `${w.current_workload ?? 0} / ${w.max_workload ?? '?'}`),
      h('td', {}, w.memory_mb ? `${w.memory_mb} MB` : '—'),
      h('td', {}, w.health_score ?? '—'),
      h('td', {}, w.failure_count ?? 0),
    )) : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No worker process is running.')))
  }

  function alertRow (alert) {
    const worker = `${alert.hostname || '?'}:${alert.pid ?? '?'}`
    const state = alert.is_suppressed ? 'suppressed' : 'notifying'
    return h('tr', { dataset: { id: String(alert.id), worker: alert.worker_id, suppressed: String(alert.is_suppressed) } },
      h('th', { scope: 'row' }, worker),
      h('td', { class: 'level' }, `level ${Math.max((alert.next_alert_level ?? 1) - 1, 1)}`),
      h('td', {}, alert.last_heartbeat ? `${when(alert.last_heartbeat)} (${seconds(age(alert.last_heartbeat))})` : '—'),
      h('td', { class: 'failures' }, String(alert.failure_count ?? 0)),
      h('td', {}, h('span', { class: `status state ${alert.is_suppressed ? 'status-cancelled' : 'status-failed'}` }, state)),
      manageWorkers ? h('td', {}, h('button', {
        type: 'button',
        class: 'secondary',
        dataset: { action: alert.is_suppressed ? 'unsuppress' : 'suppress' },
        'aria-label': `${alert.is_suppressed ? 'Unsuppress' : 'Suppress'} the alert of worker ${worker}`,
        onclick: async (event) => {
          event.currentTarget.disabled = true
          error.hidden = true
          try {
            await api.patch(`/api/v1/alerts/${alert.id}`, { suppressed: !alert.is_suppressed })
          } catch (e) {
            fail(e)
          }
          refreshAlerts()
        },
      }, alert.is_suppressed ? 'Unsuppress' : 'Suppress')) : null,
    )
  }

  async function loadAlerts () {
    if (destroyed || !can('workers.view')) return
    const page = await api.get(`/api/v1/alerts${query({ limit: 50 })}`)
    replace(alerts, page.data.length ? page.data.map(alertRow) : h('tr', {}, h('td', { colspan: manageWorkers ? 6 : 5, class: 'muted' }, 'No open alerts.')))
  }
  const refreshAlerts = throttled(() => loadAlerts().catch(fail), ALERTS_GAP_MS)

  function progress (batch) {
    const ended = batch.completed + batch.failed
    return [
      h('progress', { max: String(Math.max(batch.total, 1)), value: String(ended), 'aria-label': `batch ${batch.id} progress` }),
      ' ',
      h('span', { class: 'muted counts' }, `${batch.completed} done, ${batch.failed} failed, ${batch.total - ended} pending of ${batch.total}`),
    ]
  }

  function batchRow (batch) {
    return h('li', { class: 'job batch', dataset: { id: String(batch.id), status: batch.status } },
      h('div', { class: 'job-head' },
        h('strong', {}, batch.type),
        h('span', { class: `status status-${batch.status}` }, batch.status),
        h('span', { class: 'muted' }, `created ${when(batch.created_at)}`),
      ),
      h('div', { class: 'batch-progress' }, progress(batch)),
    )
  }

  async function loadBatches () {
    if (destroyed || !batchesAvailable) return
    let page
    try {
      page = await api.get(`/api/v1/batches${query(BATCHES_QUERY)}`)
    } catch (e) {
      if (e.status !== 404 && e.status !== 403) throw e
      batchesAvailable = false
      batchesCard.hidden = true
      return
    }
    replace(batches, page.data.length ? page.data.map(batchRow) : h('li', { class: 'muted empty' }, 'No batches.'))
    batchesCard.hidden = false
  }
  const refreshBatches = throttled(() => loadBatches().catch(fail), REFRESH_GAP_MS)

  // A pushed batch: its row updated in place; a batch not shown yet reads the list again.
  function batchPushed (pushed) {
    if (!batchesAvailable) return
    const row = batches.querySelector(`li.batch[data-id="${pushed.id}"]`)
    if (!row) {
      refreshBatches()
      return
    }
    row.dataset.status = pushed.status
    const badge = row.querySelector('.status')
    badge.className = `status status-${pushed.status}`
    badge.textContent = pushed.status
    replace(row.querySelector('.batch-progress'), progress(pushed))
  }

  // Reads queues and lists again: at once with `now`, else at most once per REFRESH_GAP_MS.
  // A call while a read is under way is kept for right after it.
  function refresh (now = false) {
    if (destroyed || !can('jobs.view')) return
    if (refreshing) {
      again = again || (now ? 'now' : 'later')
      return
    }
    if (refreshTimer && !now) return
    clearTimeout(refreshTimer)
    refreshTimer = setTimeout(reload, now ? 0 : Math.max(0, lastRefresh + REFRESH_GAP_MS - Date.now()))
  }

  async function reload () {
    refreshTimer = null
    lastRefresh = Date.now()
    refreshing = true
    try {
      await Promise.all([api.get('/api/v1/queues').then((page) => renderQueues(page.data)), loadLists(), loadBatches()])
    } catch (e) {
      fail(e)
    } finally {
      refreshing = false
    }
    const next = again
    again = null
    if (next) refresh(next === 'now')
  }

  const socket = io('/notifications', { path: '/socket.io/', transports: ['websocket'] })
  const setState = (state, text) => { connection.dataset.state = state; connection.textContent = text }
  socket.on('connect', () => { setState('connected', 'live'); refresh(true); refreshAlerts() })
  socket.on('disconnect', () => setState('reconnecting', 'reconnecting'))
  socket.on('connect_error', () => setState('reconnecting', 'reconnecting'))
  socket.on('jobs', (push) => {
    if (push.queues) renderQueues(push.queues)
    if (push.changes.length || push.more) refresh()
  })
  socket.on('batches', (push) => push.batches.forEach(batchPushed))
  socket.on('alerts', () => refreshAlerts())

  const workersTimer = setInterval(() => Promise.all([loadWorkers(), loadAlerts()]).catch(fail), WORKERS_EVERY_MS)
  loadWorkers().catch(fail)
  loadAlerts().catch(fail)
  refresh(true)

  return {
    destroy () {
      destroyed = true
      clearTimeout(refreshTimer)
      clearInterval(workersTimer)
      socket.disconnect()
    },
  }
}
