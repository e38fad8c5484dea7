// The branches of bench/saga-throughput, in a process of their own so that the caller's CPU time is
// the caller's only: a bare node:http server that answers every call (TransOut, TransIn and their
// compensations, whatever the method and query) with 200 `{}` as soon as it has read the body.
// Prints `port N` once it listens; ends on SIGTERM.
import http from 'node:http';

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`port ${(server.address() as { port: number }).port}`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
