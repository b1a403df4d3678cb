import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { RouteMatcher } from '../../src/dataplane/router/route-matcher.js';
import { newMatchContext, RouteEntry } from '../../src/dataplane/router/route-table.js';
import { Runtime } from '../../src/dataplane/runtime/runtime.js';

/** A small deterministic generator, so that a failure reproduces. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

const SEGMENTS = ['a', 'b', 'api', 'API', 'v1', 'users', 'x-y', ''];

function randomPath(random: () => number): string {
  const depth = Math.floor(random() * 4);
  let path = '/';
  for (let i = 0; i < depth; i++) path += SEGMENTS[Math.floor(random() * SEGMENTS.length)] + (random() < 0.5 ? '/' : '');
  return path;
}

function randomRoute(random: () => number, i: number): Record<string, unknown> {
  const value = randomPath(random);
  const match: Record<string, unknown> = random() < 0.7 ? { prefix: value } : { path: value };
  if (random() < 0.2) match.case_sensitive = false;
  // Some routes have another condition: they are never indexed and split the runs.
  if (random() < 0.05) match.headers = [{ name: 'x-pick', string_match: { exact: String(i % 3) } }];
  return { name: `r${i}`, match, direct_response: { status: 200 } };
}

function entries(configs: Record<string, unknown>[]): RouteEntry[] {
  const errors: ConfigError[] = [];
  const runtime = new Runtime(undefined);
  const built = configs.map((config, i) => new RouteEntry(config, `routes[${i}]`, errors, runtime, 4096, [], false, { retryPolicy: undefined, bufferLimit: undefined, mirrorPolicies: undefined }));
  assert.deepEqual(errors, []);
  return built;
}

function linear(routes: readonly RouteEntry[], path: string, headers: Record<string, string>) {
  const ctx = newMatchContext({ method: 'GET', path, authority: 'x', scheme: 'http', headers });
  return routes.find((r) => r.matches(ctx));
}

describe('route matcher', () => {
  it('picks the same route as a first-match scan, for random route tables and paths', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = generator(seed);
      const routes = entries(Array.from({ length: 300 }, (_, i) => randomRoute(random, i)));
      const matcher = new RouteMatcher(routes);
      for (let n = 0; n < 2000; n++) {
        const path = randomPath(random) + (random() < 0.1 ? '?q=1' : '');
        const headers = { 'x-pick': String(n % 3) };
        const ctx = newMatchContext({ method: 'GET', path, authority: 'x', scheme: 'http', headers });
        assert.equal(matcher.match(ctx)?.name, linear(routes, path, headers)?.name, `seed ${seed}, path ${path}`);
      }
    }
  });

  it('finds the last of 10,000 prefix routes and falls through to later routes', () => {
    const configs = Array.from({ length: 10_000 }, (_, i) => ({ name: `r${i}`, match: { prefix: `/service-${i}/` }, direct_response: { status: 200 } }));
    configs.push({ name: 'catch-all', match: { prefix: '/' }, direct_response: { status: 404 } });
    const matcher = new RouteMatcher(entries(configs));
    const ctx = (path: string) => newMatchContext({ method: 'GET', path, authority: 'x', scheme: 'http', headers: {} });
    assert.equal(matcher.match(ctx('/service-9999/items'))?.name, 'r9999');
    assert.equal(matcher.match(ctx('/service-0/'))?.name, 'r0');
    assert.equal(matcher.match(ctx('/service-1/x'))?.name, 'r1');
    assert.equal(matcher.match(ctx('/service-10000/'))?.name, 'catch-all');
    assert.equal(matcher.match(ctx('/SERVICE-1/'))?.name, 'catch-all');
  });

  it('prefers an earlier shorter prefix over a later longer one, as first match does', () => {
    const configs = Array.from({ length: 20 }, (_, i) => ({ name: `r${i}`, match: { prefix: `/p${i}` }, direct_response: { status: 200 } }));
    configs.splice(3, 0, { name: 'short', match: { prefix: '/p1' }, direct_response: { status: 200 } });
    const matcher = new RouteMatcher(entries(configs));
    const ctx = newMatchContext({ method: 'GET', path: '/p15', authority: 'x', scheme: 'http', headers: {} });
    assert.equal(matcher.match(ctx)?.name, 'r1');
  });
});
