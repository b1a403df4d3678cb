/**
 * The conformance table: which corpus examples run, how their files are wired together, and what they must do
 * (numbers follow ../shared/conformance/README.md). To add an example, add an `ExampleSpec` to `EXAMPLES`;
 * to pin down how a file must load or be refused, add it to `FILE_EXPECTATIONS`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { type EchoResponseBody, startEchoServer } from '../../src/echo/echo-server.js';
import { makeTestPki } from '../support/certificates.js';
import {
  type HelloService,
  helloBody,
  type RecordingUpstream,
  startHelloService,
  startRecordingUpstream,
  startToggleBackend,
  type ToggleBackend,
} from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';
import { connectWebSocket, startWebSocketServer } from '../support/websocket.js';
import { type BootstrapJson, corpusPath, type ExampleEnv, type ExampleSpec, type FakeUpstream, fetchText } from './harness.js';

// ---------------------------------------------------------------------------------------------------------------
// Tiers (README "Priority tiers"), by the example's top-level directory

const TIERS: Record<string, 1 | 2 | 3> = {
  'front-proxy': 1, cors: 1, local_ratelimit: 1, rbac: 1, 'route-mirror': 1, 'fault-injection': 1, ext_authz: 1,
  tls: 1, 'tls-sni': 1, 'tls-inspector': 1, websocket: 1, gzip: 1, brotli: 1, zstd: 1, 'dynamic-config-fs': 1,
  zipkin: 2, 'jaeger-tracing': 2, opentelemetry: 2, 'grpc-bridge': 2, 'double-proxy': 2, 'dynamic-config-cp': 2,
  csrf: 2, 'locality-load-balancing': 2,
  lua: 3, 'wasm-cc': 3, udp: 3, redis: 3, cache: 3,
};

export function tierOf(file: string): 1 | 2 | 3 | undefined {
  return TIERS[file.split('/')[0]!];
}

// ---------------------------------------------------------------------------------------------------------------
// How individual files must load

export interface RejectionExpectation {
  /** Canonical extension name expected in an `unsupported extension <name>` message. */
  extension: string;
  /** The offending field's path (an error's path must start with it). */
  path?: string;
  todo?: string;
}

export interface FileExpectation {
  /** The file must load cleanly (checkBootstrap and compileBootstrap give no error). */
  mustLoad?: boolean;
  /** Refusals that must be reported, each its own test. */
  rejects?: RejectionExpectation[];
  /** A known Portico bug that breaks the generic "loads or is refused cleanly" check for this file. */
  todo?: string;
}

const HTTP_FILTER_0 = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]';
const HTTP_FILTER_1 = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]';

export const FILE_EXPECTATIONS: Record<string, FileExpectation> = {
  'front-proxy/envoy.yaml': { mustLoad: true },
  'front-proxy/service-envoy.yaml': { mustLoad: true },
  'front-proxy/service-envoy-2.yaml': { mustLoad: true },
  'double-proxy/envoy.yaml': { mustLoad: true },
  'tls-inspector/envoy.yaml': { mustLoad: true },
  'tls-sni/envoy-client.yaml': { mustLoad: true },
  // Loads once its certs/*.pem (made by the sandbox) point at _extra_certs: the tls-sni example runs it so.
  'tls-sni/envoy.yaml': { todo: 'needs the certificates the tls-sni sandbox generates (run by the tls-sni example with _extra_certs)' },
  'tls/envoy-https-http.yaml': { mustLoad: true },
  // Its only non-core part is a stdout access log.
  'csrf/crosssite/envoy.yaml': { mustLoad: true },
  'cors/frontend/envoy.yaml': { mustLoad: true },
  'cors/backend/envoy.yaml': { mustLoad: true },
  // Its tcp_proxy loads; its cluster's TLS files (certs/*.pem) are made by the sandbox and absent from the corpus.
  'double-proxy/envoy-frontend.yaml': { todo: 'needs the certificates the double-proxy sandbox generates (tier 2)' },
  // Its tls_inspector loads; the rest is the mTLS of tier 2 (client SAN matching, sandbox-made certificates).
  'double-proxy/envoy-backend.yaml': { todo: 'needs the certificates the double-proxy sandbox generates, and client SAN matching (tier 2)' },
  'websocket/envoy-ws.yaml': { mustLoad: true },
  'websocket/envoy-ws-route.yaml': { mustLoad: true },
  'websocket/envoy-wss.yaml': { mustLoad: true },
  'websocket/envoy-wss-passthrough.yaml': { mustLoad: true },
  'lua/envoy.yaml': {
    rejects: [
      { extension: 'envoy.filters.http.lua', path: HTTP_FILTER_0 },
      { extension: 'envoy.filters.http.lua', path: HTTP_FILTER_1 },
      {
        extension: 'envoy.filters.http.lua',
        path: 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].typed_per_filter_config["lua_filter_with_custom_name_1"]',
      },
    ],
  },
  'wasm-cc/envoy.yaml': {
    rejects: [
      { extension: 'envoy.filters.http.wasm', path: HTTP_FILTER_0 },
      {
        extension: 'envoy.filters.http.wasm',
        path: 'static_resources.clusters[1].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].http_filters[0]',
      },
    ],
  },
  'udp/envoy.yaml': {
    rejects: [
      {
        extension: 'envoy.filters.udp_listener.udp_proxy',
        path: 'static_resources.listeners[0].listener_filters[0]',
      },
    ],
  },
  'redis/envoy.yaml': {
    rejects: [{ extension: 'envoy.filters.network.redis_proxy', path: 'static_resources.listeners[0].filter_chains[0].filters[0]' }],
  },
  'cache/envoy.yaml': { rejects: [{ extension: 'envoy.filters.http.cache', path: HTTP_FILTER_0 }] },
};

