// REST client: same-origin fetch with the HttpOnly session cookie; problem+json to ApiError.

// localStorage key set when "Keep me signed in" was ticked: the HttpOnly remember-me cookie
// may then renew an ended session.
export const REMEMBERED = 'rcms-remembered'

export class ApiError extends Error {
  constructor (status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`)
    this.status = status
    this.code = problem?.code || 'http_error'
    this.problem = problem
  }
}

const listeners = new Set()
/** Called with no argument whenever the server answers 401 (the session ended). */
export function onUnauthorized (cb) { listeners.add(cb) }

export async function request (method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } }
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const response = await fetch(path, init)
  if (response.status === 204) return null
  const data = await response.json().catch(() => null)
  if (!response.ok) {
    const error = new ApiError(response.status, data)
    if (response.status === 401 && !path.endsWith('/auth/login')) for (const cb of listeners) cb(error)
    throw error
  }
  return data
}

/** A query string from an object, skipping empty values: {a: 1, b: ''} -> '?a=1'. */
export function query (params) {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value !== '' && value !== null && value !== undefined) search.set(key, String(value))
  }
  const text = search.toString()
  return text ? `?${text}` : ''
}

export const api = {
  get: (path) => request('GET', path),
  post: (path, body) => request('POST', path, body),
  patch: (path, body) => request('PATCH', path, body),
  delete: (path) => request('DELETE', path),
}

/** An error as one line for people. */
export function describe (error) {
  if (error instanceof ApiError) {
    const first = error.problem?.errors?.[0]
    return first ? `${error.message}: ${first.loc?.slice(1).join('.')} ${first.message}` : error.message
  }
  return error?.message || String(error)
}
