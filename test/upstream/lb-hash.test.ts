/**
 * The hashes and hash-based tables against Envoy's own vectors (xxHash64 reference values, and the rings and
 * Maglev tables of Envoy's ring_hash_lb_test / maglev_lb_test), and the route hash policy's rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { compileHashPolicy, type HashRequest } from '../../src/dataplane/router/hash-policy.js';
import { newStreamInfo, type RequestHead } from '../../src/dataplane/stream-info.js';
import { Hash64, murmurHash2, xxHash64 } from '../../src/dataplane/upstream/lb/hash.js';
import { MaglevTable } from '../../src/dataplane/upstream/lb/maglev.js';
import { RingHash } from '../../src/dataplane/upstream/lb/ring-hash.js';
import { bigintOf, hosts } from './lb-fixtures.js';

const h = new Hash64();
const at = (value: string): Hash64 => new Hash64().set(Number(BigInt(value) >> 32n), Number(BigInt(value) & 0xffffffffn));

/** A reference xxHash64 on BigInt, straight from the specification, to cross-check the 32-bit version. */
function referenceXxHash64(bytes: Uint8Array, seed = 0n): bigint {
  const M = (1n << 64n) - 1n;
  const P1 = 0x9e3779b185ebca87n, P2 = 0xc2b2ae3d27d4eb4fn, P3 = 0x165667b19e3779f9n, P4 = 0x85ebca77c2b2ae63n, P5 = 0x27d4eb2f165667c5n;
  const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M;
  const read = (p: number, n: number) => {
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[p + i]!);
    return v;
  };
  const round = (acc: bigint, input: bigint) => (rotl((acc + input * P2) & M, 31n) * P1) & M;
  let p = 0;
  let hash: bigint;
  if (bytes.length >= 32) {
    const v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M];
    for (; p + 32 <= bytes.length; p += 32) for (let i = 0; i < 4; i++) v[i] = round(v[i]!, read(p + 8 * i, 8));
    hash = (rotl(v[0]!, 1n) + rotl(v[1]!, 7n) + rotl(v[2]!, 12n) + rotl(v[3]!, 18n)) & M;
    for (const x of v) hash = (((hash ^ round(0n, x)) * P1) + P4) & M;
  } else {
    hash = (seed + P5) & M;
  }
  hash = (hash + BigInt(bytes.length)) & M;
  for (; p + 8 <= bytes.length; p += 8) hash = ((rotl(hash ^ round(0n, read(p, 8)), 27n) * P1) + P4) & M;
  if (p + 4 <= bytes.length) {
    hash = ((rotl(hash ^ ((read(p, 4) * P1) & M), 23n) * P2) + P3) & M;
    p += 4;
  }
  for (; p < bytes.length; p++) hash = (rotl(hash ^ ((BigInt(bytes[p]!) * P5) & M), 11n) * P1) & M;
  hash = ((hash ^ (hash >> 33n)) * P2) & M;
  hash = ((hash ^ (hash >> 29n)) * P3) & M;
  return hash ^ (hash >> 32n);
}

describe('xxHash64', () => {
  it('matches the reference values', () => {
    assert.equal(xxHash64('', h).toHex(), 'ef46db3751d8e999');
    assert.equal(xxHash64('a', h).toHex(), 'd24ec4f1a98c6e5b');
    assert.equal(xxHash64('abc', h).toHex(), '44bc2cf5ad770999');
    assert.equal(xxHash64('Nobody inspects the spammish repetition', h).toHex(), 'fbcea83c8a378bf1');
  });

  it('agrees with a BigInt implementation on every length up to 100, both seeds, and on slices', () => {
    let text = '';
    for (let n = 0; n <= 100; n++) {
      const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
      assert.equal(bigintOf(xxHash64(text, h)), referenceXxHash64(bytes), `length ${n}`);
      assert.equal(bigintOf(xxHash64(text, h, 0, text.length, 1)), referenceXxHash64(bytes, 1n), `length ${n}, seed 1`);
      text += String.fromCharCode((n * 37 + 11) % 256);
    }
    assert.equal(bigintOf(xxHash64(`xx${text}yy`, h, 2, text.length + 2)), bigintOf(xxHash64(text, new Hash64())));
  });
});

