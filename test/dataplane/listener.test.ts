/**
 * Listeners: filter chain selection (Envoy's criteria order, most specific wins, default_filter_chain, no match
 * closes the connection), TLS termination including client certificates, and the listener filters that let
 * chains match on SNI, transport protocol and ALPN (tls_inspector, http_inspector, their timeout).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { parseBootstrap, startPortico, staticCluster, statValue, type RunningPortico } from '../support/portico.js';
import { rawRequest } from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

/** A filter chain whose connection manager answers every request with `body`. */
/** A chain answering its name; `codecType` sets the connection manager's codec_type. */
function chain(body: string, extra = '', codecType = 'AUTO'): string {
  return `
    - ${extra ? `${extra}\n      ` : ''}filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${body}
          codec_type: ${codecType}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "${body}" } }
          http_filters:
          - name: envoy.filters.http.router`;
}

/** One listener with these chains; `listenerExtra` adds fields to the listener (`listener_filters: ...`). */
function bootstrap(chains: string, defaultChain?: string, listenerExtra = '', clusters = ''): string {
  const defaultPart = defaultChain ? `\n    default_filter_chain:${defaultChain.replace(/^\n    -/, '\n     ')}` : '';
  return `
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }${listenerExtra ? `\n    ${listenerExtra}` : ''}
    filter_chains:${chains}${defaultPart}
${clusters ? `  clusters:\n${clusters.replace(/^/gm, '  ')}` : ''}`;
}

async function answer(gw: RunningPortico): Promise<string | undefined> {
  const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 2000 });
  return res.status === 200 ? res.body : undefined;
}

describe('filter chain selection', () => {
  it('prefers the chain whose source range matches over a catch-all', async () => {
    const gw = await startPortico(
      bootstrap(chain('any') + chain('loopback', 'filter_chain_match: { source_prefix_ranges: [{ address_prefix: 127.0.0.0, prefix_len: 8 }] }')),
    );
    try {
      assert.equal(await answer(gw), 'loopback');
    } finally {
      await gw.close();
    }
  });

  it('excludes chains whose criteria do not match, falling back to default_filter_chain', async () => {
    const gw = await startPortico(
      bootstrap(
        chain('other-port', 'filter_chain_match: { destination_port: 1 }') +
          chain('remote-only', 'filter_chain_match: { source_type: EXTERNAL }'),
        chain('default'),
      ),
    );
    try {
      assert.equal(await answer(gw), 'default');
    } finally {
      await gw.close();
    }
  });

  it('closes the connection when no chain matches and there is no default', async () => {
    const gw = await startPortico(bootstrap(chain('ten-net', 'filter_chain_match: { source_prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }')));
    try {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 2000 });
      assert.equal(res.status, undefined);
      assert.ok(res.closed);
    } finally {
      await gw.close();
    }
  });

  it('prefers SAME_IP_OR_LOOPBACK for a loopback client', async () => {
    const gw = await startPortico(bootstrap(chain('same-ip', 'filter_chain_match: { source_type: SAME_IP_OR_LOOPBACK }') + chain('any')));
    try {
      assert.equal(await answer(gw), 'same-ip');
    } finally {
      await gw.close();
    }
  });
});

describe('TLS termination', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let file: (name: string) => string;
  let gw: RunningPortico;

  before(async () => {
    // A CA, a server certificate for localhost and a client certificate, all signed by the CA.
    ({ file } = makeTestPki([
      { name: 'server', commonName: 'localhost' },
      { name: 'client', commonName: 'client' },
    ]));
    const tls = (requireClient: boolean) => `transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: ${requireClient}
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${file('server.crt')} }
              private_key: { filename: ${file('server.key')} }
            validation_context:
              trusted_ca: { filename: ${file('ca.crt')} }`;
    gw = await startPortico(`
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:${chain('tls', tls(false))}
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:${chain('mtls', tls(true))}
`);
  });
  after(() => gw.close());

  const get = (index: number, connect: Record<string, unknown>) =>
    request(`https://localhost:${gw.port(index)}/`, { dispatcher: new Agent({ connect: { ca: readFileSync(file('ca.crt')), ...connect } }) });

  it('serves HTTPS with the configured certificate', async () => {
    const res = await get(0, {});
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'tls');
  });

  it('refuses a client without a certificate when one is required, and accepts one signed by trusted_ca', async () => {
    await assert.rejects(async () => (await get(1, {})).body.text());
    const res = await get(1, { cert: readFileSync(file('client.crt')), key: readFileSync(file('client.key')) });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'mtls');
  });
});

