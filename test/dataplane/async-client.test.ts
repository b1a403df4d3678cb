/**
 * The async HTTP client and the gRPC service client the filters that consult a service use, against real
 * servers: a node:http upstream, a node:http2 one, and @grpc/grpc-js servers for both gRPC transports.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ConfigError } from '../../src/config/errors.js';
import { AsyncHttpClient, type AsyncHttpResponse } from '../../src/dataplane/upstream/async-client.js';
import { ClusterManager } from '../../src/dataplane/upstream/cluster-manager.js';
import { decodeMessage, encodeMessage, envoyMethod } from '../../src/grpc/envoy-protos.js';
import { compileGrpcService } from '../../src/grpc/grpc-service-client.js';
import { StatsStore } from '../../src/stats/store.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/ports.js';
import { startGrpcServer } from '../support/grpc.js';

const H2_OPTIONS = {
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      type_url: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      value: { explicit_http_config: { http2_protocol_options: {} } },
    },
  },
};

function staticCluster(name: string, port: number, extra: object = {}): any {
  return {
    name,
    connect_timeout: 1000,
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
    ...extra,
  };
}

const CHECK = envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');

function counter(stats: StatsStore, name: string): number {
  return stats.snapshot().counters.find(([n]) => n === name)?.[1] ?? 0;
}

describe('async HTTP client', () => {
  let server: http.Server;
  let clusters: ClusterManager;
  let stats: StatsStore;
  let client: AsyncHttpClient;

  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/hang') return;
        if (req.url === '/big') {
          res.end(Buffer.alloc(4096, 'x'));
          return;
        }
        res.setHeader('x-seen-host', req.headers.host ?? '');
        res.setHeader('x-seen-custom', String(req.headers['x-custom'] ?? ''));
        res.statusCode = req.url === '/denied' ? 403 : 200;
        res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const errors: ConfigError[] = [];
    stats = new StatsStore();
    clusters = new ClusterManager(
      [staticCluster('svc', (server.address() as AddressInfo).port), staticCluster('down', await freePort())],
      errors,
      createLogger('error'),
      stats,
    );
    assert.deepEqual(errors, []);
    await clusters.initialize();
    client = new AsyncHttpClient(clusters);
  });

  after(async () => {
    await clusters.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends a request with its headers and body and collects the response', async () => {
    const response = await client.fetch('svc', {
      method: 'POST',
      path: '/check?x=1',
      authority: 'auth.local',
      headers: { 'X-Custom': 'yes' },
      body: Buffer.from('payload'),
      timeoutMs: 2000,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers['x-seen-host'], 'auth.local');
    assert.equal(response.headers['x-seen-custom'], 'yes');
    assert.equal(response.body.toString(), 'POST /check?x=1 payload');
    assert.equal(counter(stats, 'cluster.svc.upstream_rq_200'), 1);
  });

  it('hands a non-2xx response over as a response', async () => {
    const response = await client.fetch('svc', { method: 'GET', path: '/denied', authority: 'a', timeoutMs: 2000 });
    assert.equal(response.status, 403);
  });

  it('reports an unknown cluster, a refused connection, a timeout and a response over its limit', async () => {
    const codeOf = (promise: Promise<AsyncHttpResponse>) => promise.then(() => 'ok', (err: Error & { code: string }) => err.code);
    assert.equal(await codeOf(client.fetch('nope', { method: 'GET', path: '/', authority: 'a', timeoutMs: 1000 })), 'no_cluster');
    assert.equal(await codeOf(client.fetch('down', { method: 'GET', path: '/', authority: 'a', timeoutMs: 1000 })), 'connect_failure');
    assert.equal(await codeOf(client.fetch('svc', { method: 'GET', path: '/hang', authority: 'a', timeoutMs: 100 })), 'timeout');
    assert.equal(counter(stats, 'cluster.svc.upstream_rq_timeout'), 1);
    assert.equal(await codeOf(client.fetch('svc', { method: 'GET', path: '/big', authority: 'a', timeoutMs: 1000, maxResponseBytes: 1000 })), 'response_too_large');
  });

  it('calls neither callback once cancelled, and releases the request', async () => {
    let called = false;
    const handle = client.send(
      'svc',
      { method: 'GET', path: '/hang', authority: 'a', timeoutMs: 5000 },
      { onSuccess: () => (called = true), onFailure: () => (called = true) },
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    handle.cancel();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(called, false);
    const active = stats.snapshot().gauges.find(([n]) => n === 'cluster.svc.upstream_rq_active')?.[1];
    assert.equal(active, 0);
  });

  it('speaks HTTP/2 to an HTTP/2 cluster', async () => {
    const h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'x-authority': String(headers[':authority']) });
      stream.end('over h2');
    });
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    const errors: ConfigError[] = [];
    const h2Clusters = new ClusterManager([staticCluster('h2', (h2.address() as AddressInfo).port, H2_OPTIONS)], errors, createLogger('error'), new StatsStore());
    assert.deepEqual(errors, []);
    await h2Clusters.initialize();
    const response = await new AsyncHttpClient(h2Clusters).fetch('h2', { method: 'GET', path: '/', authority: 'h2.local', timeoutMs: 2000 });
    assert.equal(response.status, 200);
    assert.equal(response.headers['x-authority'], 'h2.local');
    assert.equal(response.body.toString(), 'over h2');
    await h2Clusters.close();
    await new Promise((resolve) => h2.close(resolve));
  });
});

describe('gRPC service client', () => {
  let grpcServer: grpc.Server;
  let port: number;

  before(async () => {
    ({ server: grpcServer, port } = await startGrpcServer({
      Check: {
        path: CHECK.path,
        handler: (call, callback) => {
          const request = decodeMessage<any>(CHECK.requestType, call.request);
          const path: string = request.attributes?.request?.http?.path ?? '';
          if (path === '/hang') return;
          if (path === '/fail') {
            callback({ code: grpc.status.PERMISSION_DENIED, details: 'no way' });
            return;
          }
          const seen = call.metadata.get('x-meta')[0] ?? '';
          callback(null, encodeMessage(CHECK.responseType, { status: { code: 0, message: `${path} ${seen}` } }));
        },
      },
    }));
  });

  after(() => grpcServer.forceShutdown());

  const checkRequest = (path: string) => ({ attributes: { request: { http: { method: 'GET', path } } } });

  function call(serviceConfig: any, clusters: ClusterManager, path: string, timeoutMs = 2000): Promise<{ ok: boolean; code?: number; message: string }> {
    const errors: ConfigError[] = [];
    const service = compileGrpcService(serviceConfig, clusters, 'grpc_service', errors);
    assert.deepEqual(errors, []);
    return new Promise((resolve) =>
      service!.unary(CHECK, checkRequest(path), timeoutMs, {
        onSuccess: (response) => resolve({ ok: true, message: response.status.message }),
        onFailure: (code, message) => resolve({ ok: false, code, message }),
      }),
    ).finally(() => service!.close()) as Promise<{ ok: boolean; code?: number; message: string }>;
  }

  for (const transport of ['envoy_grpc', 'google_grpc'] as const) {
    it(`${transport}: a call, its metadata, a status, a deadline`, async () => {
      const stats = new StatsStore();
      const errors: ConfigError[] = [];
      const clusters = new ClusterManager([staticCluster('authz', port, H2_OPTIONS)], errors, createLogger('error'), stats);
      await clusters.initialize();
      const config =
        transport === 'envoy_grpc'
          ? { envoy_grpc: { cluster_name: 'authz' }, initial_metadata: [{ key: 'x-meta', value: 'm1' }] }
          : { google_grpc: { target_uri: `127.0.0.1:${port}`, stat_prefix: 'authz' }, initial_metadata: [{ key: 'x-meta', value: 'm1' }] };
      assert.deepEqual(await call(config, clusters, '/ok'), { ok: true, message: '/ok m1' });
      assert.deepEqual(await call(config, clusters, '/fail'), { ok: false, code: grpc.status.PERMISSION_DENIED, message: 'no way' });
      const hung = await call(config, clusters, '/hang', 150);
      assert.equal(hung.code, grpc.status.DEADLINE_EXCEEDED);
      if (transport === 'envoy_grpc') assert.equal(counter(stats, 'cluster.authz.upstream_rq_200'), 2);
      await clusters.close();
    });
  }

  it('envoy_grpc to a cluster that is down is UNAVAILABLE', async () => {
    const errors: ConfigError[] = [];
    const clusters = new ClusterManager([staticCluster('gone', await freePort(), H2_OPTIONS)], errors, createLogger('error'), new StatsStore());
    await clusters.initialize();
    const result = await call({ envoy_grpc: { cluster_name: 'gone' } }, clusters, '/ok');
    assert.equal(result.code, grpc.status.UNAVAILABLE);
    await clusters.close();
  });

  it('refuses an unknown cluster and an HTTP/1.1 one, with their paths', async () => {
    const errors: ConfigError[] = [];
    const clusters = new ClusterManager([staticCluster('h1', port)], [], createLogger('error'), new StatsStore());
    assert.equal(compileGrpcService({ envoy_grpc: { cluster_name: 'nope' } }, clusters, 'x.grpc_service', errors), undefined);
    assert.equal(compileGrpcService({ envoy_grpc: { cluster_name: 'h1' } }, clusters, 'y.grpc_service', errors), undefined);
    assert.equal(compileGrpcService({}, clusters, 'z.grpc_service', errors), undefined);
    assert.deepEqual(
      errors.map((e) => [e.code, e.path]),
      [
        ['unknown_cluster', 'x.grpc_service.envoy_grpc.cluster_name'],
        ['invalid_value', 'y.grpc_service.envoy_grpc.cluster_name'],
        ['missing_required', 'z.grpc_service'],
      ],
    );
    await clusters.close();
  });
});
