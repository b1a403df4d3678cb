import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import type { ConfigError } from '../../src/config/errors.js';
import { newStreamInfo, type StreamInfo } from '../../src/dataplane/stream-info.js';
import { ResponseFlag } from '../../src/dataplane/response-flags.js';
import {
  compileFormat,
  registerFormatOperator,
  type FormatOptions,
} from '../../src/dataplane/http/header-formatter.js';

// 2024-01-02T03:04:05.678Z
const START = Date.UTC(2024, 0, 2, 3, 4, 5, 678);

function info(over: Partial<StreamInfo> = {}): StreamInfo {
  // newStreamInfo keeps the shape complete as fields get added; every clock-derived field is overwritten.
  const base = newStreamInfo(
    {
      method: 'POST',
      path: '/api/v1?x=1',
      authority: 'example.com',
      scheme: 'https',
      headers: { 'user-agent': 'curl/8.0', 'x-request-id': 'req-1', 'x-empty': '', 'set-cookie': ['a=1', 'b=2'] },
    },
    7,
  );
  return Object.assign(base, {
    startTime: START,
    startMonotonic: 1000,
    protocol: 'HTTP/1.1',
    downstreamRemoteAddress: '10.0.0.1',
    downstreamRemotePort: 51000,
    downstreamDirectRemoteAddress: '192.168.1.2',
    downstreamDirectRemotePort: 52000,
    downstreamLocalAddress: '10.0.0.2',
    downstreamLocalPort: 8080,
    requestedServerName: 'api.example.com',
    requestId: 'req-1',
    routeName: 'route-a',
    upstreamCluster: 'backend',
    upstreamHost: '10.1.0.5:9000',
    upstreamLocalAddress: '10.1.0.1:40000',
    upstreamTransportFailureReason: '',
    responseCode: 200,
    responseCodeDetails: 'via_upstream',
    responseFlags: 0,
    responseHeaders: { 'content-type': 'text/plain', 'content-length': 12, 'set-cookie': ['s=1', 't=2'] },
    responseTrailers: { 'grpc-status': '0' },
    bytesReceived: 100,
    bytesSent: 12,
    lastRequestByteMonotonic: 1010.9,
    firstResponseByteMonotonic: 1025.2,
    lastResponseByteMonotonic: 1042.7,
    upstreamRequestAttemptCount: 1,
    connectionId: 7,
    ...over,
  });
}

function fmt(template: string, options?: FormatOptions) {
  const errors: ConfigError[] = [];
  const f = compileFormat(template, 'hdr.value', errors, options);
  assert.deepEqual(errors, [], template);
  return f;
}

function render(template: string, over: Partial<StreamInfo> = {}, options?: FormatOptions): string {
  return fmt(template, options)(info(over));
}

describe('compileFormat: literals', () => {
  it('plain text is a constant', () => {
    const f = fmt('hello world');
    assert.notEqual(f.constant, undefined);
    assert.equal(f.constant, 'hello world');
    assert.equal(f(info()), 'hello world');
  });

  it('%% is a literal %', () => {
    const f = fmt('100%% of %%s');
    assert.notEqual(f.constant, undefined);
    assert.equal(f(info()), '100% of %s');
    assert.equal(render('%%%PROTOCOL%%%'), '%HTTP/1.1%');
  });

  it('the empty template is a constant ""', () => {
    assert.equal(fmt('').constant, '');
  });

  it('a template with operators is not constant', () => {
    assert.equal(fmt('%PROTOCOL%').constant, undefined);
    assert.equal(fmt('x-%REQ(a)%').constant, undefined);
  });
});

