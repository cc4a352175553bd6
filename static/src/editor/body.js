// The Markdown body: CodeMirror 6 bound to the Y.Text with y-codemirror.next, and the other
// people's cursors and selections (name and colour from awareness) drawn by cursors.js.
import * as Y from 'yjs'
import { EditorView, basicSetup } from 'codemirror'
import { EditorState, Compartment } from '@codemirror/state'
import { keymap } from '@codemirror/view'
import { markdown } from '@codemirror/lang-markdown'
import { indentWithTab } from '@codemirror/commands'
import { yCollab } from 'y-codemirror.next'
import { styleNonce } from '../dom.js'
import { remoteCursors } from './cursors.js'

export function bodyEditor ({ parent, ytext, awareness, labelId }) {
  const editable = new Compartment()
  const undoManager = new Y.UndoManager(ytext)
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        basicSetup,
        markdown(),
        EditorView.lineWrapping,
        // Tab indents; Escape then Tab leaves the editor (CodeMirror's focus-trap escape).
        keymap.of([indentWithTab]),
        EditorView.contentAttributes.of({ 'aria-labelledby': labelId, 'aria-multiline': 'true' }),
        editable.of(readOnlyExtensions(false)),
        // CodeMirror's theme is a <style> element it adds: the page's CSP admits it by nonce.
        EditorView.cspNonce.of(styleNonce()),
        // Without awareness yCollab syncs and undoes only; remoteCursors draws the others.
        yCollab(ytext, null, { undoManager }),
        remoteCursors(ytext, awareness),
      ],
    }),
  })
  let current = false
  return {
    view,
    setReadOnly (readOnly) {
      if (readOnly === current) return
      current = readOnly
      // Role changes may be reported from inside an editor update (a local edit sent at
      // once): reconfigure after it.
      queueMicrotask(() => view.dispatch({ effects: editable.reconfigure(readOnlyExtensions(current)) }))
    },
    destroy () { view.destroy(); undoManager.destroy() },
  }
}

function readOnlyExtensions (readOnly) {
  return [EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)]
}