const TLS_INSPECTOR = `listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }`;
const HTTP_INSPECTOR = `listener_filters:
    - name: envoy.filters.listener.http_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector }`;

/** A chain's TLS termination with one certificate (the chain helper's indentation). */
function terminateTls(file: (name: string) => string, name: string): string {
  return `transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${file(`${name}.crt`)} }
              private_key: { filename: ${file(`${name}.key`)} }`;
}

/** A chain that proxies the connection's bytes to `cluster`. */
function tcpChain(cluster: string, match: string): string {
  return `
    - filter_chain_match: ${match}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: ${cluster}
          cluster: ${cluster}`;
}

interface TlsAnswer {
  /** The direct_response body of the chain, or the upstream's reply. */
  body: string;
  /** CN of the certificate the client was shown. */
  certificate: string;
  alpn: string | false | null;
}

/** One HTTP/1.1 request over TLS with this SNI and ALPN offer; certificates are not verified. */
function tlsGet(port: number, servername: string | undefined, ALPNProtocols?: string[]): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername ? { servername } : {}), ALPNProtocols });
    const chunks: Buffer[] = [];
    let certificate: string | undefined;
    socket.on('secureConnect', () => {
      certificate = String(socket.getPeerCertificate().subject.CN);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      if (certificate === undefined) return reject(new Error('closed before the TLS handshake ended'));
      const text = Buffer.concat(chunks).toString();
      resolve({ body: text.slice(text.indexOf('\r\n\r\n') + 4), certificate, alpn: socket.alpnProtocol });
    });
  });
}