describe('compileFormat: operators', () => {
  const cases: Array<[template: string, expected: string, over?: Partial<StreamInfo>]> = [
    ['%START_TIME%', '2024-01-02T03:04:05.678Z'],
    ['%START_TIME()%', '2024-01-02T03:04:05.678Z'],
    ['%START_TIME(%Y/%m/%d %H:%M:%S)%', '2024/01/02 03:04:05'],
    ['%START_TIME(%s)%', String(Math.floor(START / 1000))],
    ['%START_TIME(%s.%3f)%', `${Math.floor(START / 1000)}.678`],
    ['%START_TIME(%f)%', '678000000'],
    ['%START_TIME(%1f|%6f|%9f)%', '6|678000|678000000'],
    ['%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%', '2024-01-02T03:04:05.678Z'],
    ['%START_TIME(%z %Z %%)%', '+0000 UTC %'],
    ['%START_TIME(%F %T %j %a %b)%', '2024-01-02 03:04:05 002 Tue Jan'],
    ['%REQ(:METHOD)%', 'POST'],
    ['%REQ(:PATH)%', '/api/v1?x=1'],
    ['%REQ(:AUTHORITY)%', 'example.com'],
    ['%REQ(HOST)%', 'example.com'],
    ['%REQ(:SCHEME)%', 'https'],
    ['%REQ(USER-AGENT)%', 'curl/8.0'],
    ['%REQ(user-agent)%', 'curl/8.0'],
    ['%REQ(X-MISSING)%', '-'],
    ['%REQ(X-EMPTY)%', ''], // present but empty: not "missing"
    ['%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%', '/api/v1?x=1'],
    ['%REQ(USER-AGENT?:PATH)%', 'curl/8.0'],
    ['%REQ(X-A?X-B)%', '-'],
    ['%REQ(SET-COOKIE)%', 'a=1,b=2'],
    ['%RESP(CONTENT-TYPE)%', 'text/plain'],
    ['%RESP(content-length)%', '12'],
    ['%RESP(SET-COOKIE)%', 's=1'],
    ['%RESP(:STATUS)%', '200'],
    ['%RESP(X-NONE)%', '-'],
    ['%RESP(CONTENT-TYPE)%', '-', { responseHeaders: undefined }],
    ['%TRAILER(GRPC-STATUS)%', '0'],
    ['%TRAILER(GRPC-MESSAGE)%', '-'],
    ['%TRAILER(GRPC-STATUS)%', '-', { responseTrailers: undefined }],
    ['%PROTOCOL%', 'HTTP/1.1'],
    ['%PROTOCOL%', 'HTTP/2', { protocol: 'HTTP/2' }],
    ['%RESPONSE_CODE%', '200'],
    ['%RESPONSE_CODE%', '0', { responseCode: 0 }],
    ['%RESPONSE_CODE_DETAILS%', 'via_upstream'],
    ['%RESPONSE_CODE_DETAILS%', 'upstream_reset_before_response', { responseCodeDetails: 'upstream reset before response' }],
    ['%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%', 'a b', { responseCodeDetails: 'a b' }],
    ['%RESPONSE_CODE_DETAILS%', '-', { responseCodeDetails: '' }],
    ['%RESPONSE_FLAGS%', '-'],
    ['%RESPONSE_FLAGS%', 'UH,UF', { responseFlags: ResponseFlag.UH | ResponseFlag.UF }],
    ['%RESPONSE_FLAGS_LONG%', 'NoHealthyUpstream,UpstreamConnectionFailure', { responseFlags: ResponseFlag.UH | ResponseFlag.UF }],
    ['%BYTES_RECEIVED% %BYTES_SENT%', '100 12'],
    ['%BYTES_RECEIVED%', '0', { bytesReceived: 0 }],
    ['%DURATION%', '42'],
    ['%REQUEST_DURATION%', '10'],
    ['%RESPONSE_DURATION%', '25'],
    ['%RESPONSE_TX_DURATION%', '17'],
    ['%DURATION%', '-', { lastResponseByteMonotonic: 0 }],
    ['%REQUEST_DURATION%', '-', { lastRequestByteMonotonic: 0 }],
    ['%RESPONSE_DURATION%', '-', { firstResponseByteMonotonic: 0 }],
    ['%RESPONSE_TX_DURATION%', '-', { lastResponseByteMonotonic: 0 }],
    ['%RESPONSE_TX_DURATION%', '-', { firstResponseByteMonotonic: 0 }],
    ['%UPSTREAM_HOST%', '10.1.0.5:9000'],
    ['%UPSTREAM_HOST%', '-', { upstreamHost: '' }],
    ['%UPSTREAM_CLUSTER%', 'backend'],
    ['%UPSTREAM_LOCAL_ADDRESS%', '10.1.0.1:40000'],
    ['%UPSTREAM_TRANSPORT_FAILURE_REASON%', '-'],
    ['%UPSTREAM_TRANSPORT_FAILURE_REASON%', 'connection_refused', { upstreamTransportFailureReason: 'connection refused' }],
    ['%UPSTREAM_REQUEST_ATTEMPT_COUNT%', '1'],
    ['%DOWNSTREAM_REMOTE_ADDRESS%', '10.0.0.1:51000'],
    ['%DOWNSTREAM_REMOTE_ADDRESS%', '[2001:db8::1]:443', { downstreamRemoteAddress: '2001:db8::1', downstreamRemotePort: 443 }],
    ['%DOWNSTREAM_REMOTE_ADDRESS%', '-', { downstreamRemoteAddress: '' }],
    ['%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', '10.0.0.1'],
    ['%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', '2001:db8::1', { downstreamRemoteAddress: '2001:db8::1' }],
    ['%DOWNSTREAM_REMOTE_PORT%', '51000'],
    ['%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%', '192.168.1.2:52000'],
    ['%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%', '192.168.1.2'],
    ['%DOWNSTREAM_LOCAL_ADDRESS%', '10.0.0.2:8080'],
    ['%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%', '10.0.0.2'],
    ['%DOWNSTREAM_LOCAL_PORT%', '8080'],
    ['%DOWNSTREAM_LOCAL_PORT%', '-', { downstreamLocalAddress: '' }],
    ['%REQUESTED_SERVER_NAME%', 'api.example.com'],
    ['%REQUESTED_SERVER_NAME%', '-', { requestedServerName: '' }],
    ['%ROUTE_NAME%', 'route-a'],
    ['%ROUTE_NAME%', '-', { routeName: '' }],
    ['%CONNECTION_ID%', '7'],
    ['%STREAM_ID%', 'req-1'],
    ['%STREAM_ID%', '-', { requestId: '' }],
    ['%HOSTNAME%', hostname()],
    ['[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%',
      '[2024-01-02T03:04:05.678Z] "POST /api/v1?x=1 HTTP/1.1" 200'],
  ];
  for (const [template, expected, over] of cases) {
    it(`${template}${over ? ` with ${JSON.stringify(over)}` : ''} → ${JSON.stringify(expected)}`, () => {
      assert.equal(render(template, over), expected);
    });
  }

  it('renders numbers as integers', () => {
    assert.equal(render('%BYTES_SENT%', { bytesSent: 12.9 }), '12');
  });

  it('caches START_TIME per start time', () => {
    const f = fmt('%START_TIME(%s)%');
    assert.equal(f(info()), String(Math.floor(START / 1000)));
    assert.equal(f(info({ startTime: START + 2000 })), String(Math.floor(START / 1000) + 2));
  });

  it('ENVIRONMENT is read once, at config time', () => {
    process.env.PORTICO_TEST_FORMAT_VAR = 'from-env';
    const f = fmt('v=%ENVIRONMENT(PORTICO_TEST_FORMAT_VAR)%');
    assert.notEqual(f.constant, undefined);
    assert.equal(f(info()), 'v=from-env');
    process.env.PORTICO_TEST_FORMAT_VAR = 'changed';
    assert.equal(f(info()), 'v=from-env');
    assert.equal(fmt('%ENVIRONMENT(PORTICO_TEST_FORMAT_VAR):3%')(info()), 'cha');
    delete process.env.PORTICO_TEST_FORMAT_VAR;
    assert.equal(fmt('%ENVIRONMENT(PORTICO_TEST_FORMAT_VAR)%')(info()), '-');
    assert.equal(fmt('%ENVIRONMENT(PORTICO_TEST_FORMAT_VAR)%', { missing: '' })(info()), '');
  });

  it('HOSTNAME is a constant', () => {
    assert.notEqual(fmt('%HOSTNAME%').constant, undefined);
  });
});

