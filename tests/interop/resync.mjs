// Type into a realtime_cms document with static/collab-provider.js while the server refuses
// to save (tests/interop/test_provider_resync.py injects the fault) and report, line by
// line, what an editor would show: nothing here retries anything, the provider must.
//
//   node resync.mjs --url http://127.0.0.1:8080 --document notes:demo --token TOKEN \
//     --text 'words to type' [--typing slow|burst] [--withhold 'text '] [--timeout-ms 30000]
//
// Prints one JSON object per line on stdout:
//   {"event": "synced"}                 joined; then it waits for a line `type` on stdin
//   {"event": "error", "code": ...}     each error the provider reports
//   {"event": "saved", "text", "errors", "states"}
//                                       once every change typed is saved (no pending ack,
//                                       not "not saved"); `states` is the saved badge's
//                                       sequence, as static/src/editor/session.js derives it
//   {"event": "failed", "error", ...}   on a timeout or an exception (exit code 1)
//
// --typing slow types one character per transaction every 10 ms; burst types them all
// without yielding, so every update is sent before any answer comes back. --withhold first
// applies `text` with the provider as origin: a change the provider holds and never sent
// (as if the server had sent it), which the typed text then depends on.

import * as Y from 'yjs'
import { io } from 'socket.io-client'
import { createInterface } from 'node:readline'
import { CollabProvider } from '../../static/collab-provider.js'

const options = parseOptions(process.argv.slice(2))
const errors = []
const states = []
let provider = null

function say (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

function badge () {
  if (provider.pendingAcks === 0) return provider.synced ? 'saved' : 'idle'
  return provider.notSaved ? 'not_saved' : 'saving'
}

function record () {
  const state = badge()
  if (states[states.length - 1] !== state) states.push(state)
}

async function main () {
  const doc = new Y.Doc()
  const text = doc.getText('body')
  provider = new CollabProvider({
    url: required('url'), token: required('token'), documentId: required('document'), doc, Y, io, ackTimeout: 10000,
  })
  provider.on('error', (err) => { errors.push(err.code); say('error', { code: err.code }) })
  provider.on('pending', record)
  provider.on('synced', record)
  provider.connect()
  await until(() => provider.synced, 'joined')
  say('synced')
  await nextLine('type')
  if (options.withhold) doc.transact(() => text.insert(0, options.withhold), provider)
  for (const char of required('text')) {
    text.insert(text.length, char)
    if (options.typing !== 'burst') await sleep(10)
  }
  await until(() => provider.pendingAcks === 0 && !provider.notSaved, 'every change saved')
  say('saved', { text: text.toString(), errors, states })
}

function nextLine (wanted) {
  const lines = createInterface({ input: process.stdin })
  return new Promise((resolve) => {
    lines.on('line', (line) => {
      if (line.trim() !== wanted) return
      lines.close()
      resolve()
    })
  })
}

async function until (check, what) {
  const end = Date.now() + Number(options['timeout-ms'] || 30000)
  while (!check()) {
    if (Date.now() > end) throw new Error(`not reached in time: ${what}`)
    await sleep(20)
  }
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function parseOptions (argv) {
  const parsed = {}
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`)
    parsed[argv[i].slice(2)] = argv[i + 1]
  }
  return parsed
}

function required (name) {
  if (!options[name]) throw new Error(`--${name} is required`)
  return options[name]
}

let code = 0
try {
  await main()
} catch (err) {
  code = 1
  say('failed', { error: String(err?.stack || err), errors, states, pending: provider?.pendingAcks })
}
provider?.destroy()
// Give the leave frame a moment, then exit even if a socket lingers.
setTimeout(() => process.exit(code), 100)
