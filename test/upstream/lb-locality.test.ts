/**
 * `locality_weighted_lb_config` through PriorityLoadBalancer, for every policy that honours it: localities share
 * a level by effective weight (weight × healthy share × overprovisioning, capped), then the policy picks within
 * the locality. Randomness is seeded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { envoy } from '../../src/generated/envoy.js';
import { effectiveLocalityWeight } from '../../src/dataplane/upstream/lb/locality.js';
import { compileLbPolicy } from '../../src/dataplane/upstream/lb/policy.js';
import { type LoadBalancerContext, PriorityLoadBalancer } from '../../src/dataplane/upstream/load-balancer.js';
import type { Host } from '../../src/dataplane/upstream/host.js';
import { hosts, keyHash, seeded } from './lb-fixtures.js';

type ClusterConfig = envoy.config.cluster.v3.Cluster;

const noHash: LoadBalancerContext = { computeHashKey: () => false };

function build(config: ClusterConfig, list: readonly Host[], localityWeighted = true): PriorityLoadBalancer {
  return new PriorityLoadBalancer(list, compileLbPolicy(config, undefined, seeded(5)), seeded(9), 140, 50, { localityWeighted });
}

/** Picks per zone over `n` requests. */
function byZone(lb: PriorityLoadBalancer, n: number): Map<string, number> {
  const result = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const zone = lb.choose(noHash)!.locality.zone;
    result.set(zone, (result.get(zone) ?? 0) + 1);
  }
  return result;
}

describe('effective locality weight', () => {
  it('scales the weight by healthy share × overprovisioning factor, capped at the weight', () => {
    assert.equal(effectiveLocalityWeight(2, 4, 4, 140), 2);
    assert.equal(effectiveLocalityWeight(2, 3, 4, 140), 2);
    assert.ok(Math.abs(effectiveLocalityWeight(1, 1, 2, 140) - 0.7) < 1e-12);
    assert.equal(effectiveLocalityWeight(5, 0, 3, 140), 0);
    assert.equal(effectiveLocalityWeight(5, 0, 0, 140), 0);
  });
});

for (const [name, config] of Object.entries<ClusterConfig>({
  ROUND_ROBIN: {},
  LEAST_REQUEST: { lb_policy: 'LEAST_REQUEST' },
  RANDOM: { lb_policy: 'RANDOM' },
})) {
  describe(`${name} with locality weights`, () => {
    it('splits a level between localities by their weights', () => {
      const lb = build(config, hosts({ port: 1, zone: 'a', localityWeight: 1 }, { port: 2, zone: 'b', localityWeight: 3 }, { port: 3, zone: 'b', localityWeight: 3 }));
      const got = byZone(lb, 4000);
      // The scheduler is deterministic: exactly 1 : 3.
      assert.equal(got.get('a'), 1000);
      assert.equal(got.get('b'), 3000);
    });

    it('lowers a partly healthy locality by overprovisioning × healthy share, and skips an unhealthy one', () => {
      const lb = build(
        config,
        hosts(
          { port: 1, zone: 'full', localityWeight: 1 },
          { port: 2, zone: 'half', localityWeight: 1 },
          { port: 3, zone: 'half', localityWeight: 1, healthy: false },
          { port: 4, zone: 'down', localityWeight: 1, healthy: false },
        ),
      );
      const got = byZone(lb, 1700);
      assert.equal(got.get('full'), 1000);
      assert.equal(got.get('half'), 700);
      assert.equal(got.get('down'), undefined);
    });

    it('sends nothing to a locality without a weight', () => {
      const lb = build(config, hosts({ port: 1, zone: 'weighted', localityWeight: 1 }, { port: 2, zone: 'unweighted' }));
      assert.deepEqual([...byZone(lb, 50)], [['weighted', 50]]);
    });

    it('picks among the healthy hosts of the chosen locality', () => {
      const lb = build(config, hosts({ port: 1, zone: 'a', localityWeight: 1 }, { port: 2, zone: 'a', localityWeight: 1, healthy: false }, { port: 3, zone: 'a', localityWeight: 1 }));
      const ports = new Set<number>();
      for (let i = 0; i < 100; i++) ports.add(lb.choose(noHash)!.port);
      assert.deepEqual([...ports].sort(), [1, 3]);
    });
  });
}

describe('locality weights and hashing policies', () => {
  it('RING_HASH and MAGLEV ignore them: the same host for the same key as without', () => {
    const list = hosts({ port: 1, zone: 'a', localityWeight: 1 }, { port: 2, zone: 'b', localityWeight: 100 }, { port: 3, zone: 'b', localityWeight: 100 });
    for (const config of [{ lb_policy: 'RING_HASH' }, { lb_policy: 'MAGLEV' }] as ClusterConfig[]) {
      const weighted = build(config, list);
      const plain = build(config, list, false);
      for (let i = 0; i < 200; i++) assert.equal(weighted.choose(keyHash(`k${i}`)), plain.choose(keyHash(`k${i}`)));
    }
  });
});