describe('compileFormat: truncation', () => {
  const cases: Array<[template: string, expected: string]> = [
    ['%REQ(USER-AGENT):4%', 'curl'],
    ['%REQ(USER-AGENT):100%', 'curl/8.0'],
    ['%REQ(USER-AGENT):0%', ''],
    ['%REQ(X-MISSING):2%', '-'], // the missing text is not truncated
    ['%RESP(CONTENT-TYPE):4%', 'text'],
    ['%TRAILER(GRPC-STATUS):1%', '0'],
    ['[%REQ(:PATH):4%]', '[/api]'],
  ];
  for (const [template, expected] of cases) {
    it(`${template} → ${expected}`, () => assert.equal(render(template), expected));
  }
});

describe('compileFormat: missing values', () => {
  it('access-log style prints "-" (the default)', () => {
    assert.equal(render('a=%REQ(X-NONE)%;b=%UPSTREAM_HOST%', { upstreamHost: '' }), 'a=-;b=-');
  });

  it('header style prints ""', () => {
    assert.equal(render('a=%REQ(X-NONE)%;b=%UPSTREAM_HOST%', { upstreamHost: '' }, { missing: '' }), 'a=;b=');
    assert.equal(render('%DURATION%', { lastResponseByteMonotonic: 0 }, { missing: '' }), '');
  });

  it('values that are "-" by nature stay "-"', () => {
    assert.equal(render('%RESPONSE_FLAGS%', {}, { missing: '' }), '-');
  });
});

