// http-proxy with a keep-alive agent: without one every request opens a new upstream connection.
import http from 'node:http';
import httpProxy from 'http-proxy';

const proxy = httpProxy.createProxyServer({
  target: process.env.UP ?? 'http://127.0.0.1:3000',
  agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
});
proxy.on('error', (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502);
  res.end();
});
http.createServer((req, res) => proxy.web(req, res)).listen(Number(process.env.PORT ?? 8080), '127.0.0.1');