/** Tier-3 files also checked through `portico validate -c` and `portico run -c`. */
export const CLI_REFUSALS: { file: string; extension: string; path: string }[] = [
  { file: 'lua/envoy.yaml', extension: 'envoy.filters.http.lua', path: HTTP_FILTER_0 },
];

// ---------------------------------------------------------------------------------------------------------------
// Examples run end to end

const SERVICE1_REPLICAS = ['service1-a', 'service1-b', 'service1-c'];

function helloReplicaName(body: string): string | undefined {
  return /hostname (\S+) resolved/.exec(body)?.[1];
}

export const FRONT_PROXY: ExampleSpec = {
  name: 'front-proxy',
  tier: 1,
  upstreams: {
    ...Object.fromEntries(SERVICE1_REPLICAS.map((name) => [name, () => startHelloService(1, { name })])),
    service2: () => startHelloService(2, { name: 'service2' }),
  },
  instances: [
    {
      id: 'service-envoy-1',
      file: 'front-proxy/service-envoy.yaml',
      run: 'plane',
      clusters: { service1: SERVICE1_REPLICAS.map((upstream) => ({ upstream })) },
    },
    {
      id: 'service-envoy-2',
      file: 'front-proxy/service-envoy-2.yaml',
      run: 'plane',
      clusters: { service2: [{ upstream: 'service2' }] },
    },
    {
      id: 'front-envoy',
      file: 'front-proxy/envoy.yaml',
      run: 'cli',
      clusters: {
        'service1-envoy': [{ instance: 'service-envoy-1' }],
        'service2-envoy': [{ instance: 'service-envoy-2' }],
      },
    },
  ],
  expectations: [
    {
      name: '1. GET http://edge/service/1 → 200 with the service 1 body',
      run: async (env) => {
        const res = await fetchText(`${env.instance('front-envoy').url(0)}/service/1`);
        assert.equal(res.status, 200);
        assert.match(res.body, /Hello from behind Envoy \(service 1\)!/);
      },
    },
    {
      name: '2. GET http://edge/service/2 → the service 2 body',
      run: async (env) => {
        const res = await fetchText(`${env.instance('front-envoy').url(0)}/service/2`);
        assert.equal(res.status, 200);
        assert.equal(res.body, helloBody(2, 'service2'));
      },
    },
    {
      name: '3. GET https://edge:8443/service/1 (certificate not verified) → the service 1 body',
      run: async (env) => {
        const res = await fetchText(`${env.instance('front-envoy').url(1, 'https')}/service/1`);
        assert.equal(res.status, 200);
        assert.match(res.body, /Hello from behind Envoy \(service 1\)!/);
      },
    },
    {
      name: '4. three service-1 replicas: three consecutive requests are answered by each replica once (round robin)',
      run: async (env) => {
        const before = SERVICE1_REPLICAS.map((id) => env.upstream<HelloService>(id).requests.length);
        const names: string[] = [];
        for (let i = 0; i < 3; i++) {
          const res = await fetchText(`${env.instance('front-envoy').url(0)}/service/1`);
          assert.equal(res.status, 200);
          assert.match(res.body, /Hello from behind Envoy \(service 1\)!/);
          names.push(helloReplicaName(res.body) ?? '(no hostname)');
        }
        assert.deepEqual([...names].sort(), [...SERVICE1_REPLICAS].sort(), `replicas answering: ${names.join(', ')}`);
        const delta = SERVICE1_REPLICAS.map((id, i) => env.upstream<HelloService>(id).requests.length - before[i]!);
        assert.deepEqual(delta, [1, 1, 1]);
      },
    },
    {
      name: '5. edge admin GET /server_info returns JSON',
      run: async (env) => {
        const res = await fetchText(`${env.instance('front-envoy').adminUrl()}/server_info`);
        assert.equal(res.status, 200);
        const info = JSON.parse(res.body) as Record<string, unknown>;
        assert.equal(typeof info, 'object');
        for (const key of ['version', 'state', 'command_line_options']) assert.ok(key in info, `server_info lacks ${key}`);
      },
    },
    {
      name: '6. edge admin GET /stats returns name: value lines',
      run: async (env) => {
        const res = await fetchText(`${env.instance('front-envoy').adminUrl()}/stats`);
        assert.equal(res.status, 200);
        const lines = res.body.split('\n').filter((l) => l.trim() !== '');
        assert.ok(lines.length > 0, 'no stats');
        for (const line of lines) assert.match(line, /^[^\s:]+: \S.*$/);
      },
    },
    {
      name: '7. GET /service/3 (no route) → 404 local reply, no upstream reached',
      run: async (env) => {
        const counts = (): number =>
          [...SERVICE1_REPLICAS, 'service2'].reduce((n, id) => n + env.upstream<HelloService>(id).requests.length, 0);
        const before = counts();
        const res = await fetchText(`${env.instance('front-envoy').url(0)}/service/3`);
        assert.equal(res.status, 404);
        assert.equal(counts(), before);
      },
    },
  ],
};

