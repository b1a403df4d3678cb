/**
 * One conformance suite run against every load-balancing policy, through PriorityLoadBalancer as clusters use
 * it: distribution by weight, hashing consistency when hosts change, no hosts, all hosts unhealthy (panic),
 * priorities and failover. Randomness is seeded; hashing policies get a distinct key per request.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { envoy } from '../../src/generated/envoy.js';
import { Cluster } from '../../src/dataplane/upstream/cluster.js';
import { HealthFlag, type Host } from '../../src/dataplane/upstream/host.js';
import { compileLbPolicy } from '../../src/dataplane/upstream/lb/policy.js';
import { type LoadBalancerContext, PriorityLoadBalancer } from '../../src/dataplane/upstream/load-balancer.js';
import { createLogger } from '../../src/util/logger.js';
import { hosts, type HostSpec, keyHash, seeded, setActiveRequests } from './lb-fixtures.js';
import { StatsStore } from '../../src/stats/store.js';

type ClusterConfig = envoy.config.cluster.v3.Cluster;

interface PolicyCase {
  config: ClusterConfig;
  /** RANDOM ignores load_balancing_weight, as Envoy's does. */
  honoursWeights: boolean;
  hashing: boolean;
  /**
   * Hashing policies: the most keys (fraction) that may move when one of 10 hosts goes, in all and between
   * hosts that stayed. Maglev moves little more than the gone host's tenth. Envoy's ring rescales so the
   * lightest host keeps a whole number of points: the nine others gain points (103 → 114 each at the
   * default minimum ring size) and take about another tenth from each other.
   */
  remap?: { moved: number; elsewhere: number };
}

const POLICIES: Record<string, PolicyCase> = {
  ROUND_ROBIN: { config: {}, honoursWeights: true, hashing: false },
  LEAST_REQUEST: { config: { lb_policy: 'LEAST_REQUEST' }, honoursWeights: true, hashing: false },
  RANDOM: { config: { lb_policy: 'RANDOM' }, honoursWeights: false, hashing: false },
  RING_HASH: {
    config: { lb_policy: 'RING_HASH', ring_hash_lb_config: { minimum_ring_size: 16_384 } },
    honoursWeights: true,
    hashing: true,
    remap: { moved: 0.2, elsewhere: 0.1 },
  },
  MAGLEV: { config: { lb_policy: 'MAGLEV' }, honoursWeights: true, hashing: true, remap: { moved: 0.12, elsewhere: 0.02 } },
};

const noHash: LoadBalancerContext = { computeHashKey: () => false };

