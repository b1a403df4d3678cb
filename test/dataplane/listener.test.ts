/**
 * Listeners: filter chain selection (Envoy's criteria order, most specific wins, default_filter_chain, no match
 * closes the connection) and TLS termination, including client certificates.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { startPortico, type RunningPortico } from '../support/portico.js';
import { rawRequest } from '../support/upstreams.js';

/** A filter chain whose connection manager answers every request with `body`. */
function chain(body: string, extra = ''): string {
  return `
    - ${extra ? `${extra}\n      ` : ''}filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${body}
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

function bootstrap(chains: string, defaultChain?: string): string {
  const defaultPart = defaultChain ? `\n    default_filter_chain:${defaultChain.replace(/^\n    -/, '\n     ')}` : '';
  return `
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:${chains}${defaultPart}
`;
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