export const DOUBLE_PROXY_EDGE: ExampleSpec = {
  name: 'double-proxy (envoy.yaml alone)',
  tier: 1,
  upstreams: { app: () => startEchoServer({ name: 'app' }) },
  instances: [{ id: 'proxy', file: 'double-proxy/envoy.yaml', run: 'plane', clusters: { service1: [{ upstream: 'app' }] } }],
  expectations: [
    {
      name: '3. GET / is routed to service1 (the app) and returns its body',
      run: async (env) => {
        const res = await fetchText(`${env.instance('proxy').url(0)}/`);
        assert.equal(res.status, 200);
        const echo = JSON.parse(res.body) as EchoResponseBody;
        assert.equal(echo.name, 'app');
        assert.equal(echo.method, 'GET');
        assert.equal(echo.path, '/');
      },
    },
  ],
};

export const TLS_HTTPS_HTTP: ExampleSpec = {
  name: 'tls (envoy-https-http.yaml)',
  tier: 1,
  upstreams: { 'service-http': () => startEchoServer({ name: 'service-http' }) },
  instances: [
    { id: 'proxy', file: 'tls/envoy-https-http.yaml', run: 'plane', clusters: { 'service-http': [{ upstream: 'service-http' }] } },
  ],
  expectations: [
    {
      name: '1. https://P/ is answered by service-http, which saw x-forwarded-proto: https',
      run: async (env) => {
        const res = await fetchText(`${env.instance('proxy').url(0, 'https')}/`);
        assert.equal(res.status, 200);
        const echo = JSON.parse(res.body) as EchoResponseBody;
        assert.equal(echo.name, 'service-http');
        assert.equal(echo.headers['x-forwarded-proto'], 'https');
      },
    },
  ],
};

// tls-sni and tls-inspector: filter chains chosen by SNI, transport protocol and ALPN

/** What the TLS fakes answer: which service, over which HTTP version, for which path and SNI. */
interface TlsEchoBody {
  name: string;
  protocol: string;
  path: string;
  servername: string;
}

/**
 * An upstream over TLS (`service-https*`) with a throwaway certificate whose CN is its name; it speaks HTTP/2
 * when the client offers `h2`, HTTP/1.1 otherwise.
 */
async function startTlsEcho(name: string): Promise<FakeUpstream> {
  const pki = makeTestPki([{ name, commonName: name }]);
  const server = http2.createSecureServer(
    { cert: readFileSync(pki.file(`${name}.crt`)), key: readFileSync(pki.file(`${name}.key`)), allowHTTP1: true },
    (req, res) => {
      const body: TlsEchoBody = { name, protocol: req.httpVersion, path: req.url, servername: (req.socket as TLSSocket).servername || '' };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sessions = new Set<{ destroy(): void }>();
  server.on('session', (session) => sessions.add(session));
  server.on('secureConnection', (socket) => sessions.add(socket));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

interface HttpsAnswer {
  status: number;
  body: string;
  /** CN of the certificate the client was shown. */
  certificate: string;
}

/** GET over HTTPS/1.1 with this SNI (none when undefined) and ALPN offer, without verifying the certificate. */
function httpsGet(port: number, path: string, servername: string | undefined, alpn?: string[]): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    // The agent hands the options to tls.connect, ALPNProtocols included.
    const options: https.RequestOptions & Pick<ConnectionOptions, 'ALPNProtocols'> = { host: '127.0.0.1', port, path, ALPNProtocols: alpn, rejectUnauthorized: false, agent: false };
    if (servername !== undefined) options.servername = servername;
    const req = https.get(options, (res) => {
      const certificate = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN);
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, certificate }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
  });
}

/** GET over HTTP/2 (ALPN `h2` only) with this SNI, without verifying the certificate. */
function h2Get(port: number, path: string, servername: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername, rejectUnauthorized: false });
    session.on('error', reject);
    const req = session.request({ ':path': path });
    let status = 0;
    let body = '';
    req.on('response', (headers) => (status = Number(headers[':status'])));
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      session.close();
      resolve({ status, body });
    });
    req.on('error', reject);
  });
}

/** The four `certs/domainN.*.pem` of tls-sni/envoy.yaml, pointed at the corpus's pre-made pairs. */
function useExtraCerts(json: BootstrapJson): void {
  for (const chain of json['static_resources']['listeners'][0]['filter_chains'] as BootstrapJson[]) {
    for (const certificate of chain['transport_socket']?.['typed_config']?.['common_tls_context']?.['tls_certificates'] ?? []) {
      for (const part of [certificate['certificate_chain'], certificate['private_key']]) {
        part['filename'] = corpusPath(`_extra_certs/${(part['filename'] as string).replace(/^certs\//, '')}`);
      }
    }
  }
}

