/**
 * Traffic splitting under load: a canary rollout that shifts `weighted_clusters` weights step by step, then a
 * blue/green switch of the route's cluster, while clients keep sending requests on keep-alive connections. No
 * request may fail, and each step's split must show in the answers.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { DataPlane } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/ports.js';
import { simpleBootstrap, staticCluster } from '../support/portico.js';
import { httpRequest } from '../support/upstreams.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

async function namedUpstream(name: string): Promise<{ port: number; server: Server }> {
  const server = createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server };
}

describe('traffic splitting under load', () => {
  let blue: Awaited<ReturnType<typeof namedUpstream>>;
  let green: Awaited<ReturnType<typeof namedUpstream>>;
  let port: number;
  let plane: DataPlane;

  /** The route sends `greenWeight` % to green (weighted_clusters), or everything to one cluster. */
  const config = (route: { greenWeight: number } | { cluster: 'blue' | 'green' }) => {
    const action =
      'cluster' in route
        ? `{ cluster: ${route.cluster} }`
        : `{ weighted_clusters: { clusters: [{ name: blue, weight: ${100 - route.greenWeight} }, { name: green, weight: ${route.greenWeight} }] } }`;
    const errors: ConfigError[] = [];
    const yaml = simpleBootstrap({
      listenerPort: port,
      routes: `- match: { prefix: "/" }\n  route: ${action}`,
      clusters: staticCluster('blue', blue.port) + staticCluster('green', green.port),
    });
    const checked = checkBootstrap(parseDocument(yaml, 'test.yaml', errors));
    assert.deepEqual([...errors, ...checked.errors], []);
    return checked.bootstrap;
  };

  before(async () => {
    [blue, green] = await Promise.all([namedUpstream('blue'), namedUpstream('green')]);
    port = await freePort();
    plane = await DataPlane.start(config({ cluster: 'blue' }), createLogger('off'), EXTENSIONS);
  });
  after(async () => {
    await plane.close(0);
    blue.server.close();
    green.server.close();
  });

  it('shifts a canary 0 → 10 → 50 → 100 % and then switches the route blue → green without failing a request', async () => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
    const failures: string[] = [];
    /** Bumped by each step once its configuration is in place; answers count for the step they were sent in. */
    let generation = 0;
    let answers = new Map<string, number>();
    let running = true;
    const loop = async (): Promise<void> => {
      while (running) {
        const sentIn = generation;
        try {
          const res = await pool.request({ path: '/', method: 'GET' });
          const body = await res.body.text();
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${body}`);
          else if (sentIn === generation) answers.set(body, (answers.get(body) ?? 0) + 1);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    /** Applies a configuration, lets at least `count` requests through it, and returns the green share. */
    const step = async (next: Parameters<typeof config>[0], count: number): Promise<number> => {
      await plane.update(config(next), 2000);
      generation++;
      answers = new Map();
      const total = () => (answers.get('blue') ?? 0) + (answers.get('green') ?? 0);
      const deadline = Date.now() + 30_000;
      while (total() < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(total() >= count, `only ${total()} answers in 30 s`);
      return (answers.get('green') ?? 0) / total();
    };
    const loops = Array.from({ length: 4 }, loop);
    try {
      // A keep-alive connection idle at the moment of a change may carry one more request on the old
      // configuration, hence the 2 % allowance at the ends.
      assert.ok((await step({ greenWeight: 0 }, 100)) <= 0.02);
      // 10 % of at least 400: expected 40 (σ ≈ 6); the bounds are very generous.
      const canary = await step({ greenWeight: 10 }, 400);
      assert.ok(canary > 0.03 && canary < 0.2, `green share ${canary} at weight 10`);
      const half = await step({ greenWeight: 50 }, 400);
      assert.ok(half > 0.35 && half < 0.65, `green share ${half} at weight 50`);
      assert.ok((await step({ greenWeight: 100 }, 100)) >= 0.98);
      assert.ok((await step({ cluster: 'blue' }, 100)) <= 0.02);
      assert.ok((await step({ cluster: 'green' }, 100)) >= 0.98);
    } finally {
      running = false;
      await Promise.all(loops);
      await pool.close();
    }
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/`)).body, 'green');
    assert.deepEqual(failures, []);
  });
});
