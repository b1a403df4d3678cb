/**
 * `envoy.filters.network.tcp_proxy` end to end through real sockets: an echo round trip with its stats and
 * access log line, a large transfer both ways with half-close, TLS termination in front of it and TLS to the
 * upstream, weighted clusters, the idle timeout, connect failures (with further attempts), an unknown cluster,
 * and configuration errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { checkYaml, type RunningPortico, startPortico, staticCluster, statValue, tlsCluster } from '../support/portico.js';
import { sendAndHalfClose, sha256 } from '../support/streams.js';
import { refusedPort } from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';

const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';
const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

/** A TCP echo server whose greeting names it; it closes its side when the client does. */
async function startEchoServer(name: string, tls?: { cert: Buffer; key: Buffer }): Promise<{ port: number; server: Server; connections: () => number }> {
  let connections = 0;
  const onSocket = (socket: Socket): void => {
    connections++;
    socket.on('error', () => socket.destroy());
    socket.write(`${name}\n`);
    socket.pipe(socket);
  };
  const server = tls ? createTlsServer({ ...tls, allowHalfOpen: true }, onSocket) : createServer({ allowHalfOpen: true }, onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server, connections: () => connections };
}

/** A listener whose only filter is a tcp_proxy with the given fields (YAML flow mapping body). */
function tcpListener(fields: string, transportSocket = ''): string {
  return `  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": ${TCP_PROXY}, ${fields} }
${transportSocket}`;
}

function bootstrap(listeners: string[], clusters: string): string {
  const indented = clusters.split('\n').map((line) => (line ? `  ${line}` : line)).join('\n');
  return `static_resources:\n  listeners:\n${listeners.join('')}\n  clusters:\n${indented}\n`;
}


/** Connects, reads the greeting, sends `message`, half-closes, and resolves with everything received. */
function exchange(socket: Socket, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    socket.end(message);
  });
}