export const TLS_SNI: ExampleSpec = {
  name: 'tls-sni',
  tier: 1,
  upstreams: {
    'service-http0': () => startEchoServer({ name: 'service-http0' }),
    'service-http1': () => startEchoServer({ name: 'service-http1' }),
    'service-https': () => startTlsEcho('service-https'),
  },
  instances: [
    {
      id: 'proxy',
      file: 'tls-sni/envoy.yaml',
      run: 'plane',
      clusters: {
        'proxy-domain1': [{ upstream: 'service-http0' }],
        'proxy-domain2': [{ upstream: 'service-http1' }],
        'proxy-domain3': [{ upstream: 'service-https' }],
      },
      rewrite: useExtraCerts,
    },
    {
      id: 'proxy-client',
      file: 'tls-sni/envoy-client.yaml',
      run: 'plane',
      clusters: Object.fromEntries(['1', '2', '3'].map((n) => [`proxy-client-domain${n}`, [{ instance: 'proxy' }]])),
    },
  ],
  expectations: [
    ...(
      [
        ['1', 'domain1.example.com', 'service-http0'],
        ['2', 'domain2.example.com', 'service-http1'],
      ] as const
    ).map(([n, servername, service]) => ({
      name: `${n}. TLS with SNI ${servername}, GET / → ${service}, with the ${servername} certificate`,
      run: async (env: ExampleEnv) => {
        const res = await httpsGet(env.instance('proxy').listenerPort(), '/', servername);
        assert.equal(res.status, 200);
        assert.equal((JSON.parse(res.body) as EchoResponseBody).name, service);
        assert.equal(res.certificate, servername);
      },
    })),
    {
      name: '3. SNI domain3.example.com → service-https, the TLS handshake being with the upstream itself',
      run: async (env) => {
        const res = await httpsGet(env.instance('proxy').listenerPort(), '/', 'domain3.example.com');
        assert.equal(res.status, 200);
        assert.equal(res.certificate, 'service-https');
        assert.deepEqual(JSON.parse(res.body), { name: 'service-https', protocol: '1.1', path: '/', servername: 'domain3.example.com' } satisfies TlsEchoBody);
      },
    },
    {
      name: '4. via envoy-client.yaml: GET /domain1, /domain2, /domain3 → service-http0, service-http1, service-https, paths unchanged',
      run: async (env) => {
        const client = env.instance('proxy-client');
        for (const [path, service] of [['/domain1', 'service-http0'], ['/domain2', 'service-http1']] as const) {
          const res = await fetchText(`${client.url()}${path}`);
          assert.equal(res.status, 200);
          const echo = JSON.parse(res.body) as EchoResponseBody;
          assert.deepEqual([echo.name, echo.path], [service, path]);
        }
        const res = await fetchText(`${client.url()}/domain3`);
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body), { name: 'service-https', protocol: '1.1', path: '/domain3', servername: 'domain3.example.com' } satisfies TlsEchoBody);
      },
    },
    {
      name: '5. an unknown SNI, or none, finds no chain: the connection is closed during the TLS handshake',
      run: async (env) => {
        const port = env.instance('proxy').listenerPort();
        await assert.rejects(httpsGet(port, '/', 'unknown.example.com'));
        await assert.rejects(httpsGet(port, '/', undefined));
      },
    },
  ],
};

export const TLS_INSPECTOR: ExampleSpec = {
  name: 'tls-inspector',
  tier: 1,
  upstreams: {
    'service-https0': () => startTlsEcho('service-https0'),
    'service-https1': () => startTlsEcho('service-https1'),
    'service-http': () => startEchoServer({ name: 'service-http' }),
  },
  instances: [
    {
      id: 'proxy',
      file: 'tls-inspector/envoy.yaml',
      // Through `portico run`, for the admin /stats of expectations 1 and 5.
      run: 'cli',
      clusters: {
        'service-https1': [{ upstream: 'service-https1' }],
        'service-https0': [{ upstream: 'service-https0' }],
        'service-http': [{ upstream: 'service-http' }],
      },
    },
  ],
  expectations: [
    {
      name: '1. at start, admin /stats shows tls_inspector.alpn_found: 0',
      run: async (env) => {
        const stats = await fetchText(`${env.instance('proxy').adminUrl()}/stats?filter=^tls_inspector`);
        assert.match(stats.body, /^tls_inspector\.alpn_found: 0$/m);
      },
    },
    {
      name: '2. HTTPS with ALPN http/1.1 only → service-https0',
      run: async (env) => {
        const res = await httpsGet(env.instance('proxy').listenerPort(), '/', 'service-https0', ['http/1.1']);
        assert.equal(res.status, 200);
        assert.equal(res.certificate, 'service-https0');
        assert.deepEqual(JSON.parse(res.body), { name: 'service-https0', protocol: '1.1', path: '/', servername: 'service-https0' } satisfies TlsEchoBody);
      },
    },
    {
      name: '3. HTTPS with ALPN h2 → service-https1, HTTP/2 end to end through the TCP proxy',
      run: async (env) => {
        const res = await h2Get(env.instance('proxy').listenerPort(), '/', 'service-https1');
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body), { name: 'service-https1', protocol: '2.0', path: '/', servername: 'service-https1' } satisfies TlsEchoBody);
      },
    },
    {
      name: '4. plain HTTP → service-http',
      run: async (env) => {
        const res = await fetchText(`${env.instance('proxy').url()}/`);
        assert.equal(res.status, 200);
        assert.equal((JSON.parse(res.body) as EchoResponseBody).name, 'service-http');
      },
    },
    {
      name: '5. then /stats shows alpn_found 2, sni_found 2, tls_found 2, tls_not_found 1',
      run: async (env) => {
        const stats = (await fetchText(`${env.instance('proxy').adminUrl()}/stats?filter=^tls_inspector`)).body;
        const value = (name: string) => Number(new RegExp(`^tls_inspector\\.${name}: (\\d+)$`, 'm').exec(stats)?.[1]);
        assert.deepEqual(
          Object.fromEntries(['alpn_found', 'sni_found', 'tls_found', 'tls_not_found'].map((name) => [name, value(name)])),
          { alpn_found: 2, sni_found: 2, tls_found: 2, tls_not_found: 1 },
          stats,
        );
      },
    },
  ],
};

