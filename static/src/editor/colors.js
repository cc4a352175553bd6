// People's colours: a stable one per user for our awareness state, and a check on the ones
// peers send (awareness is written by peers; only a plain colour may reach a style).

const PALETTE = ['#1e6fd9', '#c2410c', '#15803d', '#9333ea', '#be123c', '#0e7490', '#a16207', '#4d7c0f']
const HEX_COLOR = /^#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i

/** A stable colour per user id. */
export function colorFor (userId) {
  return PALETTE[Math.abs(Number(userId) || 0) % PALETTE.length]
}

/** `color` if it is a hex colour, else `fallback`. */
export function safeColor (color, fallback = '#777') {
  return typeof color === 'string' && HEX_COLOR.test(color) ? color : fallback
}