/** Starts a TCP (or TLS) server; returns its port. */
async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('filter chain selection by SNI, transport protocol and ALPN', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let file: (name: string) => string;
  const servers: Server[] = [];

  before(() => {
    ({ file } = makeTestPki([
      { name: 'a', commonName: 'a.example.com' },
      { name: 'b', commonName: 'b.example.com' },
      { name: 'wild', commonName: '*.example.com' },
      { name: 'deep', commonName: '*.deep.example.com' },
      { name: 'upstream', commonName: 'upstream' },
    ]));
  });
  after(() => {
    for (const server of servers) server.close();
  });

  const sniChain = (name: string, serverNames: string) =>
    chain(name, `filter_chain_match: { server_names: [${serverNames}] }\n      ${terminateTls(file, name)}`);

  it('serves each certificate by SNI, exact names before wildcards and longer wildcards first', async () => {
    const gw = await startPortico(
      bootstrap(
        sniChain('wild', '"*.example.com"') + sniChain('a', 'a.example.com') + sniChain('b', 'b.example.com, B2.example.com') + sniChain('deep', '"*.deep.example.com"'),
        undefined,
        TLS_INSPECTOR,
      ),
    );
    try {
      const cases: [string, string, string][] = [
        ['a.example.com', 'a', 'a.example.com'],
        ['b.example.com', 'b', 'b.example.com'],
        ['b2.example.com', 'b', 'b.example.com'],
        ['other.example.com', 'wild', '*.example.com'],
        ['x.a.example.com', 'wild', '*.example.com'],
        ['x.deep.example.com', 'deep', '*.deep.example.com'],
        ['A.EXAMPLE.COM', 'a', 'a.example.com'],
      ];
      for (const [servername, body, certificate] of cases) {
        const answer = await tlsGet(gw.port(), servername);
        assert.deepEqual([answer.body, answer.certificate], [body, certificate], servername);
      }
      assert.equal(statValue(gw, 'tls_inspector.sni_found'), cases.length);
      assert.equal(statValue(gw, 'tls_inspector.tls_found'), cases.length);
      assert.equal(statValue(gw, `listener.127.0.0.1_${gw.port()}.ssl.handshake`), cases.length);
    } finally {
      await gw.close();
    }
  });

  it('closes a connection whose SNI (or lack of one) no chain accepts, counting no_filter_chain_match; the SNI is logged', async () => {
    const logFile = join(mkdtempSync(join(tmpdir(), 'portico-sni-')), 'listener.log');
    const accessLog = `access_log: [{ name: envoy.access_loggers.file, typed_config: { "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: ${logFile}, log_format: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME% %RESPONSE_FLAGS%\\n" } } } }]`;
    const gw = await startPortico(bootstrap(sniChain('a', 'a.example.com'), undefined, `${accessLog}\n    ${TLS_INSPECTOR}`));
    try {
      assert.equal((await tlsGet(gw.port(), 'a.example.com')).body, 'a');
      await assert.rejects(tlsGet(gw.port(), 'z.example.com'));
      await assert.rejects(tlsGet(gw.port(), undefined));
      const plain = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 2000 });
      assert.equal(plain.status, undefined);
      assert.equal(statValue(gw, `listener.127.0.0.1_${gw.port()}.no_filter_chain_match`), 3);
      assert.equal(statValue(gw, 'tls_inspector.sni_not_found'), 1);
      assert.equal(statValue(gw, 'tls_inspector.tls_not_found'), 1);
      const expected = ['a.example.com -', 'z.example.com NR', '- NR', '- NR'];
      let lines: string[] = [];
      await waitFor(() => existsSync(logFile) && (lines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean)).length === expected.length, () => `4 log lines, got ${lines.join(' | ')}`);
      assert.deepEqual(lines.sort(), expected.sort());
    } finally {
      await gw.close();
    }
  });

  it('passes TLS through by SNI: the upstream gets the ClientHello untouched and shows its own certificate', async () => {
    const upstream = tls.createServer({ cert: readFileSync(file('upstream.crt')), key: readFileSync(file('upstream.key')), ALPNProtocols: ['http/1.1'] }, (socket) => {
      socket.once('data', () => {
        const body = `upstream saw ${socket.servername}`;
        socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      });
    });
    servers.push(upstream);
    const port = await listen(upstream);
    const gw = await startPortico(
      bootstrap(sniChain('a', 'a.example.com') + tcpChain('passthrough', '{ server_names: [pass.example.com] }'), undefined, TLS_INSPECTOR, staticCluster('passthrough', port)),
    );
    try {
      const answer = await tlsGet(gw.port(), 'pass.example.com', ['http/1.1']);
      assert.deepEqual(answer, { body: 'upstream saw pass.example.com', certificate: 'upstream', alpn: 'http/1.1' });
      assert.equal((await tlsGet(gw.port(), 'a.example.com')).body, 'a');
    } finally {
      await gw.close();
    }
  });

  it('tells TLS from plaintext on one port (transport_protocol tls and raw_buffer)', async () => {
    const gw = await startPortico(
      bootstrap(
        chain('plain', 'filter_chain_match: { transport_protocol: raw_buffer }') +
          chain('a', `filter_chain_match: { transport_protocol: tls }\n      ${terminateTls(file, 'a')}`),
        undefined,
        TLS_INSPECTOR,
      ),
    );
    try {
      assert.equal(await answer(gw), 'plain');
      assert.equal((await tlsGet(gw.port(), 'a.example.com')).body, 'a');
      // A request sent in pieces reaches the connection manager whole after inspection.
      const socket = connect(gw.port(), '127.0.0.1');
      const reply = new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
      });
      socket.write('GE');
      await new Promise((resolve) => setTimeout(resolve, 50));
      socket.end('T / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(await reply, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nplain$/);
    } finally {
      await gw.close();
    }
  });

  it('after a configuration change, hands a further request on an open TLS connection to the chain its SNI selects now', async () => {
    const yaml = (version: string) => bootstrap(sniChain('a', 'a.example.com').replace('"a"', `"a-${version}"`) + chain('other'), undefined, TLS_INSPECTOR);
    const gw = await startPortico(yaml('v1'));
    const socket = tls.connect({ host: '127.0.0.1', port: gw.port(), servername: 'a.example.com', rejectUnauthorized: false });
    try {
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => received.endsWith('a-v1'), () => `the first answer, got ${JSON.stringify(received)}`);
      await gw.plane.update(parseBootstrap(yaml('v2')), 2000);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => received.endsWith('a-v2'), () => `the second answer, got ${JSON.stringify(received)}`);
    } finally {
      socket.destroy();
      await gw.close();
    }
  });

  it('selects by the ALPN protocols offered, in the client\'s order of preference', async () => {
    const gw = await startPortico(
      bootstrap(
        // HTTP/1.1 connection managers negotiate no ALPN, so the test client speaks HTTP/1.1 whatever it offered:
        // selection is by what the ClientHello offered.
        chain('h1', `filter_chain_match: { transport_protocol: tls, application_protocols: [http/1.1] }\n      ${terminateTls(file, 'a')}`, 'HTTP1') +
          chain('h2', `filter_chain_match: { transport_protocol: tls, application_protocols: [h2] }\n      ${terminateTls(file, 'b')}`, 'HTTP1') +
          chain('none', `filter_chain_match: { transport_protocol: tls }\n      ${terminateTls(file, 'wild')}`, 'HTTP1'),
        undefined,
        TLS_INSPECTOR,
      ),
    );
    try {
      assert.equal((await tlsGet(gw.port(), 'x.example.com', ['h2', 'http/1.1'])).body, 'h2');
      assert.equal((await tlsGet(gw.port(), 'x.example.com', ['http/1.1', 'h2'])).body, 'h1');
      const h1 = await tlsGet(gw.port(), 'x.example.com', ['http/1.1']);
      assert.equal(h1.body, 'h1');
      assert.equal((await tlsGet(gw.port(), 'x.example.com', ['spdy/3'])).body, 'none');
      assert.equal((await tlsGet(gw.port(), 'x.example.com')).body, 'none');
      assert.equal(statValue(gw, 'tls_inspector.alpn_found'), 4);
      assert.equal(statValue(gw, 'tls_inspector.alpn_not_found'), 1);
    } finally {
      await gw.close();
    }
  });
});