// locality-load-balancing: priorities, locality weights and active health checks

const LOCALITY_BACKENDS = ['backend-local-1', 'backend-local-2', 'backend-remote-1', 'backend-remote-2'];
/** The four more instances of `backend-local-1` that expectation 4 runs in locality local/zone-1. */
const LOCAL_1_REPLICAS = ['backend-local-1-b', 'backend-local-1-c', 'backend-local-1-d', 'backend-local-1-e'];

/** Polls the instance's `/clusters` until every backend shows the flags it should (`healthy` or `/failed_active_hc`). */
async function awaitHealth(env: ExampleEnv, instance: string, expected: Record<string, 'healthy' | '/failed_active_hc'>): Promise<void> {
  let text = '';
  await waitFor(
    async () => {
      text = (await fetchText(`${env.instance(instance).adminUrl()}/clusters`)).body;
      return Object.entries(expected).every(([id, flags]) =>
        text.split('\n').includes(`backend::127.0.0.1:${env.upstream(id).port}::health_flags::${flags}`),
      );
    },
    () => `health flags ${JSON.stringify(expected)} in /clusters:\n${text.split('\n').filter((l) => l.includes('health_flags')).join('\n')}`,
    { timeoutMs: 20_000, intervalMs: 200 },
  );
}

/** Sets backends healthy or not through their own `/healthy` and `/unhealthy` endpoints. */
async function setHealth(env: ExampleEnv, ids: readonly string[], healthy: boolean): Promise<void> {
  for (const id of ids) {
    const res = await fetchText(`http://127.0.0.1:${env.upstream(id).port}/${healthy ? 'healthy' : 'unhealthy'}`);
    assert.equal(res.status, 201);
  }
}

/**
 * Sends batches of 100 requests until exactly `expected` answer (each at least once, no other backend, no error):
 * with several worker processes, each runs its own health checks and may see a change up to an interval later
 * than the one `/clusters` reports.
 */
async function expectBackends(env: ExampleEnv, instance: string, expected: readonly string[]): Promise<void> {
  let seen: string[] = [];
  await waitFor(
    async () => {
      const answered = new Set<string>();
      for (let i = 0; i < 100; i++) {
        const res = await fetchText(`${env.instance(instance).url(0)}/`);
        answered.add(res.status === 200 ? (/^Hello from (\S+)!\n$/.exec(res.body)?.[1] ?? res.body) : `status ${res.status}`);
      }
      seen = [...answered].sort();
      return JSON.stringify(seen) === JSON.stringify([...expected].sort());
    },
    () => `answers from exactly ${expected.join(', ')}; last batch: ${seen.join(', ')}`,
    { timeoutMs: 25_000, intervalMs: 100 },
  );
}

export const LOCALITY_LOAD_BALANCING: ExampleSpec = {
  name: 'locality-load-balancing',
  tier: 2,
  upstreams: Object.fromEntries([...LOCALITY_BACKENDS, ...LOCAL_1_REPLICAS].map((id) => [id, (): Promise<ToggleBackend> => startToggleBackend(id)])),
  instances: [
    {
      id: 'envoy',
      file: 'locality-load-balancing/envoy.yaml',
      run: 'cli',
      clusters: { backend: LOCALITY_BACKENDS.map((upstream) => ({ upstream })) },
    },
    {
      // The same file with local/zone-1 scaled to five instances (expectations 4 and 5).
      id: 'envoy-scaled',
      file: 'locality-load-balancing/envoy.yaml',
      run: 'cli',
      clusters: { backend: LOCALITY_BACKENDS.map((upstream) => ({ upstream })) },
      rewrite: (json, env) => {
        const locality = (json['static_resources']['clusters'][0]['load_assignment']['endpoints'] as BootstrapJson[])[0]!;
        const template = (locality['lb_endpoints'] as BootstrapJson[])[0]!;
        for (const id of LOCAL_1_REPLICAS) {
          const copy = structuredClone(template);
          const port = env.resolve({ upstream: id });
          copy['endpoint']['address']['socket_address']['port_value'] = port;
          copy['endpoint']['health_check_config']['port_value'] = port;
          copy['endpoint']['hostname'] = id;
          locality['lb_endpoints'].push(copy);
        }
      },
    },
  ],
  expectations: [
    {
      name: '1. all healthy → only backend-local-1 (priority 0 is fully healthy)',
      timeoutMs: 60_000,
      run: async (env) => {
        await awaitHealth(env, 'envoy', Object.fromEntries(LOCALITY_BACKENDS.map((id) => [id, 'healthy' as const])));
        await expectBackends(env, 'envoy', ['backend-local-1']);
      },
    },
    {
      name: '2. backend-local-1 unhealthy → backend-local-2 and backend-remote-1 (priority 1, split by locality weight)',
      timeoutMs: 60_000,
      run: async (env) => {
        await setHealth(env, ['backend-local-1'], false);
        await awaitHealth(env, 'envoy', { 'backend-local-1': '/failed_active_hc' });
        await expectBackends(env, 'envoy', ['backend-local-2', 'backend-remote-1']);
      },
    },
    {
      name: '3. backend-local-2 also unhealthy → backend-remote-1 and backend-remote-2 (70 % / 30 % spill to priority 2)',
      timeoutMs: 60_000,
      run: async (env) => {
        await setHealth(env, ['backend-local-2'], false);
        await awaitHealth(env, 'envoy', { 'backend-local-1': '/failed_active_hc', 'backend-local-2': '/failed_active_hc' });
        await expectBackends(env, 'envoy', ['backend-remote-1', 'backend-remote-2']);
      },
    },
    {
      name: '4. five instances in local/zone-1, four unhealthy → backend-local-1, backend-local-2 and backend-remote-1',
      timeoutMs: 60_000,
      run: async (env) => {
        await setHealth(env, ['backend-local-1', 'backend-local-2'], true);
        await setHealth(env, LOCAL_1_REPLICAS, false);
        await awaitHealth(env, 'envoy-scaled', {
          'backend-local-1': 'healthy',
          'backend-local-2': 'healthy',
          ...Object.fromEntries(LOCAL_1_REPLICAS.map((id) => [id, '/failed_active_hc' as const])),
        });
        await expectBackends(env, 'envoy-scaled', ['backend-local-1', 'backend-local-2', 'backend-remote-1']);
      },
    },
    {
      name: '5. then backend-local-2 and backend-remote-1 unhealthy → backend-local-1 and backend-remote-2',
      timeoutMs: 60_000,
      run: async (env) => {
        await setHealth(env, ['backend-local-2', 'backend-remote-1'], false);
        await awaitHealth(env, 'envoy-scaled', { 'backend-local-2': '/failed_active_hc', 'backend-remote-1': '/failed_active_hc' });
        await expectBackends(env, 'envoy-scaled', ['backend-local-1', 'backend-remote-2']);
      },
    },
  ],
};

