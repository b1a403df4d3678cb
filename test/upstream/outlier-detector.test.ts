/**
 * The outlier detector on its own: detection, enforcement, ejection time and its backoff, max_ejection_percent,
 * success rate and failure percentage. The clock and the randomness are the test's; no sockets, no timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { envoy } from '../../src/generated/envoy.js';
import {
  LocalOriginFailure,
  OutlierDetector,
  successRateEjectionThreshold,
} from '../../src/dataplane/upstream/health/outlier-detector.js';
import { HealthFlag, type Host } from '../../src/dataplane/upstream/host.js';
import { OUTLIER_DETECTION_STATS } from '../../src/dataplane/upstream/stats.js';
import { StatScope } from '../../src/stats/store.js';
import { hosts, seeded } from './lb-fixtures.js';

type Config = envoy.config.cluster.v3.OutlierDetection;

/** A detector over `count` hosts whose flag changes are applied as the cluster would, with a clock set by the test. */
function setup(config: Config, count: number, random = seeded(1)) {
  const list = hosts(...Array.from({ length: count }, (_, i) => ({ port: i + 1 })));
  const clock = { now: 0 };
  const flagChanges: string[] = [];
  const sink = {
    setHostHealthFlag(host: Host, flag: number, on: boolean): void {
      host.healthFlags = on ? host.healthFlags | flag : host.healthFlags & ~flag;
      flagChanges.push(`${host.port}:${on ? 'eject' : 'return'}`);
    },
  };
  const stats = new StatScope(OUTLIER_DETECTION_STATS, 'cluster.c.outlier_detection.');
  const detector = new OutlierDetector(config, stats, sink, random, () => clock.now);
  for (const host of list) detector.addHost(host);
  const stat = (name: string): number => {
    const i = OUTLIER_DETECTION_STATS.counterNames.indexOf(name as never);
    return i >= 0 ? stats.counters[i]! : stats.gauges[OUTLIER_DETECTION_STATS.gaugeNames.indexOf(name as never)]!;
  };
  const ejected = (host: Host): boolean => (host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) !== 0;
  /** Sends `n` responses with `status` to a host. */
  const respond = (host: Host, status: number, n = 1): void => {
    for (let i = 0; i < n; i++) host.outlier!.onResponse(status);
  };
  /** Advances the clock to `at` and runs the interval sweep there. */
  const sweep = (at: number): void => {
    clock.now = at;
    detector.onInterval(at);
  };
  return { hosts: list, detector, clock, flagChanges, stat, ejected, respond, sweep };
}

describe('outlier detection: success rate math', () => {
  it('is Envoy example: rates 50, 100, 100, 100, 100 give mean 90, stdev 20, threshold 52 with factor 1.9', () => {
    const { mean, threshold } = successRateEjectionThreshold([50, 100, 100, 100, 100], 1.9);
    assert.equal(mean, 90);
    assert.ok(Math.abs(threshold - 52) < 1e-9, `threshold ${threshold}`);
  });

  it('gives the mean itself when every host has the same rate', () => {
    assert.deepEqual(successRateEjectionThreshold([80, 80, 80], 1.9), { mean: 80, threshold: 80 });
  });
});

