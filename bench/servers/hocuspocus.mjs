// @hocuspocus/server 3.4.x, as a peer: `node servers/hocuspocus.mjs PORT [SQLITE_PATH]`.
// Default configuration (in memory); with SQLITE_PATH, its SQLite extension stores documents
// (debounced, as Hocuspocus always stores). Accepts any token.
import { Server } from '@hocuspocus/server'

const [port, sqlitePath] = process.argv.slice(2)
const extensions = []
if (sqlitePath) {
  const { SQLite } = await import('@hocuspocus/extension-sqlite')
  extensions.push(new SQLite({ database: sqlitePath }))
}
const server = new Server({
  port: Number(port),
  address: '127.0.0.1',
  quiet: true,
  extensions,
  async onAuthenticate () { return {} },
})
await server.listen()
console.log(`listening on ${port}`)
