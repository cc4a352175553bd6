// Other people's carets and selections in the body editor, from awareness, and ours shared
// with them: y-codemirror.next's remote-selections plugin, except that colours are set
// through CSSOM (`element.style`) and checked first. Its own caret writes a `style`
// attribute, which the page's Content-Security-Policy refuses (no inline style attributes).
import * as Y from 'yjs'
import { Annotation, RangeSet } from '@codemirror/state'
import { Decoration, ViewPlugin, WidgetType } from '@codemirror/view'
import { yRemoteSelectionsTheme } from 'y-codemirror.next'
import { safeColor } from './colors.js'

const awarenessChanged = Annotation.define()

class Caret extends WidgetType {
  constructor (color, name) {
    super()
    this.color = color
    this.name = name
  }

  toDOM () {
    const caret = element('span', 'cm-ySelectionCaret')
    caret.style.backgroundColor = this.color
    caret.style.borderColor = this.color
    const info = element('div', 'cm-ySelectionInfo')
    info.textContent = this.name
    caret.append('\u2060', element('div', 'cm-ySelectionCaretDot'), '\u2060', info, '\u2060')
    return caret
  }

  eq (other) { return other.color === this.color && other.name === this.name }
  get estimatedHeight () { return -1 }
  ignoreEvent () { return true }
}

function element (tag, className) {
  const el = document.createElement(tag)
  el.className = className
  return el
}

/** The extension: the theme of y-codemirror.next's carets and our plugin drawing them. */
export function remoteCursors (ytext, awareness) {
  const plugin = ViewPlugin.fromClass(class {
    constructor (view) {
      this.decorations = RangeSet.of([])
      this.onChange = ({ added, updated, removed }) => {
        const others = [...added, ...updated, ...removed].some((id) => id !== awareness.clientID)
        if (others) view.dispatch({ annotations: [awarenessChanged.of(true)] })
      }
      awareness.on('change', this.onChange)
    }

    destroy () { awareness.off('change', this.onChange) }

    update (update) {
      shareOwnCursor(update, ytext, awareness)
      this.decorations = Decoration.set(othersDecorations(update.state.doc, ytext, awareness), true)
    }
  }, { decorations: (value) => value.decorations })
  return [yRemoteSelectionsTheme, plugin]
}

// Our selection, as positions relative to the Y.Text, in our awareness state (only while the
// editor has focus: leaving it keeps the last position for the others).
function shareOwnCursor (update, ytext, awareness) {
  const local = awareness.getLocalState()
  if (local == null) return
  const hasFocus = update.view.hasFocus && update.view.dom.ownerDocument.hasFocus()
  if (!hasFocus) return
  const selection = update.state.selection.main
  const anchor = Y.createRelativePositionFromTypeIndex(ytext, selection.anchor)
  const head = Y.createRelativePositionFromTypeIndex(ytext, selection.head)
  const current = local.cursor
  const moved = current == null ||
    !Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.anchor), anchor) ||
    !Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.head), head)
  if (moved) awareness.setLocalStateField('cursor', { anchor, head })
}

function othersDecorations (text, ytext, awareness) {
  const decorations = []
  for (const [clientId, state] of awareness.getStates()) {
    const cursor = state.cursor
    if (clientId === awareness.clientID || cursor?.anchor == null || cursor?.head == null) continue
    const anchor = Y.createAbsolutePositionFromRelativePosition(cursor.anchor, ytext.doc)
    const head = Y.createAbsolutePositionFromRelativePosition(cursor.head, ytext.doc)
    if (anchor == null || head == null || anchor.type !== ytext || head.type !== ytext) continue
    const color = safeColor(state.user?.color, '#30bced')
    const light = safeColor(state.user?.colorLight, color.length === 7 ? color + '33' : color)
    const name = typeof state.user?.name === 'string' ? state.user.name : 'Anonymous'
    decorations.push(...selectionMarks(text, Math.min(anchor.index, head.index), Math.max(anchor.index, head.index), light))
    decorations.push(Decoration.widget({
      // Our own caret is drawn outside the other person's selection.
      side: head.index - anchor.index > 0 ? -1 : 1,
      widget: new Caret(color, name),
    }).range(head.index))
  }
  return decorations
}

// A selection from `from` to `to`: marks on its first and last line, line decorations between.
function selectionMarks (text, from, to, color) {
  if (from === to) return []
  const mark = Decoration.mark({ class: 'cm-ySelection', attributes: { style: `background-color: ${color}` } })
  const first = text.lineAt(from)
  const last = text.lineAt(to)
  if (first.number === last.number) return [mark.range(from, to)]
  const ranges = from < first.to ? [mark.range(from, first.to)] : []
  const line = Decoration.line({ class: 'cm-yLineSelection', attributes: { style: `background-color: ${color}` } })
  for (let number = first.number + 1; number < last.number; number++) {
    ranges.push(line.range(text.line(number).from))
  }
  if (last.from < to) ranges.push(mark.range(last.from, to))
  return ranges
}
