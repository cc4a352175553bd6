// Sign-in form: POST /api/v1/auth/login; the server answers with an HttpOnly session cookie.
import { api, describe, REMEMBERED } from '../api.js'
import { h } from '../dom.js'

export function loginPage ({ onSignedIn }) {
  const login = h('input', { id: 'login-name', name: 'login', autocomplete: 'username', required: true })
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })
  const remember = h('input', { id: 'login-remember', name: 'remember', type: 'checkbox' })
  const message = h('p', { class: 'error', role: 'alert', hidden: true })
  const submit = h('button', { type: 'submit' }, 'Sign in')

  async function onsubmit (event) {
    event.preventDefault()
    submit.disabled = true
    message.hidden = true
    try {
      await api.post('/api/v1/auth/login', { login: login.value, password: password.value, remember: remember.checked })
      if (remember.checked) localStorage.setItem(REMEMBERED, '1')
      await onSignedIn()
    } catch (error) {
      message.textContent = error.status === 401 ? 'Wrong username or password.' : describe(error)
      message.hidden = false
      password.select()
    } finally {
      submit.disabled = false
    }
  }

  const element = h('main', { class: 'login' },
    h('h1', {}, 'Sign in to realtime_cms'),
    h('form', { onsubmit, class: 'card' },
      h('label', { for: 'login-name' }, 'Username or email'), login,
      h('label', { for: 'login-password' }, 'Password'), password,
      h('label', { class: 'inline', for: 'login-remember' }, remember, ' Keep me signed in'),
      message,
      submit,
    ),
  )
  return { element, focus: () => login.focus() }
}
