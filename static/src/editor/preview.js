// The rendered Markdown preview: marked, then DOMPurify, so content cannot run script.
import { marked } from 'marked'
import DOMPurify from 'dompurify'

marked.setOptions({ gfm: true, breaks: false })

// Links in content open outside the editor and never hand it a window.opener.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
})

/** Sanitised HTML for a Markdown text. */
export function renderMarkdown (text) {
  return DOMPurify.sanitize(marked.parse(text, { async: false }), { USE_PROFILES: { html: true } })
}

/** Keep `element` showing `ytext` rendered, at most once per animation frame. */
export function bindPreview (element, ytext) {
  let frame = 0
  const render = () => {
    frame = 0
    element.innerHTML = renderMarkdown(ytext.toString())
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(render) }
  ytext.observe(schedule)
  render()
  return { destroy () { ytext.unobserve(schedule); cancelAnimationFrame(frame) } }
}
