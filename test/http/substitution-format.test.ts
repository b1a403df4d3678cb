import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { compileJsonFormat, compileSubstitutionFormat } from '../../src/dataplane/http/substitution-format.js';
import { newStreamInfo, type StreamInfo } from '../../src/dataplane/stream-info.js';

function info(): StreamInfo {
  const i = newStreamInfo({ method: 'GET', path: '/a?b=1', authority: 'example.com', scheme: 'http', headers: { 'x-empty': '' } }, 3);
  return Object.assign(i, { responseCode: 503, bytesSent: 19, upstreamCluster: 'backend', downstreamLocalAddress: '10.0.0.2', downstreamLocalPort: 8080 });
}

function json(template: Record<string, unknown>, options = { typed: true, omitEmpty: false }): string {
  const errors: ConfigError[] = [];
  const render = compileJsonFormat(template, 'log_format.json_format', errors, options);
  assert.deepEqual(errors, []);
  return render(info());
}

describe('json_format', () => {
  it('sorts keys at every level, keeps operator types, and ends the line', () => {
    assert.equal(
      json({ z: '%RESPONSE_CODE%', a: { y: '%DOWNSTREAM_LOCAL_PORT%', b: ['%REQ(:METHOD)%', { d: '%BYTES_SENT%', c: null }] }, m: false, n: 1.5 }),
      '{"a":{"b":["GET",{"c":null,"d":19}],"y":8080},"m":false,"n":1.5,"z":503}\n',
    );
  });

  it('missing single operators are null, or left out (with correct commas) under omit_empty_values', () => {
    const template = { a: '%REQ(x-missing)%', b: '%UPSTREAM_CLUSTER%', c: '%REQ(x-missing)%', d: ['%REQ(x-missing)%', '%PROTOCOL%'], e: '%REQ(x-empty)%' };
    assert.equal(json(template), '{"a":null,"b":"backend","c":null,"d":[null,"HTTP/1.1"],"e":""}\n');
    assert.equal(json(template, { typed: true, omitEmpty: true }), '{"b":"backend","d":["HTTP/1.1"],"e":""}\n');
    assert.equal(json({ only: '%REQ(x-missing)%' }, { typed: true, omitEmpty: true }), '{}\n');
  });

  it('text around operators is a string; a truncated value is text; constants need no stream', () => {
    assert.equal(json({ t: 'code=%RESPONSE_CODE% %REQ(x-missing)%', h: '%REQ(:PATH):2%', k: 'plain', p: '100%%' }), '{"h":"/a","k":"plain","p":"100%","t":"code=503 -"}\n');
    const errors: ConfigError[] = [];
    const render = compileJsonFormat({ k: 'v', n: { m: 1 } }, 'p', errors, { typed: true, omitEmpty: false });
    assert.equal(render(info()), '{"k":"v","n":{"m":1}}\n');
  });

  it('untyped (the deprecated FileAccessLog.json_format): strings only, `-` for missing', () => {
    assert.equal(json({ c: '%RESPONSE_CODE%', m: '%REQ(x-missing)%', n: 7 }, { typed: false, omitEmpty: false }), '{"c":"503","m":"-","n":"7"}\n');
  });

  it('reports bad operators with the path of their key', () => {
    const errors: ConfigError[] = [];
    compileJsonFormat({ a: { b: '%NOPE%' }, c: ['x %BYTES_SENT(1)%'] }, 'fmt.json_format', errors, { typed: true, omitEmpty: false });
    assert.deepEqual(
      errors.map((e) => `${e.path}: ${e.message}`),
      ["fmt.json_format.a.b: format '%NOPE%': unknown command operator %NOPE%", "fmt.json_format.c[0]: format 'x %BYTES_SENT(1)%': BYTES_SENT does not take any parameters or length"],
    );
  });

  it('text formats print `-` for a missing value, or nothing with omit_empty_values', () => {
    const errors: ConfigError[] = [];
    const dash = compileSubstitutionFormat({ text_format_source: { inline_string: '[%REQ(x-missing)%] %RESPONSE_CODE%\n' } }, 'f', errors);
    const omit = compileSubstitutionFormat({ text_format: '[%REQ(x-missing)%]', omit_empty_values: true }, 'f', errors);
    assert.deepEqual(errors, []);
    assert.equal(dash.render(info()), '[-] 503\n');
    assert.equal(dash.contentType, 'text/plain');
    assert.equal(omit.render(info()), '[]');
  });
});
