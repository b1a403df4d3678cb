/** The HTTP inspector's detection: HTTP/1.0 and 1.1 request lines, the HTTP/2 preface, partial and foreign input. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { detectHttp, MAX_INSPECT_BYTES } from '../../../src/extensions/filters/listener/http_inspector/detect.js';

const detect = (text: string) => detectHttp(Buffer.from(text, 'latin1'));

describe('detectHttp', () => {
  it('recognises HTTP/1.0 and HTTP/1.1 request lines', () => {
    assert.equal(detect('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'http/1.1');
    assert.equal(detect('POST /upload?x=1 HTTP/1.0\r\n'), 'http/1.0');
    assert.equal(detect('OPTIONS * HTTP/1.1\r\n'), 'http/1.1');
  });

  it('recognises the HTTP/2 prior-knowledge preface', () => {
    assert.equal(detect('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'h2c');
  });

  it('waits while the bytes can still become a request line or the preface', () => {
    const line = 'GET /a HTTP/1.1\r\n';
    for (let length = 0; length < line.length; length++) assert.equal(detect(line.slice(0, length)), 'incomplete', line.slice(0, length));
    const preface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    for (let length = 1; length < preface.length; length++) assert.equal(detect(preface.slice(0, length)), 'incomplete');
  });

  it('gives up on anything else', () => {
    for (const text of ['\x16\x03\x01\x02\x00', 'GET / HTTP/2.0\r\n', 'GET  / HTTP/1.1\r\n', 'GET / FTP', 'hello world\r\n', 'GET / HTTP/1.1 extra\r\n']) {
      assert.equal(detect(text), 'not_http', JSON.stringify(text));
    }
    assert.equal(detect(`GET /${'a'.repeat(MAX_INSPECT_BYTES)}`), 'not_http');
  });
});
