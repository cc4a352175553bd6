// Tiny DOM helpers: the app builds its pages from plain elements, no framework.

/**
 * h('button', { class: 'x', onclick: fn, 'aria-label': 'Close' }, 'text', child)
 * Attributes starting with `on` become listeners; `false`/`null` attributes are skipped;
 * string children become text nodes (never HTML).
 */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value)
    else if (name === 'dataset') Object.assign(el.dataset, value)
    else if (name in el && typeof value !== 'string') el[name] = value
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
}

/** Replace every child of `el`. */
export function replace (el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

let ids = 0
/** A document-unique id for label/aria wiring. */
export const uid = (prefix) => `${prefix}-${++ids}`

/** A readable local date and time for an ISO timestamp. */
export function when (iso) {
  if (!iso) return ''
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}

/** The nonce this page's Content-Security-Policy admits <style> elements by (handlers/pages.py
 * puts it on the stylesheet link; browsers hide the attribute but keep the `nonce` property). */
export function styleNonce () {
  return document.querySelector('link[rel="stylesheet"][nonce]')?.nonce || ''
}