for (const [name, policy] of Object.entries(POLICIES)) {
  describe(`${name} conformance`, () => {
    const build = (list: readonly Host[], panicThreshold = 50) =>
      new PriorityLoadBalancer(list, compileLbPolicy(policy.config, undefined, seeded(7)), seeded(11), 140, panicThreshold);
    /** Request i: hashing policies see the hash of `key-i`. */
    const context = (i: number): LoadBalancerContext => (policy.hashing ? keyHash(`key-${i}`) : noHash);
    function counts(lb: PriorityLoadBalancer, n: number): Map<number, number> {
      const result = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const host = lb.choose(context(i));
        assert.ok(host, `request ${i} got no host`);
        result.set(host.port, (result.get(host.port) ?? 0) + 1);
      }
      return result;
    }
    function assertShares(actual: Map<number, number>, expected: Record<number, number>, n: number, tolerance: number): void {
      for (const [port, share] of Object.entries(expected)) {
        const got = (actual.get(Number(port)) ?? 0) / n;
        assert.ok(Math.abs(got - share) <= tolerance * share, `port ${port}: ${got.toFixed(3)} instead of ${share} (${JSON.stringify([...actual])})`);
      }
    }

    it('spreads requests by weight', () => {
      const n = 20_000;
      const got = counts(build(hosts({ port: 1, weight: 1 }, { port: 2, weight: 2 }, { port: 3, weight: 3 }, { port: 4, weight: 4 })), n);
      const expected = policy.honoursWeights ? { 1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4 } : { 1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25 };
      assertShares(got, expected, n, 0.15);
    });

    it('spreads requests evenly over equal weights and sends all to a single host', () => {
      const n = 12_000;
      assertShares(counts(build(hosts({ port: 1 }, { port: 2 }, { port: 3 })), n), { 1: 1 / 3, 2: 1 / 3, 3: 1 / 3 }, n, 0.1);
      assert.deepEqual([...counts(build(hosts({ port: 9 })), 100)], [[9, 100]]);
    });

    it('has no host to give when the cluster has none', () => {
      assert.equal(build([]).choose(context(0)), undefined);
    });

    it('balances over all hosts when none is healthy (panic)', () => {
      const n = 3000;
      const got = counts(build(hosts({ port: 1, healthy: false }, { port: 2, healthy: false }, { port: 3, healthy: false })), n);
      assertShares(got, { 1: 1 / 3, 2: 1 / 3, 3: 1 / 3 }, n, 0.25);
    });

    it('avoids unhealthy hosts while enough are healthy, and has none with panic disabled and none healthy', () => {
      const got = counts(build(hosts({ port: 1 }, { port: 2, healthy: false }, { port: 3 }, { port: 4 })), 2000);
      assert.equal(got.get(2), undefined);
      assert.equal(build(hosts({ port: 1, healthy: false }), 0).choose(context(0)), undefined);
    });

    it('fails over between priorities with the overprovisioning factor', () => {
      const p0: HostSpec[] = [{ port: 1 }, { port: 2 }];
      const p1: HostSpec[] = [{ port: 3, priority: 1 }];
      assert.deepEqual([...counts(build(hosts(...p0, ...p1)), 500)], [...counts(build(hosts(...p0)), 500)]);
      const down = counts(build(hosts({ port: 1, healthy: false }, { port: 2, healthy: false }, ...p1)), 500);
      assert.deepEqual([...down], [[3, 500]]);
      // Half of P0 healthy: 1.4 × 50 % = 70 % stays on P0 (all of it on the healthy host), 30 % spills to P1.
      const n = 10_000;
      const spill = counts(build(hosts({ port: 1 }, { port: 2, healthy: false }, ...p1)), n);
      assertShares(spill, { 1: 0.7, 3: 0.3 }, n, 0.1);
      assert.equal(spill.get(2), undefined);
    });

    it('in total panic spreads load over priorities by host count, in integer percents', () => {
      // 1 of 4 healthy (25 % < 50 %) and 0 of 2: every level panics; loads 66 + 1 remainder / 33.
      const n = 10_000;
      const got = counts(
        build(hosts({ port: 1 }, { port: 2, healthy: false }, { port: 3, healthy: false }, { port: 4, healthy: false }, { port: 5, priority: 1, healthy: false }, { port: 6, priority: 1, healthy: false })),
        n,
      );
      assertShares(got, { 1: 0.67 / 4, 2: 0.67 / 4, 5: 0.33 / 2, 6: 0.33 / 2 }, n, 0.15);
    });

    if (!policy.hashing) return;

    it('sends the same key to the same host, and without a hash picks at random', () => {
      const lb = build(hosts({ port: 1 }, { port: 2 }, { port: 3 }));
      for (let i = 0; i < 50; i++) assert.equal(lb.choose(keyHash(`user-${i}`)), lb.choose(keyHash(`user-${i}`)));
      const spread = new Set<number>();
      for (let i = 0; i < 60; i++) spread.add(lb.choose(noHash)!.port);
      assert.equal(spread.size, 3);
    });

    it('remaps few keys when one of N hosts goes, all of the gone host\'s, and all back when it returns', () => {
      const all = hosts(...Array.from({ length: 10 }, (_, i) => ({ port: 100 + i })));
      const before = build(all);
      const without = build(all.filter((h) => h.port !== 105));
      const again = build(all);
      const keys = 10_000;
      let moved = 0;
      let movedElsewhere = 0;
      let lost = 0;
      for (let i = 0; i < keys; i++) {
        const a = before.choose(keyHash(`k${i}`))!;
        const b = without.choose(keyHash(`k${i}`))!;
        assert.equal(again.choose(keyHash(`k${i}`)), a);
        if (a.port === 105) lost++;
        if (a !== b) {
          moved++;
          if (a.port !== 105) movedElsewhere++;
        }
      }
      assert.ok(lost > 0.07 * keys && lost < 0.13 * keys, `${lost} keys on the gone host`);
      assert.ok(moved / keys < policy.remap!.moved, `${moved} of ${keys} keys moved`);
      assert.ok(movedElsewhere / keys < policy.remap!.elsewhere, `${movedElsewhere} keys moved between hosts that stayed`);
    });

    it('picks the priority from the hash, so a key keeps its priority', () => {
      const lb = build(hosts({ port: 1 }, { port: 2, healthy: false }, { port: 3, priority: 1 }));
      for (let i = 0; i < 100; i++) assert.equal(lb.choose(keyHash(`p${i}`)), lb.choose(keyHash(`p${i}`)));
    });
  });
}

