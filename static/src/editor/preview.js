// The rendered Markdown preview: marked, then DOMPurify with an allowlist, so stored content
// can neither run script nor restyle, overlay or phish inside the editor, nor make the page
// fetch anything from another origin (docs/editor.md, "Preview"). The page's CSP is the
// second line (handlers/pages.py).
import { Marked } from 'marked'
import DOMPurify from 'dompurify'

// GFM task lists render as text marks, not as (disabled) form controls.
const markdown = new Marked({
  gfm: true,
  breaks: false,
  renderer: { checkbox ({ checked }) { return checked ? '☑ ' : '☐ ' } },
})

// What Markdown produces, plus a few inline HTML elements people write in it. Everything else
// goes: styles, forms and their controls, frames, objects, media, links to stylesheets,
// meta and base, SVG and MathML.
const ALLOWED_TAGS = [
  'a', 'abbr', 'b', 'blockquote', 'br', 'caption', 'code', 'dd', 'del', 'details', 'div', 'dl',
  'dt', 'em', 'figcaption', 'figure', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'ins',
  'kbd', 'li', 'mark', 'ol', 'p', 'pre', 'q', 's', 'samp', 'small', 'span', 'strong', 'sub',
  'summary', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead', 'tr', 'u', 'ul', 'var',
]
// No style, class or id (the app's own classes position things: `drawer` is fixed), no
// event handlers, no srcset or legacy `background`.
const ALLOWED_ATTR = ['href', 'src', 'alt', 'title', 'align', 'colspan', 'rowspan', 'start', 'open', 'lang', 'dir']
const LINK_PROTOCOLS = new Set(['http:', 'https:', 'mailto:'])
// Images inlined as data stay: a raster image cannot fetch or run anything.
const RASTER_DATA = /^data:image\/(?:png|gif|jpeg|webp|avif);base64,[a-z0-9+/]+=*$/i

const purify = DOMPurify(window)
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    if (!LINK_PROTOCOLS.has(resolved(node.getAttribute('href'))?.protocol)) {
      node.removeAttribute('href')
    } else {
      // Links open outside the editor and never hand it a window.opener.
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer')
    }
  }
  if (node.tagName === 'IMG' && node.hasAttribute('src') && !allowedImage(node.getAttribute('src'))) {
    node.removeAttribute('src') // the alt text stays in its place
  }
})

function resolved (url) {
  try {
    return new URL(url, document.baseURI)
  } catch {
    return null
  }
}

/** Images come from this origin only (or are raster data): anything else would tell another
 * server who reads the content, and when. */
function allowedImage (src) {
  if (RASTER_DATA.test(src)) return true
  const url = resolved(src)
  return url !== null && url.origin === window.location.origin
}

/** The sanitised DOM of a Markdown text. */
export function renderMarkdown (text) {
  return purify.sanitize(markdown.parse(text, { async: false }), {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  })
}

/** Keep `element` showing `ytext` rendered, at most once per animation frame. */
export function bindPreview (element, ytext) {
  let frame = 0
  const render = () => {
    frame = 0
    element.replaceChildren(renderMarkdown(ytext.toString()))
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(render) }
  ytext.observe(schedule)
  render()
  return { destroy () { ytext.unobserve(schedule); cancelAnimationFrame(frame) } }
}