describe('outlier detection: consecutive errors', () => {
  it('ejects after consecutive_5xx 5xx in a row; a success in between starts over', () => {
    const t = setup({ consecutive_5xx: 3 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 500, 2);
    t.respond(a!, 200);
    t.respond(a!, 503, 2);
    assert.equal(t.ejected(a!), false);
    t.respond(a!, 500);
    assert.equal(t.ejected(a!), true);
    assert.equal(t.stat('ejections_active'), 1);
    assert.equal(t.stat('ejections_detected_consecutive_5xx'), 1);
    assert.equal(t.stat('ejections_enforced_consecutive_5xx'), 1);
    assert.equal(t.stat('ejections_enforced_total'), 1);
    assert.equal(t.stat('ejections_total'), 1);
  });

  it('returns the host on the first sweep after base_ejection_time × ejections, and doubles it next time', () => {
    const t = setup({ consecutive_5xx: 2, base_ejection_time: 1000, interval: 100 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 500, 2);
    assert.equal(t.ejected(a!), true);
    t.sweep(900);
    assert.equal(t.ejected(a!), true);
    t.sweep(1000);
    assert.equal(t.ejected(a!), false);
    assert.equal(t.stat('ejections_active'), 0);
    // Ejected again at 1000: twice the base now.
    t.respond(a!, 500, 2);
    assert.equal(t.ejected(a!), true);
    t.sweep(2900);
    assert.equal(t.ejected(a!), true);
    t.sweep(3000);
    assert.equal(t.ejected(a!), false);
    assert.deepEqual(t.flagChanges, ['1:eject', '1:return', '1:eject', '1:return']);
  });

  it('caps the ejection time at max_ejection_time, and lets the multiplier decay while the host behaves', () => {
    const t = setup({ consecutive_5xx: 1, base_ejection_time: 1000, max_ejection_time: 2500, interval: 100 }, 3);
    const [a] = t.hosts;
    let now = 0;
    for (let round = 0; round < 4; round++) {
      t.clock.now = now;
      t.respond(a!, 500);
      const until = now + Math.min(1000 * (round + 1), 2500);
      t.sweep(until - 1);
      assert.equal(t.ejected(a!), true, `round ${round}: still ejected just before ${until}`);
      t.sweep(until);
      assert.equal(t.ejected(a!), false, `round ${round}: back at ${until}`);
      now = until;
    }
    // The multiplier stopped growing at 4 (4 × base ≥ max + base); four quiet sweeps bring it down to 0, so the
    // next ejection lasts the base time again.
    for (let i = 1; i <= 4; i++) t.sweep(now + i);
    t.clock.now = now + 10;
    t.respond(a!, 500);
    t.sweep(now + 10 + 999);
    assert.equal(t.ejected(a!), true);
    t.sweep(now + 10 + 1000);
    assert.equal(t.ejected(a!), false);
  });

  it('detects gateway failures but does not enforce them by default (enforcing_consecutive_gateway_failure 0)', () => {
    const t = setup({ consecutive_gateway_failure: 2, consecutive_5xx: 10 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 502);
    t.respond(a!, 504);
    assert.equal(t.ejected(a!), false);
    assert.equal(t.stat('ejections_detected_consecutive_gateway_failure'), 1);
    assert.equal(t.stat('ejections_enforced_consecutive_gateway_failure'), 0);
  });

  it('ejects on gateway failures when enforced; a plain 500 breaks the run', () => {
    const t = setup({ consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100, consecutive_5xx: 10 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 503);
    t.respond(a!, 500);
    t.respond(a!, 503);
    assert.equal(t.ejected(a!), false);
    t.respond(a!, 502);
    assert.equal(t.ejected(a!), true);
    assert.equal(t.stat('ejections_enforced_consecutive_gateway_failure'), 1);
  });

  it('counts local-origin failures as 503/504 unless split_external_local_origin_errors', () => {
    const merged = setup({ consecutive_5xx: 2 }, 3);
    merged.hosts[0]!.outlier!.onLocalOriginFailure(LocalOriginFailure.CONNECT_FAILED);
    merged.hosts[0]!.outlier!.onLocalOriginFailure(LocalOriginFailure.TIMEOUT);
    assert.equal(merged.ejected(merged.hosts[0]!), true);
    assert.equal(merged.stat('ejections_enforced_consecutive_5xx'), 1);

    const split = setup({ consecutive_5xx: 2, split_external_local_origin_errors: true, consecutive_local_origin_failure: 2 }, 3);
    const [a] = split.hosts;
    a!.outlier!.onLocalOriginFailure(LocalOriginFailure.CONNECT_FAILED);
    // A response means the connection worked: the local-origin run starts over.
    split.respond(a!, 500);
    a!.outlier!.onLocalOriginFailure(LocalOriginFailure.CONNECT_FAILED);
    assert.equal(split.ejected(a!), false);
    a!.outlier!.onLocalOriginFailure(LocalOriginFailure.TIMEOUT);
    assert.equal(split.ejected(a!), true);
    assert.equal(split.stat('ejections_enforced_consecutive_local_origin_failure'), 1);
    assert.equal(split.stat('ejections_detected_consecutive_5xx'), 0);
  });
});

describe('outlier detection: max_ejection_percent', () => {
  it('always allows one ejection, then counts overflows (default 10 %)', () => {
    const t = setup({ consecutive_5xx: 1 }, 3);
    const [a, b, c] = t.hosts;
    t.respond(a!, 500);
    t.respond(b!, 500);
    t.respond(c!, 500);
    assert.deepEqual(t.hosts.map(t.ejected), [true, false, false]);
    assert.equal(t.stat('ejections_overflow'), 2);
    assert.equal(t.stat('ejections_active'), 1);
  });

  it('allows ejections while the share already ejected is below the maximum', () => {
    const t = setup({ consecutive_5xx: 1, max_ejection_percent: 50 }, 4);
    for (const host of t.hosts) t.respond(host, 500);
    // 0 % and 25 % are below 50 %; at 50 % the third is refused.
    assert.equal(t.stat('ejections_active'), 2);
    assert.equal(t.stat('ejections_overflow'), 2);
  });

  it('ejects nothing with max_ejection_percent 0 unless always_eject_one_host', () => {
    const none = setup({ consecutive_5xx: 1, max_ejection_percent: 0 }, 3);
    none.respond(none.hosts[0]!, 500);
    assert.equal(none.stat('ejections_active'), 0);
    const one = setup({ consecutive_5xx: 1, max_ejection_percent: 0, always_eject_one_host: true }, 3);
    one.respond(one.hosts[0]!, 500);
    one.respond(one.hosts[1]!, 500);
    assert.equal(one.stat('ejections_active'), 1);
  });
});

describe('outlier detection: success rate and failure percentage', () => {
  it('ejects the host whose success rate is below mean − 1.9 stdev, judged on the last complete interval', () => {
    const t = setup({ consecutive_5xx: 1000, success_rate_request_volume: 10, interval: 100, base_ejection_time: 10_000 }, 5);
    const [bad, ...good] = t.hosts;
    t.respond(bad!, 200, 5);
    t.respond(bad!, 500, 5);
    for (const host of good) t.respond(host, 200, 10);
    // The first sweep only closes the bucket that was being filled: it is judged at once.
    t.sweep(100);
    assert.equal(t.ejected(bad!), true);
    assert.equal(t.stat('ejections_detected_success_rate'), 1);
    assert.equal(t.stat('ejections_enforced_success_rate'), 1);
    assert.equal(t.detector.figures.successRateAverage, 90);
    assert.ok(Math.abs(t.detector.figures.successRateEjectionThreshold - 52) < 1e-9);
    assert.equal(good[0]!.outlier!.external.rate, 100);
  });

  it('leaves success rate alone below success_rate_minimum_hosts or success_rate_request_volume', () => {
    const few = setup({ consecutive_5xx: 1000, success_rate_request_volume: 10 }, 4);
    few.respond(few.hosts[0]!, 500, 10);
    for (const host of few.hosts.slice(1)) few.respond(host, 200, 10);
    few.sweep(100);
    assert.equal(few.stat('ejections_active'), 0);
    assert.equal(few.detector.figures.successRateAverage, -1);

    const quiet = setup({ consecutive_5xx: 1000 }, 5);
    quiet.respond(quiet.hosts[0]!, 500, 10);
    for (const host of quiet.hosts.slice(1)) quiet.respond(host, 200, 10);
    quiet.sweep(100);
    assert.equal(quiet.stat('ejections_active'), 0);
  });

  it('ejects on failure percentage when enforced', () => {
    const t = setup(
      {
        consecutive_5xx: 1000,
        enforcing_success_rate: 0,
        enforcing_failure_percentage: 100,
        failure_percentage_threshold: 50,
        failure_percentage_minimum_hosts: 3,
        failure_percentage_request_volume: 4,
        max_ejection_percent: 100,
      },
      3,
    );
    const [a, b, c] = t.hosts;
    t.respond(a!, 500, 3);
    t.respond(a!, 200, 1);
    t.respond(b!, 500, 2);
    t.respond(b!, 200, 2);
    t.respond(c!, 200, 4);
    t.sweep(100);
    assert.deepEqual(t.hosts.map(t.ejected), [true, true, false]);
    assert.equal(t.stat('ejections_detected_failure_percentage'), 2);
    assert.equal(t.stat('ejections_enforced_failure_percentage'), 2);
  });

  it('a removed host takes its ejection with it', () => {
    const t = setup({ consecutive_5xx: 1 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 500);
    assert.equal(t.stat('ejections_active'), 1);
    t.detector.removeHost(a!);
    assert.equal(t.stat('ejections_active'), 0);
    assert.equal(a!.outlier, undefined);
  });

  it('an ejected host returns when an active health check passes (successful_active_health_check_uneject_host)', () => {
    const t = setup({ consecutive_5xx: 1 }, 3);
    const [a] = t.hosts;
    t.respond(a!, 500);
    t.detector.onActiveHealthCheckSuccess(a!);
    assert.equal(t.ejected(a!), false);
    const off = setup({ consecutive_5xx: 1, successful_active_health_check_uneject_host: false }, 3);
    off.respond(off.hosts[0]!, 500);
    off.detector.onActiveHealthCheckSuccess(off.hosts[0]!);
    assert.equal(off.ejected(off.hosts[0]!), true);
  });
});
