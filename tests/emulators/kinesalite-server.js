// kinesalite-server.js - starts kinesalite on 127.0.0.1 for kinesis2pg's tests and demo.
//
// Usage: node kinesalite-server.js [PORT]   (PORT 0 or absent: a free port)
// Prints the port it listens on as one line on stdout, then serves until SIGTERM/SIGINT or
// until its stdin closes (so a crashed test does not leave it running).
'use strict';
const kinesalite = require('kinesalite');
const port = parseInt(process.argv[2] || '0', 10);
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
                           shardLimit: 10000});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (!process.stdin.isTTY) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
