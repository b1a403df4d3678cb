// @fastify/reply-from as a plain reverse proxy. Body parsers are removed so request bodies stream through.
import fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const app = fastify({ logger: false });
await app.register(replyFrom, { base: process.env.UP ?? 'http://127.0.0.1:3000' });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ port: Number(process.env.PORT ?? 8080), host: '127.0.0.1' });
