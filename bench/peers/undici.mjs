// The floor for an undici-based data plane: node:http in front of an undici Pool, hop-by-hop headers dropped,
// nothing else (no routing, no stats, no logs).
import http from 'node:http';
import { Pool } from 'undici';

const pool = new Pool(process.env.UP ?? 'http://127.0.0.1:3000', { connections: 256 });
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);
function endToEnd(headers) {
  const out = {};
  for (const name in headers) if (!hopByHop.has(name)) out[name] = headers[name];
  return out;
}

http
  .createServer(async (req, res) => {
    try {
      const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
      const upstream = await pool.request({ path: req.url, method: req.method, headers: endToEnd(req.headers), body });
      res.writeHead(upstream.statusCode, endToEnd(upstream.headers));
      upstream.body.pipe(res);
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  })
  .listen(Number(process.env.PORT ?? 8080), '127.0.0.1');
