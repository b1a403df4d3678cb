/**
 * Load-balancing policies end to end through real sockets: LEAST_REQUEST against in-flight requests,
 * RING_HASH and MAGLEV with header, cookie (generated with Set-Cookie), source IP and query parameter hash
 * policies, and the configuration that is refused.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { checkYaml, simpleBootstrap, startPortico, type RunningPortico } from '../support/portico.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/upstreams.js';

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

interface Named extends RecordingUpstream {
  name: string;
  /** Releases every held request. */
  release(): void;
}

/** An upstream answering its name; with `hold`, requests to /hold wait until release(). */
async function named(name: string, hold = false): Promise<Named> {
  const held: (() => void)[] = [];
  const upstream = await startRecordingUpstream((req, res) => {
    const answer = () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
      res.end(name);
    };
    if (hold && req.url === '/hold') held.push(answer);
    else answer();
  });
  const result = Object.assign(upstream, { name, release: () => held.splice(0).forEach((f) => f()) });
  started.push(result);
  return result;
}

function cluster(lbPolicy: string, ports: number[], extra = ''): string {
  const endpoints = ports.map((p) => `      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${p} } } }`).join('\n');
  return `- name: app
  connect_timeout: 1s
  lb_policy: ${lbPolicy}
${extra}
  load_assignment:
    cluster_name: app
    endpoints:
    - lb_endpoints:${endpoints ? `\n${endpoints}` : ' []'}
`;
}

async function gateway(clusters: string, hashPolicy = '', hcmExtra = ''): Promise<RunningPortico> {
  const routes = `- match: { prefix: "/" }
  route:
    cluster: app
${hashPolicy ? `    hash_policy: ${hashPolicy}` : ''}`;
  const gw = await startPortico(simpleBootstrap({ routes, clusters, hcmExtra }));
  started.push(gw);
  return gw;
}

/** Sends requests over one keep-alive connection; returns status, body and set-cookie of each. */
async function send(url: string, requests: { path?: string; headers?: Record<string, string> }[]) {
  const dispatcher = new Agent({ connections: 1 });
  try {
    const out: { status: number; body: string; setCookie: string | string[] | undefined }[] = [];
    for (const r of requests) {
      const res = await request(url + (r.path ?? '/'), { dispatcher, headers: r.headers ?? {} });
      out.push({ status: res.statusCode, body: await res.body.text(), setCookie: res.headers['set-cookie'] });
    }
    return out;
  } finally {
    await dispatcher.destroy();
  }
}

/** For each key, the upstream bodies of two requests carrying it. */
async function stickiness(url: string, keys: string[], make: (key: string) => { path?: string; headers?: Record<string, string> }) {
  const twice = keys.flatMap((k) => [make(k), make(k)]);
  const bodies = (await send(url, twice)).map((r) => r.body);
  return keys.map((_, i) => [bodies[2 * i]!, bodies[2 * i + 1]!] as const);
}

function assertSticky(pairs: (readonly [string, string])[]): void {
  for (const [a, b] of pairs) assert.equal(a, b);
  assert.ok(new Set(pairs.map(([a]) => a)).size > 1, `every key went to ${pairs[0]?.[0]}`);
}

const keys = Array.from({ length: 24 }, (_, i) => `key-${i}`);

describe('LEAST_REQUEST', () => {
  it('prefers the host with fewer requests in flight', async () => {
    const [busy, idle] = await Promise.all([named('busy', true), named('idle')]);
    const gw = await gateway(cluster('LEAST_REQUEST', [busy.port, idle.port], '  least_request_lb_config: { choice_count: 10 }'));
    // Send /hold until one request is held in flight on `busy` (`idle` answers the others at once).
    const inFlight: Promise<unknown>[] = [];
    while (busy.requests.length === 0) {
      inFlight.push(send(gw.url(), [{ path: '/hold' }]));
      await new Promise((r) => setTimeout(r, 20));
    }
    const bodies = (await send(gw.url(), Array.from({ length: 30 }, () => ({})))).map((r) => r.body);
    // Ten samples all on the busy host happen once in 1024 picks.
    assert.ok(bodies.filter((b) => b === 'idle').length >= 28, bodies.join(','));
    busy.release();
    await Promise.all(inFlight);
  });
});

describe('RING_HASH', () => {
  it('sends the same header value to the same upstream', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => named(n)));
    const gw = await gateway(cluster('RING_HASH', ups.map((u) => u.port)), '[{ header: { header_name: x-user } }]');
    assertSticky(await stickiness(gw.url(), keys, (k) => ({ headers: { 'x-user': k } })));
  });

  it('generates a cookie with the ttl and path when it is absent, then follows it', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => named(n)));
    const gw = await gateway(cluster('RING_HASH', ups.map((u) => u.port)), '[{ cookie: { name: sticky, ttl: 3600s, path: /app } }]');
    const [first] = await send(gw.url(), [{}]);
    assert.equal(first!.status, 200);
    const setCookie = String(first!.setCookie);
    assert.match(setCookie, /^sticky="[0-9a-f]{16}"; Max-Age=3600; Path=\/app; HttpOnly$/);
    const cookie = setCookie.split(';')[0]!;
    const again = await send(gw.url(), Array.from({ length: 10 }, () => ({ headers: { cookie } })));
    assert.deepEqual(new Set(again.map((r) => r.body)).size, 1);
    assert.ok(again.every((r) => r.setCookie === undefined), 'no new cookie once the client has one');
    // Without ttl nothing is generated: no hash, a random upstream, no Set-Cookie.
    const plain = await gateway(cluster('RING_HASH', ups.map((u) => u.port)), '[{ cookie: { name: sticky } }]');
    assert.equal((await send(plain.url(), [{}]))[0]!.setCookie, undefined);
  });

  it('hashes the source IP (taken from x-forwarded-for without use_remote_address)', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => named(n)));
    const gw = await gateway(cluster('RING_HASH', ups.map((u) => u.port)), '[{ connection_properties: { source_ip: true } }]');
    assertSticky(await stickiness(gw.url(), keys.map((_, i) => `10.1.0.${i + 1}`), (ip) => ({ headers: { 'x-forwarded-for': ip } })));
  });

  it('hashes a query parameter', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => named(n)));
    const gw = await gateway(cluster('RING_HASH', ups.map((u) => u.port)), '[{ query_parameter: { name: user } }]');
    assertSticky(await stickiness(gw.url(), keys, (k) => ({ path: `/items?page=2&user=${k}` })));
  });

  it('answers 503 no healthy upstream (UH) without hosts', async () => {
    const gw = await gateway(cluster('RING_HASH', []), '[{ header: { header_name: x-user } }]');
    const [res] = await send(gw.url(), [{ headers: { 'x-user': 'u' } }]);
    assert.equal(res!.status, 503);
    assert.equal(res!.body, 'no healthy upstream');
  });
});

