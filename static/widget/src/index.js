/**
 * The embeddable notification bell of realtime_cms. Either one script tag next to a
 * container element:
 *
 *   <div id="rcms-bell"></div>
 *   <script src="https://cms.example.com/static/widget/dist/rcms-notifications.js"
 *           data-server="https://cms.example.com" defer></script>
 *
 * or the explicit API: `RcmsNotifications.mount(element, {server, token, withCredentials})`.
 */

import { Connection } from './connection.js'
import { NotificationStore } from './store.js'
import { BellView } from './view.js'

const DEFAULTS = {
  maxItems: 50,
  withCredentials: false,
  token: null,
  // WebSocket first (no sticky sessions needed behind a load balancer), polling if it fails.
  transports: ['websocket', 'polling']
}

/**
 * Render the bell into `element` and keep it live.
 * @param {HTMLElement} element  the container (it gets a shadow root)
 * @param {object} options
 * @param {string} [options.server]  the server's origin; default: this page's origin
 * @param {() => string | Promise<string>} [options.token]  returns a session or API token
 *   (called on every connect); without it the session cookie is used
 * @param {boolean} [options.withCredentials]  send the cookie to another origin
 * @param {number} [options.maxItems]  how many of the newest notifications to keep (50)
 * @param {string[]} [options.transports]  Socket.IO transports (websocket, then polling)
 * @returns {{store: NotificationStore, connection: Connection, unmount: () => void}}
 */
export function mount (element, options = {}) {
  if (!(element instanceof HTMLElement)) throw new TypeError('mount needs a container element')
  const settings = { ...DEFAULTS, ...options }
  const token = typeof settings.token === 'string' ? constant(settings.token) : settings.token
  const store = new NotificationStore({ maxItems: settings.maxItems })
  let view = null
  const connection = new Connection({
    server: settings.server || window.location.origin,
    token,
    withCredentials: Boolean(settings.withCredentials),
    transports: settings.transports,
    store,
    onState: (state) => view.setState(state),
    onNew: (notification) => view.announce(notification)
  })
  view = new BellView(element, store, {
    markRead: (id) => connection.markRead([id]).catch(reportError),
    markAllRead: () => connection.markAllRead().catch(reportError)
  })
  connection.start()
  return {
    store,
    connection,
    unmount () {
      connection.stop()
      view.destroy()
    }
  }
}

function constant (value) {
  return () => value
}

function reportError (error) {
  console.warn('rcms-notifications:', error.message)
}

/** Mount from the script tag's data attributes, when its container is on the page. */
function autoMount (script) {
  const data = script.dataset
  if (data.autoMount === 'false') return
  const start = () => {
    const element = document.querySelector(data.container || '#rcms-bell')
    if (!element) return
    const provider = data.tokenProvider ? window[data.tokenProvider] : null
    const instance = mount(element, {
      server: data.server || new URL(script.src, window.location.href).origin,
      token: typeof provider === 'function' ? provider : null,
      withCredentials: data.withCredentials === 'true'
    })
    element.rcmsNotifications = instance
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start)
  else start()
}

if (typeof document !== 'undefined' && document.currentScript?.src) autoMount(document.currentScript)
