/**
 * The demo page (static/notifications-demo.html): sign in with the session cookie, then send
 * yourself a notification through `POST /api/v1/notifications/send`; the bell on the page
 * (mounted by its own script tag) shows it live.
 */

const API = '/api/v1'

async function api (method, path, body) {
  const response = await fetch(API + path, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined
  })
  const data = response.status === 204 ? null : await response.json().catch(() => null)
  if (!response.ok) {
    const problem = data || {}
    throw new Error(problem.detail || problem.title || `HTTP ${response.status}`)
  }
  return data?.data ?? data
}

function bindSignIn () {
  const form = document.getElementById('sign-in')
  const status = document.getElementById('sign-in-status')
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    status.textContent = 'Signing in…'
    try {
      await api('POST', '/auth/login', { login: form.login.value, password: form.password.value })
      window.location.reload()
    } catch (error) {
      status.textContent = `Could not sign in: ${error.message}`
    }
  })
}

async function loadCategories (select) {
  try {
    const categories = await api('GET', '/notification-categories?limit=100')
    for (const category of categories) {
      const option = document.createElement('option')
      option.value = String(category.id)
      option.textContent = category.name
      select.append(option)
    }
  } catch {
    // Listing categories needs `notifications.manage`; sending works without one.
  }
}

async function bindSend () {
  const form = document.getElementById('send')
  const status = document.getElementById('send-status')
  const me = await api('GET', '/auth/me')
  if (!me.permissions.includes('notifications.send')) {
    status.textContent = 'Your roles lack notifications.send: ask an admin to send you one.'
  }
  loadCategories(form.category)
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    status.textContent = 'Sending…'
    const body = {
      user_ids: [me.user.id],
      title: form.title.value,
      message: form.message.value,
      type: form.type.value
    }
    if (form.category.value) body.category_id = Number(form.category.value)
    try {
      const sent = await api('POST', '/notifications/send', body)
      status.textContent = sent.stored
        ? 'Sent: watch the bell.'
        : `Stored for later (${sent.queued} queued for a digest, ${sent.emails} by mail): see your preferences.`
    } catch (error) {
      status.textContent = `Could not send: ${error.message}`
    }
  })
}

document.addEventListener('DOMContentLoaded', () => {
  if (document.documentElement.dataset.signedIn === 'true') {
    bindSend().catch((error) => {
      document.getElementById('send-status').textContent = error.message
    })
  } else {
    bindSignIn()
  }
})