describe('MAGLEV', () => {
  it('maps keys the same way in every gateway and keeps most of them when a host goes', async () => {
    const ups = await Promise.all(['a', 'b', 'c', 'd'].map((n) => named(n)));
    const policy = '[{ header: { header_name: x-user } }]';
    const config = cluster('MAGLEV', ups.map((u) => u.port), '  maglev_lb_config: { table_size: 1021 }');
    const [one, two, three] = await Promise.all([
      gateway(config, policy),
      gateway(cluster('MAGLEV', [...ups].reverse().map((u) => u.port), '  maglev_lb_config: { table_size: 1021 }'), policy),
      gateway(cluster('MAGLEV', ups.slice(0, 3).map((u) => u.port), '  maglev_lb_config: { table_size: 1021 }'), policy),
    ]);
    const make = (k: string) => ({ headers: { 'x-user': k } });
    const first = await stickiness(one.url(), keys, make);
    assertSticky(first);
    assert.deepEqual((await stickiness(two.url(), keys, make)).map(([a]) => a), first.map(([a]) => a));
    const without = (await stickiness(three.url(), keys, make)).map(([a]) => a);
    const kept = first.filter(([a], i) => a !== 'd' && without[i] === a).length;
    const onRemaining = first.filter(([a]) => a !== 'd').length;
    assert.ok(kept >= onRemaining - 2, `${kept} of ${onRemaining} keys stayed`);
  });
});

describe('load balancing configuration', () => {
  const bootstrap = (clusterExtra: string, hashPolicy = '') =>
    simpleBootstrap({
      routes: `- match: { prefix: "/" }\n  route:\n    cluster: app\n${hashPolicy ? `    hash_policy: ${hashPolicy}` : ''}`,
      clusters: cluster('ROUND_ROBIN', [8080]).replace('  lb_policy: ROUND_ROBIN\n', clusterExtra),
    });
  const errors = (yaml: string) => checkYaml(yaml).map((e) => `${e.code} ${e.path}: ${e.message}`);

  it('accepts every supported policy and its settings', () => {
    for (const extra of [
      '  lb_policy: LEAST_REQUEST\n  least_request_lb_config: { choice_count: 3, active_request_bias: { default_value: 0.5, runtime_key: lb.bias } }\n',
      '  lb_policy: RANDOM\n',
      '  lb_policy: RING_HASH\n  ring_hash_lb_config: { minimum_ring_size: 64, maximum_ring_size: 4096, hash_function: MURMUR_HASH_2 }\n',
      '  lb_policy: MAGLEV\n  maglev_lb_config: { table_size: 5 }\n',
    ]) {
      assert.deepEqual(errors(bootstrap(extra, '[{ header: { header_name: x-user }, terminal: true }, { cookie: { name: c, ttl: 10s, attributes: [{ name: Secure }] } }]')), []);
    }
  });

  it('refuses unsupported policies, invalid sizes and filter_state hashing by name', () => {
    const path = 'static_resources.clusters[0]';
    assert.deepEqual(errors(bootstrap('  lb_policy: CLUSTER_PROVIDED\n')), [`unsupported_field ${path}.lb_policy: lb_policy CLUSTER_PROVIDED is not supported`]);
    assert.deepEqual(errors(bootstrap('  lb_policy: MAGLEV\n  maglev_lb_config: { table_size: 8 }\n')), [
      `invalid_value ${path}.maglev_lb_config.table_size: the table size of maglev must be a prime number no larger than 5000011, not 8`,
    ]);
    assert.deepEqual(errors(bootstrap('  lb_policy: RING_HASH\n  ring_hash_lb_config: { minimum_ring_size: 20, maximum_ring_size: 10 }\n')), [
      `invalid_value ${path}.ring_hash_lb_config: ring hash: minimum_ring_size (20) > maximum_ring_size (10)`,
    ]);
    assert.deepEqual(errors(bootstrap('  lb_policy: LEAST_REQUEST\n  least_request_lb_config: { slow_start_config: { slow_start_window: 10s } }\n')).map((e) => e.split(':')[0]), [
      `unsupported_field ${path}.least_request_lb_config.slow_start_config`,
    ]);
    const filterState = errors(bootstrap('', '[{ filter_state: { key: k } }]'));
    assert.equal(filterState.length, 1);
    assert.match(filterState[0]!, /^unsupported_field .*hash_policy\[0\]\.filter_state: field filter_state of envoy\.config\.route\.v3\.RouteAction\.HashPolicy is not supported$/);
  });
});
