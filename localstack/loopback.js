// loopback.js is preloaded (node -r) into every emulator the local stack starts. It pins every
// server the process opens to 127.0.0.1, because kinesalite has no host flag and kinesis-mock binds
// 0.0.0.0: Tailor's local stack must never listen beyond loopback.
'use strict'
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const first = args[0]
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    args[0] = Object.assign({}, first, { host: '127.0.0.1' })
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string') args[1] = '127.0.0.1'
    else args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}

// dynalite throws from a request's 'error' handler when a client aborts mid-request (a cancelled
// context in Go), which kills the whole emulator for every other test. An aborted request only
// concerns its own client, so survive exactly that case and let anything else crash as before.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && /aborted|socket hang up|EPIPE/.test(String(err.message))) {
    console.error('ignored aborted client request:', err.message)
    return
  }
  console.error(err)
  process.exit(1)
})