describe('http_inspector', () => {
  it('selects chains by HTTP version, and passes the h2c preface through untouched', async () => {
    const received: Buffer[] = [];
    const upstream = createServer((socket: Socket) => {
      socket.on('data', (chunk: Buffer) => {
        received.push(chunk);
        if (Buffer.concat(received).length >= 30) socket.end('h2c upstream');
      });
    });
    const port = await listen(upstream);
    const gw = await startPortico(
      bootstrap(chain('one-zero', 'filter_chain_match: { application_protocols: [http/1.0] }') + chain('other') + tcpChain('h2c', '{ application_protocols: [h2c] }'), undefined, HTTP_INSPECTOR, staticCluster('h2c', port)),
    );
    try {
      // Both connection managers refuse HTTP/1.0 (accept_http_10 is off): their stats tell which one answered.
      await rawRequest(gw.port(), 'GET / HTTP/1.0\r\n\r\n', { timeoutMs: 2000 });
      assert.deepEqual([statValue(gw, 'http.one-zero.downstream_cx_total'), statValue(gw, 'http.other.downstream_cx_total')], [1, 0]);
      assert.equal(await answer(gw), 'other');
      const preface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00';
      const res = await rawRequest(gw.port(), preface, { timeoutMs: 2000, responses: 0 });
      assert.equal(res.raw, 'h2c upstream');
      assert.equal(Buffer.concat(received).toString('latin1'), preface);
      const counts = ['http10_found', 'http11_found', 'http2_found', 'http_not_found'].map((name) => statValue(gw, `http_inspector.${name}`));
      assert.deepEqual(counts, [1, 1, 1, 0]);
    } finally {
      await gw.close();
      upstream.close();
    }
  });
});

