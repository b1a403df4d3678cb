/**
 * `envoy.filters.http.local_ratelimit` under `portico run --concurrency 2`: the workers lease tokens from one
 * bucket in the primary, so that connections spread over both workers get max_tokens in total, not twice it.
 * The bucket is a descriptor's on `source_cluster`, which `--service-cluster` names.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { httpListener } from '../support/portico.js';
import { freePort } from '../support/ports.js';
import { BIN } from '../support/start-process.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const ALL = { default_value: { numerator: 100, denominator: 'HUNDRED' } };
const MAX_TOKENS = 10;

describe('local rate limit across worker processes', () => {
  let upstream: RecordingUpstream;
  let port: number;
  let stop: () => Promise<number | null>;

  before(async () => {
    upstream = await startRecordingUpstream();
    port = await freePort();
    const listener = httpListener(
      {
        // Which worker answered, so that the test knows both did.
        response_headers_to_add: [{ header: { key: 'x-worker', value: '%ENVIRONMENT(PORTICO_WORKER_INDEX)%' } }],
        virtual_hosts: [
          {
            name: 'app',
            domains: ['*'],
            routes: [{ match: { prefix: '/' }, route: { cluster: 'backend', rate_limits: [{ actions: [{ source_cluster: {} }] }] } }],
          },
        ],
      },
      {},
      [
        {
          name: 'envoy.filters.http.local_ratelimit',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
            stat_prefix: 'shared',
            descriptors: [{ entries: [{ key: 'source_cluster', value: 'edge' }], token_bucket: { max_tokens: MAX_TOKENS, fill_interval: '3600s' } }],
            filter_enabled: ALL,
            filter_enforced: ALL,
          },
        },
      ],
    );
    (listener.address as { socket_address: { port_value: number } }).socket_address.port_value = port;
    const cluster = {
      name: 'backend',
      connect_timeout: '1s',
      load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstream.port } } } }] }] },
    };
    const file = join(mkdtempSync(join(tmpdir(), 'portico-rl-')), 'bootstrap.json');
    writeFileSync(file, JSON.stringify({ node: { cluster: 'not-this-one' }, static_resources: { listeners: [listener], clusters: [cluster] } }));
    const args = [BIN, 'run', '-c', file, '-l', 'info', '--concurrency', '2', '--service-cluster', 'edge'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    stop = () => {
      child.kill('SIGTERM');
      return exited;
    };
    let output = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        output += d;
        if (output.includes('portico is live')) resolve();
      });
      void exited.then((code) => reject(new Error(`portico run exited with ${code}:\n${output}`)));
    });
  });

  after(async () => {
    if (stop) assert.equal(await stop(), 0);
    await upstream?.close();
  });

  it('admits max_tokens in total over connections served by both workers', async () => {
    const responses = [];
    // Five at a time, each on a connection of its own: the workers take connections in turn.
    for (let i = 0; i < 6; i++) {
      responses.push(...(await Promise.all(Array.from({ length: 5 }, () => httpRequest(`http://127.0.0.1:${port}/`)))));
    }
    const workers = new Set(responses.map((r) => r.headers['x-worker']));
    assert.deepEqual([...workers].sort(), ['0', '1']);
    assert.equal(responses.filter((r) => r.status === 200).length, MAX_TOKENS);
    assert.equal(responses.filter((r) => r.status === 429).length, 30 - MAX_TOKENS);
    assert.ok(responses.filter((r) => r.status === 429).every((r) => r.body === 'local_rate_limited'));
  });
});
