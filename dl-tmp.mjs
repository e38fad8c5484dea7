import grpc from '@grpc/grpc-js';
import net from 'node:net';
const silent = net.createServer(() => {}); await new Promise(r => silent.listen(0, '127.0.0.1', r));
const port = silent.address().port;
const id = (x) => x;
for (const target of [`127.0.0.1:${port}`, '10.255.255.1:9']) {
  const c = new grpc.Client(target, grpc.credentials.createInsecure());
  await new Promise((resolve) => c.makeUnaryRequest('/a.B/C', () => Buffer.alloc(0), id, {}, { deadline: Date.now() + 1000 }, (err) => { console.log(target, err.code, JSON.stringify(err.details)); resolve(); }));
  c.close();
}
// an http2 server that accepts and never answers
import http2 from 'node:http2';
const h2 = http2.createServer(); h2.on('stream', () => {}); await new Promise(r => h2.listen(0, '127.0.0.1', r));
const c = new grpc.Client(`127.0.0.1:${h2.address().port}`, grpc.credentials.createInsecure());
await new Promise((resolve) => c.makeUnaryRequest('/a.B/C', () => Buffer.alloc(0), id, {}, { deadline: Date.now() + 1000 }, (err) => { console.log('h2 silent', err.code, JSON.stringify(err.details)); resolve(); }));
c.close(); h2.close(); silent.close();
