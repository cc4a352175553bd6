// Display names of user ids, for "who" in the version history. Users one cannot look up
// (GET /users/{id} needs users.view) are shown by id.
import { api } from './api.js'

const names = new Map()

export function displayName (user) {
  return [user.first_name, user.last_name].filter(Boolean).join(' ') || user.username
}

export function rememberUser (user) {
  names.set(user.id, Promise.resolve(displayName(user)))
}

/** A promise of the name of user `id` ('' for no user). */
export function userName (id) {
  if (id === null || id === undefined) return Promise.resolve('the server')
  if (!names.has(id)) {
    names.set(id, api.get(`/api/v1/users/${id}`).then((r) => displayName(r.data), () => `user #${id}`))
  }
  return names.get(id)
}