describe('ring hash', () => {
  const six = (base: number) => hosts(...[0, 1, 2, 3, 4, 5].map((i) => ({ port: base + i })));

  it('builds the xxHash ring of Envoy\'s ring_hash_lb_test Basic (keys `<ip:port>_<i>`)', () => {
    const list = six(90);
    const ring = new RingHash(list, 12, 8_388_608, false);
    assert.equal(ring.size, 12);
    assert.equal(ring.choose(at('0')), list[4]);
    assert.equal(ring.choose(at('18446744073709551615')), list[4]);
    assert.equal(ring.choose(at('3551244743356806947')), list[5]);
    assert.equal(ring.choose(at('3551244743356806948')), list[3]);
    assert.equal(ring.choose(at('16117243373044804880')), list[0]);
  });

  it('builds the MurmurHash2 ring of Envoy\'s BasicWithMurmur2', () => {
    const list = six(80);
    const ring = new RingHash(list, 12, 8_388_608, true);
    assert.equal(ring.choose(at('0')), list[5]);
    assert.equal(ring.choose(at('1358027074129602068')), list[5]);
    assert.equal(ring.choose(at('1358027074129602069')), list[3]);
    assert.equal(ring.choose(at('10150910876324007730')), list[2]);
    assert.equal(bigintOf(murmurHash2('127.0.0.1:85_0', h)) === 1358027074129602068n || bigintOf(murmurHash2('127.0.0.1:85_1', h)) === 1358027074129602068n, true);
  });

  it('caps the ring at maximum_ring_size and scales points by weight', () => {
    const ring = new RingHash(hosts({ port: 1, weight: 1 }, { port: 2, weight: 3 }), 1024, 100, false);
    assert.equal(ring.size, 100);
    // The lightest host (0.4) gets ceil(0.4 × 1024) = 410 whole points: 410 / 0.4 = 1025 in all.
    assert.equal(new RingHash(hosts({ port: 1, weight: 2 }, { port: 2, weight: 3 }), 1024, 8_388_608, false).size, 1025);
  });
});

describe('maglev', () => {
  it('builds the table of Envoy\'s maglev_lb_test Basic (size 7)', () => {
    const list = hosts(...[0, 1, 2, 3, 4, 5].map((i) => ({ port: 90 + i })));
    const table = new MaglevTable(list, 7);
    const expected = [2, 4, 0, 1, 5, 0, 3];
    for (let i = 0; i < 21; i++) assert.equal(table.choose(new Hash64().set(0, i)), list[expected[i % 7]!], `hash ${i}`);
  });

  it('does not depend on the order of the hosts', () => {
    const list = hosts(...[0, 1, 2, 3, 4, 5].map((i) => ({ port: 90 + i })));
    const a = new MaglevTable(list, 65_537);
    const b = new MaglevTable([...list].reverse(), 65_537);
    for (let i = 0; i < 1000; i++) assert.equal(a.choose(xxHash64(`k${i}`, h)), b.choose(h));
  });
});