// ---------------------------------------------------------------------------------------------------------------
// route-mirror: request mirroring with a fixed cluster and one named by a header

/** Mirror deliveries are asynchronous: waits until the fake has received `count` requests in all. */
async function mirrorReceived(service: HelloService, count: number): Promise<void> {
  await waitFor(() => service.requests.length >= count, () => `${count} requests at the mirror (it has ${service.requests.length})`);
}

export const ROUTE_MIRROR: ExampleSpec = {
  name: 'route-mirror',
  tier: 1,
  upstreams: {
    service1: () => startHelloService(1),
    'service1-mirror': () => startHelloService(1),
    service2: () => startHelloService(2),
    'service2-mirror': () => startHelloService(2),
  },
  instances: [
    {
      id: 'proxy',
      file: 'route-mirror/envoy.yaml',
      run: 'plane',
      clusters: Object.fromEntries(
        ['service1', 'service1-mirror', 'service2', 'service2-mirror'].map((name) => [name, [{ upstream: name }]]),
      ),
    },
  ],
  expectations: [
    {
      name: '1. GET /service/1 → service 1 body; service1 saw Host localhost:P, service1-mirror a GET /service/1 with Host localhost-shadow:P',
      run: async (env) => {
        const port = env.instance('proxy').listenerPort(0);
        const main = env.upstream<HelloService>('service1');
        const mirror = env.upstream<HelloService>('service1-mirror');
        const before = mirror.requests.length;
        const res = await fetchText(`${env.instance('proxy').url(0)}/service/1`, { headers: { host: `localhost:${port}` } });
        assert.equal(res.status, 200);
        assert.equal(res.body, helloBody(1));
        assert.equal(main.requests.at(-1)!.headers.host, `localhost:${port}`);
        await mirrorReceived(mirror, before + 1);
        const copy = mirror.requests.at(-1)!;
        assert.equal(copy.method, 'GET');
        assert.equal(copy.url, '/service/1');
        assert.equal(copy.headers.host, `localhost-shadow:${port}`);
      },
    },
    {
      name: '2. GET /service/2 with x-mirror-cluster: service2-mirror → service 2 body; the mirror got a GET with Host localhost-shadow:P',
      run: async (env) => {
        const port = env.instance('proxy').listenerPort(0);
        const main = env.upstream<HelloService>('service2');
        const mirror = env.upstream<HelloService>('service2-mirror');
        const before = mirror.requests.length;
        const res = await fetchText(`${env.instance('proxy').url(0)}/service/2`, {
          headers: { host: `localhost:${port}`, 'x-mirror-cluster': 'service2-mirror' },
        });
        assert.equal(res.status, 200);
        assert.equal(res.body, helloBody(2));
        assert.equal(main.requests.at(-1)!.headers.host, `localhost:${port}`);
        await mirrorReceived(mirror, before + 1);
        assert.equal(mirror.requests.at(-1)!.method, 'GET');
        assert.equal(mirror.requests.at(-1)!.headers.host, `localhost-shadow:${port}`);
      },
    },
    {
      name: '3. GET /service/2 without x-mirror-cluster, or naming an unknown cluster → service 2 body, nothing mirrored',
      run: async (env) => {
        const port = env.instance('proxy').listenerPort(0);
        const main = env.upstream<HelloService>('service2');
        const mirror = env.upstream<HelloService>('service2-mirror');
        // Expectation 2 mirrored one request; this one must leave it at one in total.
        await mirrorReceived(mirror, 1);
        const servedBefore = main.requests.length;
        for (const headers of [{}, { 'x-mirror-cluster': 'service2-mirror-non-existent' }] as Record<string, string>[]) {
          const res = await fetchText(`${env.instance('proxy').url(0)}/service/2`, { headers: { host: `localhost:${port}`, ...headers } });
          assert.equal(res.status, 200);
          assert.equal(res.body, helloBody(2));
        }
        assert.equal(main.requests.length, servedBefore + 2);
        // A copy is dispatched before the response is: one later copy to service1-mirror arriving makes a stray
        // copy to service2-mirror all but certain to have arrived too.
        const otherMirror = env.upstream<HelloService>('service1-mirror');
        const otherBefore = otherMirror.requests.length;
        await fetchText(`${env.instance('proxy').url(0)}/service/1`);
        await mirrorReceived(otherMirror, otherBefore + 1);
        assert.equal(mirror.requests.length, 1);
      },
    },
  ],
};

