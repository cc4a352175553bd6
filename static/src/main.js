// The app's entry point: who is signed in, and which page the location hash asks for.
//   #/login          sign in
//   #/items          the content list (the default)
//   #/items/<id>     the editor of content item <id>
//   #/background     background work: queues, jobs, batches, workers and their alerts
//                    (jobs.view, workers.view)
import { api, onUnauthorized, REMEMBERED } from './api.js'
import { h, replace } from './dom.js'
import { loginPage } from './views/login.js'
import { listPage } from './views/list.js'
import { editorPage } from './editor/page.js'
import { backgroundPage } from './views/background.js'

const root = document.getElementById('app')
let me = null // GET /api/v1/auth/me's data, once signed in
let current = null // the shown page: { destroy() }

// False when there is certainly no session cookie: the server says so in the page it
// serves, and it is so after signing out. The sign-in form then shows without a refused
// (401) request first.
let mayHaveSession = document.documentElement.dataset.signedIn !== 'false'

async function whoAmI () {
  if (!mayHaveSession) {
    if (!(localStorage.getItem(REMEMBERED) && await resume())) return null
    mayHaveSession = true
  }
  try {
    me = (await api.get('/api/v1/auth/me')).data
  } catch (error) {
    if (error.status !== 401) throw error
    me = null
    mayHaveSession = false
    if (localStorage.getItem(REMEMBERED) && await resume()) return whoAmI()
  }
  return me
}

// Trade the HttpOnly remember-me cookie for a new session; false once it no longer works.
async function resume () {
  try {
    await api.post('/api/v1/auth/remember', {})
    return true
  } catch {
    localStorage.removeItem(REMEMBERED)
    return false
  }
}

function header () {
  const name = me.user.first_name || me.user.username
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/items' }, 'realtime_cms'),
    seesBackgroundWork() ? h('a', { class: 'nav', href: '#/background' }, 'Background work') : null,
    h('span', { class: 'who' }, 'Signed in as ', h('strong', {}, name)),
    h('button', { type: 'button', class: 'secondary', onclick: logout }, 'Sign out'),
  )
}

function seesBackgroundWork () {
  return me.permissions.includes('jobs.view') || me.permissions.includes('workers.view')
}

async function logout () {
  try {
    await api.post('/api/v1/auth/logout')
  } finally {
    localStorage.removeItem(REMEMBERED)
    mayHaveSession = false
    me = null
    location.hash = '#/login'
  }
}

async function route () {
  current?.destroy?.()
  current = null
  const hash = location.hash || '#/items'
  if (!me && !(await whoAmI())) {
    if (hash !== '#/login') sessionStorage.setItem('rcms-after-login', hash)
    const page = loginPage({
      onSignedIn: async () => {
        mayHaveSession = true
        await whoAmI()
        const target = sessionStorage.getItem('rcms-after-login') || '#/items'
        sessionStorage.removeItem('rcms-after-login')
        if (location.hash === target) route()
        else location.hash = target
      },
    })
    replace(root, page.element)
    page.focus()
    current = page
    return
  }
  if (hash === '#/login') {
    location.hash = '#/items'
    return
  }
  const match = /^#\/items\/(\d+)$/.exec(hash)
  const main = h('main', { id: 'main', tabindex: '-1' })
  replace(root, h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus() } }, 'Skip to content'), header(), main)
  if (match) current = editorPage(main, { me, itemId: Number(match[1]) })
  else if (hash === '#/background') current = backgroundPage(main, { me })
  else current = listPage(main, { me })
}

onUnauthorized(() => {
  if (me) {
    me = null
    mayHaveSession = false
    route()
  }
})
window.addEventListener('hashchange', route)
route().catch((error) => replace(root, h('p', { class: 'error', role: 'alert' }, `The app could not start: ${error.message}`)))
