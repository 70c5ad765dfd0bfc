// The plain peer of the files section (bench/files.ts): a bare node:http server, started the
// way the API is (a process of its own, the same Node flags), that does with the bytes what the
// local driver (src/storage/local.ts) does and nothing else — no signature to make or check, no
// Express, no rate limits, no content-type file beside the object:
//   PUT /<name>   streams the body to a temporary file in PEER_DIR and renames it into place once
//                 exactly Content-Length bytes arrived (the driver's rule: no partial object; no
//                 fsync, like the driver)
//   GET /<name>   streams the file back with its Content-Length
//   GET /readyz   200: how the harness knows it listens
// Environment: PORT (on 127.0.0.1) and PEER_DIR.
import { tuneKeepAlive } from '../src/http/keep-alive.ts';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

const dir = path.resolve(process.env.PEER_DIR ?? '');
const port = Number(process.env.PORT);
if (!process.env.PEER_DIR || !Number.isInteger(port)) throw new Error('file-peer: set PORT and PEER_DIR');
const tmpDir = path.join(dir, '.tmp');
fs.mkdirSync(tmpDir, { recursive: true, mode: 0o700 });

const NAME = /^\/([A-Za-z0-9_-]{1,128})$/;

const server = http.createServer((req, res) => {
  const reply = (status: number) => {
    res.statusCode = status;
    res.end();
  };
  if (req.method === 'GET' && req.url === '/readyz') return reply(200);
  const name = NAME.exec(req.url ?? '')?.[1];
  if (!name) return reply(404);
  const file = path.join(dir, name);
  if (req.method === 'GET') {
    fs.stat(file, (error, stat) => {
      if (error) return reply(404);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(stat.size) });
      pipeline(fs.createReadStream(file), res).catch(() => res.destroy());
    });
    return;
  }
  if (req.method !== 'PUT') return reply(405);
  const size = Number(req.headers['content-length']);
  if (!Number.isSafeInteger(size)) return reply(411);
  const tmp = path.join(tmpDir, randomUUID());
  let received = 0;
  req.on('data', (chunk: Buffer) => (received += chunk.length));
  pipeline(req, fs.createWriteStream(tmp, { mode: 0o600 }))
    .then(async () => {
      if (received !== size) throw new Error('size');
      await fsp.rename(tmp, file);
      reply(200);
    })
    .catch(async () => {
      await fsp.rm(tmp, { force: true });
      reply(400);
    });
});

// The API's keep-alive tuning (src/http/keep-alive.ts): the same for both servers.
tuneKeepAlive(server);
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