/** The cors sandbox's backend service: `GET /cors/<anything>` → 200 `Success!`. */
function startCorsBackend(): Promise<RecordingUpstream> {
  return startRecordingUpstream((req, res) => {
    const ok = req.method === 'GET' && (req.url ?? '').startsWith('/cors/');
    res.writeHead(ok ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(ok ? 'Success!' : 'not found');
  });
}

/** The cors sandbox's frontend service: a page. */
function startCorsPage(): Promise<RecordingUpstream> {
  return startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html><body><h1>Envoy CORS webpage</h1></body></html>');
  });
}

export const CORS: ExampleSpec = {
  name: 'cors',
  tier: 1,
  upstreams: { 'frontend-service': startCorsPage, 'backend-service': startCorsBackend },
  instances: [
    { id: 'frontend', file: 'cors/frontend/envoy.yaml', run: 'plane', clusters: { frontend_service: [{ upstream: 'frontend-service' }] } },
    { id: 'backend', file: 'cors/backend/envoy.yaml', run: 'cli', clusters: { backend_service: [{ upstream: 'backend-service' }] } },
  ],
  expectations: [
    {
      name: '1. frontend GET / returns the page (Envoy CORS webpage)',
      run: async (env) => {
        const res = await fetchText(`${env.instance('frontend').url(0)}/`);
        assert.equal(res.status, 200);
        assert.match(res.body, /Envoy CORS webpage/);
      },
    },
    {
      name: '2. backend /cors/disabled with Origin http://example.com → 200 Success!, no access-control-allow-origin',
      run: async (env) => {
        const res = await fetchText(`${env.instance('backend').url(0)}/cors/disabled`, { headers: { origin: 'http://example.com' } });
        assert.equal(res.status, 200);
        assert.equal(res.body, 'Success!');
        assert.equal(res.headers['access-control-allow-origin'], undefined);
      },
    },
    {
      name: '3. backend /cors/open with Origin http://example.com → 200 Success! and access-control-allow-origin: http://example.com',
      run: async (env) => {
        const res = await fetchText(`${env.instance('backend').url(0)}/cors/open`, { headers: { origin: 'http://example.com' } });
        assert.equal(res.status, 200);
        assert.equal(res.body, 'Success!');
        assert.equal(res.headers['access-control-allow-origin'], 'http://example.com');
      },
    },
    {
      name: '4. backend /cors/restricted: http://example.com gets no allow-origin, http://foo.envoyproxy.io gets its own',
      run: async (env) => {
        const url = `${env.instance('backend').url(0)}/cors/restricted`;
        const other = await fetchText(url, { headers: { origin: 'http://example.com' } });
        assert.equal(other.status, 200);
        assert.equal(other.body, 'Success!');
        assert.equal(other.headers['access-control-allow-origin'], undefined);
        const allowed = await fetchText(url, { headers: { origin: 'http://foo.envoyproxy.io' } });
        assert.equal(allowed.status, 200);
        assert.equal(allowed.body, 'Success!');
        assert.equal(allowed.headers['access-control-allow-origin'], 'http://foo.envoyproxy.io');
      },
    },
    {
      name: '5. backend admin /stats?filter=ingress_http lists the http.ingress_http.cors.* counters',
      run: async (env) => {
        const backend = env.instance('backend');
        // One request of each kind, so that both counters have moved whatever ran before.
        await fetchText(`${backend.url(0)}/cors/open`, { headers: { origin: 'http://example.com' } });
        await fetchText(`${backend.url(0)}/cors/restricted`, { headers: { origin: 'http://example.com' } });
        const counter = (body: string, name: string): number => Number(new RegExp(`^http\\.ingress_http\\.cors\\.${name}: (\\d+)$`, 'm').exec(body)?.[1]);
        let body = '';
        // The admin adds up the worker's stats, which it pushes or is asked for: poll until both show.
        await waitFor(async () => {
          const res = await fetchText(`${backend.adminUrl()}/stats?filter=ingress_http`);
          body = res.body;
          return counter(body, 'origin_valid') >= 1 && counter(body, 'origin_invalid') >= 1;
        }, () => `cors counters in /stats:\n${body}`);
      },
    },
  ],
};

// ---------------------------------------------------------------------------------------------------------------
// websocket: upgrades at connection-manager and route level, over TLS both sides, and TCP passthrough

/** `service-ws` (websocat in the sandbox): a literal reply to every message, a 400 to plain requests. */
const startServiceWs = () => startWebSocketServer({ reply: () => '[ws] HELO' });