describe('compileFormat: errors', () => {
  const cases: Array<[template: string, mentions: RegExp]> = [
    ['%NOPE%', /unknown command operator %NOPE%/],
    ['x-%UNKNOWN_THING(a)%', /UNKNOWN_THING/],
    ['100%', /position 3/],
    ['%PROTOCOL', /position 0/],
    ['%REQ(:PATH%', /position 0/],
    ['%lower%', /position 0/],
    ['%REQ%', /REQ requires parameters/],
    ['%REQ()%', /REQ requires parameters/],
    ['%PROTOCOL(x)%', /PROTOCOL does not take any parameters or length/],
    ['%PROTOCOL:3%', /PROTOCOL does not take any parameters or length/],
    ['%START_TIME(%Y):5%', /START_TIME does not allow length/],
    ['%START_TIME(%Q)%', /unsupported time format specifier '%Q'/],
    ['%REQ(A?B?C)%', /more than 1 alternative header/],
    ['%REQ(A?)%', /empty header name/],
  ];
  for (const [template, mentions] of cases) {
    it(`rejects ${template}`, () => {
      const errors: ConfigError[] = [];
      const f = compileFormat(template, 'hdr.value', errors);
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0]!.code, 'invalid_value');
      assert.equal(errors[0]!.path, 'hdr.value');
      assert.match(errors[0]!.message, mentions);
      assert.equal(typeof f(info()), 'string', 'a harmless placeholder is returned');
    });
  }

  it('reports every bad operator of a template', () => {
    const errors: ConfigError[] = [];
    compileFormat('%FOO% and %BAR%', 'p', errors);
    assert.equal(errors.length, 2);
  });
});

describe('registerFormatOperator', () => {
  it('adds operators that compileFormat then knows', () => {
    registerFormatOperator('TEST_ROUTE_UPPER', {
      params: 'optional',
      length: true,
      create: (ctx) => (i) => (ctx.arg === 'lower' ? i.routeName : i.routeName.toUpperCase()),
    });
    assert.equal(render('%TEST_ROUTE_UPPER%'), 'ROUTE-A');
    assert.equal(render('%TEST_ROUTE_UPPER(lower):3%'), 'rou');
  });
});