describe('listener_filters_timeout', () => {
  const silentClient = (port: number): Promise<number> =>
    new Promise((resolve) => {
      const started = Date.now();
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.on('close', () => resolve(Date.now() - started));
    });

  it('closes a connection that sends nothing within the timeout, counting downstream_pre_cx_timeout', async () => {
    const gw = await startPortico(bootstrap(chain('any'), undefined, `listener_filters_timeout: 0.2s\n    ${TLS_INSPECTOR}`));
    try {
      const elapsed = await silentClient(gw.port());
      assert.ok(elapsed >= 150 && elapsed < 2000, `closed after ${elapsed} ms`);
      assert.equal(statValue(gw, `listener.127.0.0.1_${gw.port()}.downstream_pre_cx_timeout`), 1);
      assert.equal(statValue(gw, `listener.127.0.0.1_${gw.port()}.downstream_pre_cx_active`), 0);
    } finally {
      await gw.close();
    }
  });

  it('with continue_on_listener_filters_timeout, hands the connection to a chain as raw_buffer', async () => {
    const gw = await startPortico(
      bootstrap(
        chain('tls-only', 'filter_chain_match: { transport_protocol: tls }') + chain('raw', 'filter_chain_match: { transport_protocol: raw_buffer }'),
        undefined,
        `listener_filters_timeout: 0.1s\n    continue_on_listener_filters_timeout: true\n    ${TLS_INSPECTOR}`,
      ),
    );
    try {
      const socket = connect(gw.port(), '127.0.0.1');
      const reply = new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
      });
      await waitFor(() => statValue(gw, `listener.127.0.0.1_${gw.port()}.downstream_pre_cx_timeout`) === 1, 'the listener filter timeout');
      // Only the bytes are unknown: a ClientHello's first byte now would still go to the raw chain.
      socket.end('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(await reply, /\r\n\r\nraw$/);
    } finally {
      await gw.close();
    }
  });
});

describe('filter chain match configuration', () => {
  const compile = (yaml: string, log = createLogger('error')): ConfigError[] => {
    const errors: ConfigError[] = [];
    const compiled = compileBootstrap(parseBootstrap(yaml), log, errors, EXTENSIONS);
    for (const listener of compiled.listeners) listener.closeConnections();
    return errors;
  };

  it('refuses two chains with the same matching rules, naming both', () => {
    const errors = compile(
      bootstrap(
        chain('one', 'filter_chain_match: { server_names: [a.example.com, b.example.com] }') + chain('two', 'filter_chain_match: { server_names: [B.example.com] }'),
        undefined,
        TLS_INSPECTOR,
      ),
    );
    assert.deepEqual(
      errors.map((e) => [e.path, e.message]),
      [['static_resources.listeners[0].filter_chains[1].filter_chain_match', 'filter_chains[1] and filter_chains[0] have the same matching rules: a connection could match either']],
    );
    assert.deepEqual(compile(bootstrap(chain('one') + chain('two'))).map((e) => e.path), ['static_resources.listeners[0].filter_chains[1].filter_chain_match']);
    assert.deepEqual(compile(bootstrap(chain('one') + chain('two', 'filter_chain_match: { transport_protocol: raw_buffer }'))), []);
  });

  it('takes a listener filter named without typed_config, and refuses an unknown one', () => {
    const named = (name: string) => bootstrap(chain('a', 'filter_chain_match: { transport_protocol: tls }') + chain('b'), undefined, `listener_filters: [{ name: ${name} }]`);
    assert.deepEqual(compile(named('envoy.filters.listener.tls_inspector')), []);
    assert.deepEqual(
      compile(named('envoy.filters.listener.original_dst')).map((e) => [e.code, e.path, e.message]),
      [['unsupported_extension', 'static_resources.listeners[0].listener_filters[0]', 'unsupported extension envoy.filters.listener.original_dst']],
    );
  });

  it('refuses partial wildcards in server_names', () => {
    const errors = compile(bootstrap(chain('one', 'filter_chain_match: { server_names: ["a.*.com", "*example.com"] }'), undefined, TLS_INSPECTOR));
    assert.deepEqual(
      errors.map((e) => e.path),
      ['static_resources.listeners[0].filter_chains[0].filter_chain_match.server_names[0]', 'static_resources.listeners[0].filter_chains[0].filter_chain_match.server_names[1]'],
    );
  });

  it('warns, and adds a TLS inspector, when chains need one that is not configured', async () => {
    const lines: string[] = [];
    const yaml = bootstrap(chain('a', 'filter_chain_match: { server_names: [a.example.com] }') + chain('other'));
    assert.deepEqual(compile(yaml, createLogger('warning', (line) => lines.push(line))), []);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /\[warning\].*require the TLS inspector listener filter/);
    lines.length = 0;
    compile(bootstrap(chain('raw', 'filter_chain_match: { transport_protocol: raw_buffer }'), chain('other')), createLogger('warning', (line) => lines.push(line)));
    assert.deepEqual(lines, []);
    const gw = await startPortico(yaml);
    try {
      assert.equal(await answer(gw), 'other');
      assert.equal(statValue(gw, 'tls_inspector.tls_not_found'), 1);
    } finally {
      await gw.close();
    }
  });
});