/** `service-wss`: the same over TLS, with a throwaway self-signed certificate. */
function startServiceWss() {
  const pki = makeTestPki([{ name: 'service-wss', commonName: 'service-wss' }]);
  return startWebSocketServer({
    reply: () => '[wss] HELO',
    tls: { cert: readFileSync(pki.file('service-wss.crt')), key: readFileSync(pki.file('service-wss.key')) },
  });
}

/**
 * The README's exchange through the example's proxy: open the socket, send HELO, expect the reply, send
 * GOODBYE, expect the same reply again.
 */
async function heloTwice(env: ExampleEnv, path: string, reply: string, tls = false): Promise<void> {
  const handshake = await connectWebSocket({ port: env.instance('proxy').listenerPort(), path, tls });
  assert.equal(handshake.status, 101, `the upgrade was answered ${handshake.status}: ${handshake.body}`);
  const client = handshake.client!;
  try {
    client.send('HELO');
    assert.equal(await client.receive(), reply);
    client.send('GOODBYE');
    assert.equal(await client.receive(), reply);
  } finally {
    await client.close();
  }
}

export const WEBSOCKET_WS: ExampleSpec = {
  name: 'websocket (envoy-ws.yaml)',
  tier: 1,
  upstreams: { 'service-ws': startServiceWs },
  instances: [{ id: 'proxy', file: 'websocket/envoy-ws.yaml', run: 'plane', clusters: { service_ws: [{ upstream: 'service-ws' }] } }],
  expectations: [
    {
      name: '1. ws://P/ → [ws] HELO twice',
      run: (env) => heloTwice(env, '/', '[ws] HELO'),
    },
  ],
};

export const WEBSOCKET_WS_ROUTE: ExampleSpec = {
  name: 'websocket (envoy-ws-route.yaml)',
  tier: 1,
  upstreams: { 'service-ws': startServiceWs },
  instances: [
    {
      id: 'proxy',
      file: 'websocket/envoy-ws-route.yaml',
      // Through `portico run`, with an admin endpoint added to read the stat of expectation 6.
      run: 'cli',
      clusters: { service_ws: [{ upstream: 'service-ws' }] },
      rewrite: (json, env) => {
        json['admin'] = { address: { socket_address: { address: '127.0.0.1', port_value: env.resolve({ admin: 'proxy' }) } } };
      },
    },
  ],
  expectations: [
    {
      name: '2. ws://P/ws → [ws] HELO twice',
      run: (env) => heloTwice(env, '/ws', '[ws] HELO'),
    },
    {
      name: '5. plain GET / → 200 NotWebSocket; plain GET /ws is proxied and gets the upstream\'s refusal',
      run: async (env) => {
        const root = await fetchText(`${env.instance('proxy').url()}/`);
        assert.equal(root.status, 200);
        assert.equal(root.body, 'NotWebSocket\n');
        const ws = await fetchText(`${env.instance('proxy').url()}/ws`);
        assert.equal(ws.body, 'Only WebSocket connections are welcome here');
      },
    },
    {
      name: '6. an upgrade on / is refused: 403, empty body, connection closed, downstream_rq_ws_on_non_ws_route counted',
      run: async (env) => {
        const refused = await connectWebSocket({ port: env.instance('proxy').listenerPort(), path: '/' });
        assert.equal(refused.status, 403);
        assert.equal(refused.body, '');
        assert.equal(refused.headers['connection'], 'close');
        const stats = await fetchText(`${env.instance('proxy').adminUrl()}/stats?filter=ws_on_non_ws_route`);
        assert.match(stats.body, /^http\.ingress_ws_to_ws\.downstream_rq_ws_on_non_ws_route: [1-9]/m);
      },
    },
  ],
};

export const WEBSOCKET_WSS: ExampleSpec = {
  name: 'websocket (envoy-wss.yaml)',
  tier: 1,
  upstreams: { 'service-wss': startServiceWss },
  instances: [{ id: 'proxy', file: 'websocket/envoy-wss.yaml', run: 'plane', clusters: { service_wss: [{ upstream: 'service-wss' }] } }],
  expectations: [
    {
      name: '3. wss://P/ (no certificate verification) → [wss] HELO twice',
      run: (env) => heloTwice(env, '/', '[wss] HELO', true),
    },
  ],
};

export const WEBSOCKET_WSS_PASSTHROUGH: ExampleSpec = {
  name: 'websocket (envoy-wss-passthrough.yaml)',
  tier: 1,
  upstreams: { 'service-wss': startServiceWss },
  instances: [
    {
      id: 'proxy',
      file: 'websocket/envoy-wss-passthrough.yaml',
      run: 'plane',
      clusters: { service_wss_passthrough: [{ upstream: 'service-wss' }] },
    },
  ],
  expectations: [
    {
      name: '4. wss://P/ through tcp_proxy (TLS end to end with service-wss) → [wss] HELO twice',
      run: (env) => heloTwice(env, '/', '[wss] HELO', true),
    },
  ],
};

export const EXAMPLES: ExampleSpec[] = [
  FRONT_PROXY,
  DOUBLE_PROXY_EDGE,
  TLS_HTTPS_HTTP,
  TLS_SNI,
  TLS_INSPECTOR,
  ROUTE_MIRROR,
  LOCALITY_LOAD_BALANCING,
  CORS,
  WEBSOCKET_WS,
  WEBSOCKET_WS_ROUTE,
  WEBSOCKET_WSS,
  WEBSOCKET_WSS_PASSTHROUGH,
];