describe('LEAST_REQUEST specifics', () => {
  const lb = (list: Host[], config: ClusterConfig['least_request_lb_config'] = {}) =>
    new PriorityLoadBalancer(list, compileLbPolicy({ lb_policy: 'LEAST_REQUEST', least_request_lb_config: config }, undefined, seeded(3)), seeded(4));

  it('with equal weights prefers the host with fewer active requests (P2C)', () => {
    const list = hosts({ port: 1 }, { port: 2 });
    setActiveRequests(list[0]!, 5);
    const balancer = lb(list);
    let idle = 0;
    for (let i = 0; i < 4000; i++) if (balancer.choose()!.port === 2) idle++;
    // Both samples land on the busy host a quarter of the time.
    assert.ok(Math.abs(idle / 4000 - 0.75) < 0.04, `${idle}`);
    const five = lb(list, { choice_count: 5 });
    let idle5 = 0;
    for (let i = 0; i < 4000; i++) if (five.choose()!.port === 2) idle5++;
    assert.ok(idle5 / 4000 > 0.95, `${idle5}`);
  });

  it('with unequal weights divides each weight by (active + 1)^active_request_bias', () => {
    const list = hosts({ port: 1, weight: 2 }, { port: 2, weight: 1 });
    setActiveRequests(list[0]!, 3); // 2 / 4 = 0.5 against 1 / 1
    const share = (balancer: PriorityLoadBalancer) => {
      let first = 0;
      for (let i = 0; i < 3000; i++) if (balancer.choose()!.port === 1) first++;
      return first / 3000;
    };
    assert.ok(Math.abs(share(lb(list)) - 1 / 3) < 0.02);
    // Bias 0: plain weights, 2:1.
    assert.ok(Math.abs(share(lb(list, { active_request_bias: { default_value: 0, runtime_key: 'k' } })) - 2 / 3) < 0.02);
    // Bias 0.5: 2 / sqrt(4) = 1 against 1.
    assert.ok(Math.abs(share(lb(list, { active_request_bias: { default_value: 0.5, runtime_key: 'k' } })) - 1 / 2) < 0.02);
  });
});

describe('cluster load balancing rebuild', () => {
  it('follows host health flags set through the cluster', async () => {
    const cluster = new Cluster(
      {
        name: 'c',
        lb_policy: 'RING_HASH',
        load_assignment: {
          endpoints: [{ lb_endpoints: [1, 2, 3].map((p) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: p } } } })) }],
        },
      },
      createLogger('error'),
      new StatsStore(),
    );
    await cluster.initialize();
    const key = keyHash('sticky');
    const first = cluster.chooseHost(key)!;
    cluster.setHostHealthFlag(first, HealthFlag.FAILED_ACTIVE_HC, true);
    const second = cluster.chooseHost(key)!;
    assert.notEqual(second, first);
    cluster.setHostHealthFlag(first, HealthFlag.FAILED_ACTIVE_HC, false);
    assert.equal(cluster.chooseHost(key), first);
    await cluster.close();
  });
});

describe('load balancer structure stats', () => {
  for (const [policy, expected] of [
    ['RING_HASH', { 'cluster.c.ring_hash_lb.size': 1026, 'cluster.c.ring_hash_lb.min_hashes_per_host': 342, 'cluster.c.ring_hash_lb.max_hashes_per_host': 342 }],
    ['MAGLEV', { 'cluster.c.maglev_lb.min_entries_per_host': 21845, 'cluster.c.maglev_lb.max_entries_per_host': 21846 }],
  ] as const) {
    it(`${policy} reports the size of what it built`, async () => {
      const stats = new StatsStore();
      const cluster = new Cluster(
        {
          name: 'c',
          lb_policy: policy,
          load_assignment: {
            endpoints: [{ lb_endpoints: [1, 2, 3].map((p) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: p } } } })) }],
          },
        },
        createLogger('error'),
        stats,
      );
      await cluster.initialize();
      const gauges = new Map(stats.snapshot().gauges.map(([name, value]) => [name, value]));
      for (const [name, value] of Object.entries(expected)) assert.equal(gauges.get(name), value, name);
      await cluster.close();
    });
  }
});
