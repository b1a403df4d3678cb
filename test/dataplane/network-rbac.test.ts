/**
 * `envoy.filters.network.rbac` before a tcp_proxy, through real sockets: a denied source address is closed before
 * anything reaches the upstream, an allowed one is proxied; on a TLS chain the peer certificate and SNI decide;
 * shadow rules count without closing; stats carry Envoy's names; unsupported settings are refused.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tcpExchange } from '../support/streams.js';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { checkYaml, parseBootstrap, type RunningPortico, startPortico, stat } from '../support/portico.js';

const RBAC = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

function listener(rbac: string): string {
  return `  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config: { "@type": ${RBAC}, ${rbac} }
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": ${TCP_PROXY}, stat_prefix: tcp, cluster: echo }
`;
}

function bootstrap(port: number, ...rbac: string[]): string {
  return `static_resources:
  listeners:
${rbac.map(listener).join('')}
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment: { cluster_name: echo, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } }] }] }
`;
}


describe('network RBAC filter', () => {
  let echo: Server;
  let upstreamConnections = 0;
  let gw: RunningPortico;

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (socket) => {
      upstreamConnections++;
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const port = (echo.address() as AddressInfo).port;
    gw = await startPortico(
      bootstrap(
        port,
        // Only 127.0.0.1 gets in; the shadow rules would deny everything on the listener's own port range.
        `stat_prefix: edge, shadow_rules_stat_prefix: audit_,
          rules: { action: ALLOW, policies: { local: { permissions: [{ any: true }], principals: [{ direct_remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }] } } },
          shadow_rules: { action: DENY, policies: { all: { permissions: [{ destination_port_range: { start: 1, end: 65536 } }], principals: [{ source_ip: { address_prefix: 127.0.0.0, prefix_len: 8 } }] } } }`,
        // DENY on an address and on a header, which never matches at L4.
        `stat_prefix: second.,
          rules: { action: DENY, policies: { blocked: { permissions: [{ or_rules: { rules: [{ header: { name: x, present_match: true } }, { destination_ip: { address_prefix: 127.0.0.1 } }] } }], principals: [{ not_id: { remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } } }] } } }`,
      ),
    );
  });

  after(async () => {
    await gw.close();
    await new Promise((resolve) => echo.close(resolve));
  });

  it('closes a denied source before the upstream sees it and proxies an allowed one', async () => {
    assert.equal(await tcpExchange(gw.port(0), '127.0.0.1'), 'hello\n');
    const before = upstreamConnections;
    assert.equal(await tcpExchange(gw.port(0), '127.0.0.2'), '');
    assert.equal(upstreamConnections, before);
    assert.equal(stat(gw, 'edge.rbac.allowed'), 1);
    assert.equal(stat(gw, 'edge.rbac.denied'), 1);
    // Shadow rules only count.
    assert.equal(stat(gw, 'edge.rbac.audit_shadow_denied'), 2);
    assert.equal(stat(gw, 'edge.rbac.audit_shadow_allowed'), 0);
  });

  it('DENY closes what a policy matches', async () => {
    assert.equal(await tcpExchange(gw.port(1), '127.0.0.3'), '');
    assert.equal(await tcpExchange(gw.port(1), '127.0.0.1'), 'hello\n');
    assert.equal(stat(gw, 'second.rbac.denied'), 1);
    assert.equal(stat(gw, 'second.rbac.allowed'), 1);
  });

  it('refuses CONTINUOUS enforcement, a missing stat_prefix, CEL conditions and a filter that is no network filter', () => {
    const errors: ConfigError[] = [];
    const yaml = bootstrap(1, `stat_prefix: x, enforcement_type: CONTINUOUS, rules: { policies: { p: { permissions: [{ any: true }], principals: [{ any: true }] } } }`);
    compileBootstrap(parseBootstrap(yaml), createLogger('off'), errors, EXTENSIONS);
    const filter = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
    assert.deepEqual(errors.map((e) => [e.code, e.path]), [['unsupported_field', `${filter}.enforcement_type`]]);
    // A supported extension that is not a network filter, before the terminal one.
    const misplaced: ConfigError[] = [];
    const cors = bootstrap(1, 'stat_prefix: x').replace(`"@type": ${RBAC}, stat_prefix: x`, '"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors');
    compileBootstrap(parseBootstrap(cors), createLogger('off'), misplaced, EXTENSIONS);
    assert.deepEqual(misplaced.map((e) => [e.code, e.path]), [['unsupported_extension', filter]]);
    const checked = checkYaml(bootstrap(1, `rules: { policies: { p: { permissions: [{ any: true }], principals: [{ any: true }], condition: { const_expr: { bool_value: true } } } } }`));
    assert.deepEqual(
      checked.map((e) => [e.code, e.path]),
      [
        ['missing_required', `${filter}.stat_prefix`],
        ['unsupported_field', `${filter}.rules.policies["p"].condition`],
      ],
    );
  });
});

/** A TLS connection with a client certificate and SNI: what came back before the connection closed. */
function tlsExchange(port: number, pki: TestPki, client: string, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername,
      ca: readFileSync(pki.file('ca.crt')),
      cert: readFileSync(pki.file(`${client}.crt`)),
      key: readFileSync(pki.file(`${client}.key`)),
      checkServerIdentity: () => undefined,
    });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', () => {});
    socket.on('close', () => resolve(data));
    socket.once('secureConnect', () => socket.end('hello\n'));
  });
}

describe('network RBAC filter on a TLS chain', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let echo: Server;
  let gw: RunningPortico;
  let pki: TestPki;

  before(async () => {
    pki = makeTestPki([
      { name: 'server', commonName: 'db.example' },
      { name: 'app', commonName: 'app', subjectAltNames: ['URI:spiffe://example.org/app'] },
      { name: 'other', commonName: 'other' },
    ]);
    echo = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const tls = `      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{ certificate_chain: { filename: ${pki.file('server.crt')} }, private_key: { filename: ${pki.file('server.key')} } }]
            validation_context: { trusted_ca: { filename: ${pki.file('ca.crt')} } }
`;
    const yaml = bootstrap(
      (echo.address() as AddressInfo).port,
      `stat_prefix: db,
          rules: { policies: { app: { permissions: [{ requested_server_name: { exact: db.example } }], principals: [{ authenticated: { principal_name: { exact: "spiffe://example.org/app" } } }] } } }`,
    ).replace('cluster: echo }\n', `cluster: echo }\n${tls}`);
    gw = await startPortico(yaml);
  });

  after(async () => {
    await gw?.close();
    await new Promise((resolve) => echo?.close(resolve));
  });

  it('matches the TLS peer and the SNI', async () => {
    assert.equal(await tlsExchange(gw.port(), pki, 'app', 'db.example'), 'hello\n');
    assert.equal(await tlsExchange(gw.port(), pki, 'other', 'db.example'), '');
    assert.equal(await tlsExchange(gw.port(), pki, 'app', 'cache.example'), '');
    assert.equal(stat(gw, 'db.rbac.allowed'), 1);
    assert.equal(stat(gw, 'db.rbac.denied'), 2);
  });
});
