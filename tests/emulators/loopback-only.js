// loopback-only.js - preloaded (node --require) into emulators that cannot be told which address
// to listen on (kinesis-local listens on every interface): every server binds 127.0.0.1 only,
// whatever the program asks, so a test never exposes a port beyond this machine.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  let opts;
  if (args[0] !== null && typeof args[0] === 'object') {
    opts = Object.assign({}, args[0]);
  } else {
    opts = { port: args[0] === undefined ? 0 : Number(args[0]) };
    if (typeof args[2] === 'number') opts.backlog = args[2];
    else if (typeof args[1] === 'number') opts.backlog = args[1];
  }
  if (opts.path === undefined) opts.host = '127.0.0.1';
  return cb ? listen.call(this, opts, cb) : listen.call(this, opts);
};