describe('route hash_policy', () => {
  function request(headers: Record<string, string>, path = '/'): HashRequest & { cookies: string[] } {
    const head: RequestHead = { method: 'GET', path, authority: 'example.com', scheme: 'http', headers };
    const info = newStreamInfo(head, 0);
    info.downstreamRemoteAddress = '10.0.0.1';
    info.downstreamRemotePort = 5000;
    info.downstreamLocalAddress = '10.0.0.2';
    info.downstreamLocalPort = 80;
    const cookies: string[] = [];
    return { head, info, cookies, addResponseCookie: (c) => cookies.push(c) };
  }
  function compile(policies: unknown[]) {
    const errors: ConfigError[] = [];
    const policy = compileHashPolicy(policies as never, 'hash_policy', errors);
    assert.deepEqual(errors, []);
    return policy!;
  }
  const hashOf = (s: string) => bigintOf(xxHash64(s, new Hash64()));
  const evaluate = (policy: ReturnType<typeof compile>, req: HashRequest) => (policy.evaluate(req, h) ? bigintOf(h) : undefined);

  it('hashes a header value, after regex_rewrite, and a pseudo-header', () => {
    assert.equal(evaluate(compile([{ header: { header_name: 'X-User' } }]), request({ 'x-user': 'alice' })), hashOf('alice'));
    assert.equal(evaluate(compile([{ header: { header_name: 'x-user' } }]), request({})), undefined);
    const rewrite = compile([{ header: { header_name: 'x-user', regex_rewrite: { pattern: { regex: '-.*' }, substitution: '' } } }]);
    assert.equal(evaluate(rewrite, request({ 'x-user': 'alice-1' })), hashOf('alice'));
    assert.equal(evaluate(compile([{ header: { header_name: ':authority' } }]), request({})), hashOf('example.com'));
  });

  it('combines hashes as rotl(previous, 1) ^ next and stops at a terminal policy that produced one', () => {
    const a = hashOf('A');
    const b = hashOf('B');
    const combined = (((a << 1n) | (a >> 63n)) & 0xffffffffffffffffn) ^ b;
    const both = compile([{ header: { header_name: 'a' } }, { header: { header_name: 'b' } }]);
    assert.equal(evaluate(both, request({ a: 'A', b: 'B' })), combined);
    assert.equal(evaluate(both, request({ b: 'B' })), b);
    const terminal = compile([{ header: { header_name: 'a' }, terminal: true }, { header: { header_name: 'b' } }]);
    assert.equal(evaluate(terminal, request({ a: 'A', b: 'B' })), a);
    assert.equal(evaluate(terminal, request({ b: 'B' })), b);
  });

  it('hashes a cookie value without its quotes, and ignores an empty one', () => {
    const policy = compile([{ cookie: { name: 'session' } }]);
    assert.equal(evaluate(policy, request({ cookie: 'a=1; session="xyz"; b=2' })), hashOf('xyz'));
    assert.equal(evaluate(policy, request({ cookie: 'sessionx=1;session=abc' })), hashOf('abc'));
    assert.equal(evaluate(policy, request({ cookie: 'session=' })), undefined);
    assert.equal(evaluate(policy, request({})), undefined);
  });

  it('generates a cookie when it is absent and a ttl is set, as Envoy formats it', () => {
    const policy = compile([{ cookie: { name: 'sticky', ttl: 3_600_000, path: '/app', attributes: [{ name: 'SameSite', value: 'Lax' }, { name: 'Secure' }] } }]);
    const req = request({});
    const value = xxHash64('10.0.0.1:500010.0.0.2:80', new Hash64()).toHex();
    assert.equal(evaluate(policy, req), hashOf(value));
    assert.deepEqual(req.cookies, [`sticky="${value}"; Max-Age=3600; Path=/app; SameSite=Lax; Secure; HttpOnly`]);
    const zeroTtl = request({});
    compile([{ cookie: { name: 'sticky', ttl: 0 } }]).evaluate(zeroTtl, h);
    assert.deepEqual(zeroTtl.cookies, [`sticky="${value}"; HttpOnly`]);
    const present = request({ cookie: `sticky="${value}"` });
    assert.equal(evaluate(policy, present), hashOf(value));
    assert.deepEqual(present.cookies, []);
  });

  it('hashes the source IP and the first raw value of a query parameter', () => {
    assert.equal(evaluate(compile([{ connection_properties: { source_ip: true } }]), request({})), hashOf('10.0.0.1'));
    assert.equal(evaluate(compile([{ connection_properties: { source_ip: false } }]), request({})), undefined);
    const query = compile([{ query_parameter: { name: 'user' } }]);
    assert.equal(evaluate(query, request({}, '/p?x=1&user=bob%20b&user=eve')), hashOf('bob%20b'));
    assert.equal(evaluate(query, request({}, '/p?userx=1&user')), hashOf(''));
    assert.equal(evaluate(query, request({}, '/p?x=user')), undefined);
    assert.equal(evaluate(query, request({}, '/p')), undefined);
  });
});