/** Resolves once the connection is closed by the other side (or fails). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.resume();
    socket.on('error', () => {});
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

describe('tcp_proxy', () => {
  let one: Awaited<ReturnType<typeof startEchoServer>>;
  let two: Awaited<ReturnType<typeof startEchoServer>>;
  let refused: number;
  const logFile = join(mkdtempSync(join(tmpdir(), 'portico-tcp-')), 'tcp.log');
  let gw: RunningPortico;

  before(async () => {
    one = await startEchoServer('one');
    two = await startEchoServer('two');
    refused = await refusedPort();
    const log = `access_log: [{ name: envoy.access_loggers.file, typed_config: { "@type": ${FILE_LOG}, path: ${logFile}, log_format: { text_format_source: { inline_string: "%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%\\n" } } } }]`;
    gw = await startPortico(
      bootstrap(
        [
          tcpListener(`stat_prefix: plain, cluster: one, ${log}`),
          tcpListener('stat_prefix: split, weighted_clusters: { clusters: [{ name: one, weight: 1 }, { name: two, weight: 1 }] }'),
          tcpListener('stat_prefix: idle, cluster: one, idle_timeout: 0.2s'),
          tcpListener(`stat_prefix: refused, cluster: refused, max_connect_attempts: 3, ${log}`),
          tcpListener(`stat_prefix: nowhere, cluster: missing, ${log}`),
        ],
        staticCluster('one', one.port) + staticCluster('two', two.port) + staticCluster('refused', refused),
      ),
    );
  });

  after(async () => {
    await gw?.close();
    for (const s of [one, two]) s?.server.close();
  });

  it('pipes bytes both ways, half-closes, counts and logs the connection', async () => {
    const socket = connect(gw.port(0), '127.0.0.1');
    assert.equal(await exchange(socket, 'hello'), 'one\nhello');
    await waitFor(() => readFileSync(logFile, 'utf8').startsWith('one '), 'the access log line');
    assert.equal(readFileSync(logFile, 'utf8').split('\n')[0], `one 127.0.0.1:${one.port} - 5 9`);
    assert.equal(statValue(gw, 'tcp.plain.downstream_cx_total'), 1);
    assert.equal(statValue(gw, 'tcp.plain.downstream_cx_rx_bytes_total'), 5);
    assert.equal(statValue(gw, 'tcp.plain.downstream_cx_tx_bytes_total'), 9);
    assert.equal(statValue(gw, 'cluster.one.upstream_cx_total'), 1);
    assert.equal(statValue(gw, 'cluster.one.upstream_cx_http1_total'), 0);
    await waitFor(() => statValue(gw, 'cluster.one.upstream_cx_active') === 0, 'the upstream connection closed');
  });

  it('carries 20 MiB each way with backpressure', { timeout: 60_000 }, async () => {
    const size = 20 * 1024 * 1024;
    const { sent, received } = await sendAndHalfClose(connect(gw.port(0), '127.0.0.1'), size);
    // The echo server's greeting, then every byte back.
    assert.equal(received.subarray(0, 4).toString(), 'one\n');
    assert.equal(received.length, 4 + size);
    assert.equal(sha256(received.subarray(4)), sent);
  });

  it('splits connections between weighted clusters', async () => {
    const before = [one.connections(), two.connections()];
    for (let i = 0; i < 24; i++) await exchange(connect(gw.port(1), '127.0.0.1'), 'x');
    assert.ok(one.connections() > before[0]! && two.connections() > before[1]!, `one ${one.connections()}, two ${two.connections()}`);
    assert.equal(statValue(gw, 'tcp.split.downstream_cx_total'), 24);
  });

  it('closes a connection idle for idle_timeout', async () => {
    const socket = connect(gw.port(2), '127.0.0.1');
    await closed(socket);
    assert.equal(statValue(gw, 'tcp.idle.idle_timeout'), 1);
  });

  it('closes the downstream when no attempt connects, after max_connect_attempts', async () => {
    await closed(connect(gw.port(3), '127.0.0.1'));
    assert.equal(statValue(gw, 'cluster.refused.upstream_cx_connect_fail'), 3);
    await waitFor(() => readFileSync(logFile, 'utf8').includes('refused '), 'the access log line');
    assert.match(readFileSync(logFile, 'utf8'), new RegExp(`^refused 127\\.0\\.0\\.1:${refused} UF 0 0$`, 'm'));
  });

  it('closes the downstream when the cluster does not exist', async () => {
    await closed(connect(gw.port(4), '127.0.0.1'));
    assert.equal(statValue(gw, 'tcp.nowhere.downstream_cx_no_route'), 1);
    await waitFor(() => readFileSync(logFile, 'utf8').includes('missing '), 'the access log line');
    assert.match(readFileSync(logFile, 'utf8'), /^missing - NC 0 0$/m);
  });

  describe('with TLS', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
    let pki: TestPki;
    let secure: Awaited<ReturnType<typeof startEchoServer>>;
    let tlsGw: RunningPortico;

    before(async () => {
      pki = makeTestPki([{ name: 'server', commonName: 'server' }]);
      secure = await startEchoServer('secure', { cert: readFileSync(pki.file('server.crt')), key: readFileSync(pki.file('server.key')) });
      const termination = `      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{ certificate_chain: { filename: ${pki.file('server.crt')} }, private_key: { filename: ${pki.file('server.key')} } }]
`;
      tlsGw = await startPortico(
        bootstrap(
          [tcpListener('stat_prefix: terminated, cluster: one', termination), tcpListener('stat_prefix: originated, cluster: secure')],
          staticCluster('one', one.port) + tlsCluster('secure', secure.port),
        ),
      );
    });

    after(async () => {
      await tlsGw?.close();
      secure?.server.close();
    });

    it('proxies the cleartext of a TLS listener', async () => {
      const socket = tlsConnect({ port: tlsGw.port(0), host: '127.0.0.1', rejectUnauthorized: false });
      assert.equal(await exchange(socket, 'hi'), 'one\nhi');
    });

    it('originates TLS to a cluster with an UpstreamTlsContext', async () => {
      assert.equal(await exchange(connect(tlsGw.port(1), '127.0.0.1'), 'hi'), 'secure\nhi');
      assert.equal(statValue(tlsGw, 'cluster.secure.ssl.handshake'), 1);
    });
  });

  it('refuses what it does not implement, and a proxy without a cluster', () => {
    const errors = checkYaml(bootstrap([tcpListener('stat_prefix: x, cluster: one, hash_policy: [{ source_ip: {} }]')], staticCluster('one', 1)));
    assert.deepEqual(
      errors.map((e) => e.path),
      ['static_resources.listeners[0].filter_chains[0].filters[0].typed_config.hash_policy'],
    );
  });

  it('needs a cluster and a stat_prefix, and must be the last filter', async () => {
    await assert.rejects(startPortico(bootstrap([tcpListener('stat_prefix: x')], staticCluster('one', 1))), /needs one of the fields of oneof cluster_specifier/);
    await assert.rejects(startPortico(bootstrap([tcpListener('cluster: one')], staticCluster('one', 1))), /stat_prefix/);
    const errors = checkYaml(
      bootstrap(
        [
          `  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - { name: a, typed_config: { "@type": ${TCP_PROXY}, stat_prefix: a, cluster: one } }
      - { name: b, typed_config: { "@type": ${TCP_PROXY}, stat_prefix: b, cluster: one } }
`,
        ],
        staticCluster('one', 1),
      ),
    );
    assert.deepEqual(
      errors.map((e) => `${e.path}: ${e.message}`),
      ['static_resources.listeners[0].filter_chains[0].filters[0]: tcp_proxy is a terminal filter and must be last'],
    );
  });
});
