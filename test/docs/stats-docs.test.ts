/**
 * docs/stats.md against the stats Portico really emits: a test fails when a stat is emitted that the docs do not
 * list (with the kind they give it), and when the docs list a stat that no component declares.
 *
 * The docs write names with placeholders (`cluster.<name>.upstream_rq_<code>`, `http.<stat_prefix>.downstream_rq_<N>xx`,
 * `listener.<address>.downstream_cx_total`), possibly with brace groups (`downstream_cx_{total,active}`). Emitted
 * names are collected from varied traffic through an in-process data plane and from the `/stats` of a real
 * `portico run` (for `server.*` and `listener_manager.*`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HCM_STATS, LISTENER_HTTP_STATS } from '../../src/dataplane/http/stats.js';
import { LISTENER_MANAGER_STATS, LISTENER_STATS } from '../../src/dataplane/listener/stats.js';
import { CDS_STATS, CONTROL_PLANE_STATS, LDS_STATS } from '../../src/xds/stats.js';
import { TCP_PROXY_STATS } from '../../src/dataplane/tcp/stats.js';
import { CIRCUIT_BREAKER_REMAINING_STATS, CIRCUIT_BREAKER_STATS } from '../../src/dataplane/upstream/resource-manager.js';
import {
  CLUSTER_MANAGER_STATS,
  CLUSTER_STATS,
  HEALTH_CHECK_STATS,
  MAGLEV_LB_STATS,
  OUTLIER_DETECTION_STATS,
  RING_HASH_LB_STATS,
} from '../../src/dataplane/upstream/stats.js';
import { startEchoServer } from '../../src/echo/echo-server.js';
import { CORS_STATS } from '../../src/extensions/filters/http/cors/cors-filter.js';
import { RBAC_SHADOW_STATS, RBAC_STATS } from '../../src/extensions/filters/common/rbac/rbac-config.js';
import { GRPC_STATS } from '../../src/extensions/filters/http/grpc_stats/grpc-stats-filter.js';
import { API_KEY_AUTH_STATS } from '../../src/extensions/filters/http/api_key_auth/api-key-auth-filter.js';
import { BASIC_AUTH_STATS } from '../../src/extensions/filters/http/basic_auth/basic-auth-filter.js';
import { EXT_AUTHZ_STATS } from '../../src/extensions/filters/http/ext_authz/ext-authz-filter.js';
import { JWT_AUTHN_STATS } from '../../src/extensions/filters/http/jwt_authn/jwt-authn-filter.js';
import { NETWORK_LOCAL_RATELIMIT_STATS } from '../../src/extensions/filters/network/local_ratelimit/local-ratelimit-filter.js';
import { LOCAL_RATE_LIMIT_STATS } from '../../src/extensions/filters/http/local_ratelimit/local-ratelimit-filter.js';
import { RATELIMIT_STATS } from '../../src/extensions/filters/http/ratelimit/ratelimit-filter.js';
import { HTTP_INSPECTOR_STATS } from '../../src/extensions/filters/listener/http_inspector/http-inspector.js';
import { TLS_INSPECTOR_STATS } from '../../src/extensions/filters/listener/tls_inspector/tls-inspector.js';
import { SERVER_STATS } from '../../src/server/server-admin.js';
import { renderPrometheus } from '../../src/stats/render.js';
import type { StatSchema } from '../../src/stats/store.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { startPortico, staticCluster } from '../support/portico.js';
import { freePort } from '../support/ports.js';
import { httpRequest, rawRequest, refusedPort, startMisbehavingUpstream } from '../support/upstreams.js';

type Kind = 'counter' | 'gauge' | 'histogram';

/** Every stat schema, with the prefix its scopes get (in the docs' placeholder notation). */
const SCHEMAS: Record<string, { schema: StatSchema; prefix: string }> = {
  SERVER_STATS: { schema: SERVER_STATS, prefix: 'server.' },
  LISTENER_MANAGER_STATS: { schema: LISTENER_MANAGER_STATS, prefix: 'listener_manager.' },
  LDS_STATS: { schema: LDS_STATS, prefix: 'listener_manager.lds.' },
  CDS_STATS: { schema: CDS_STATS, prefix: 'cluster_manager.cds.' },
  CONTROL_PLANE_STATS: { schema: CONTROL_PLANE_STATS, prefix: 'control_plane.' },
  LISTENER_STATS: { schema: LISTENER_STATS, prefix: 'listener.<address>.' },
  LISTENER_HTTP_STATS: { schema: LISTENER_HTTP_STATS, prefix: 'listener.<address>.http.<stat_prefix>.' },
  HCM_STATS: { schema: HCM_STATS, prefix: 'http.<stat_prefix>.' },
  CORS_STATS: { schema: CORS_STATS, prefix: 'http.<stat_prefix>.cors.' },
  RBAC_STATS: { schema: RBAC_STATS, prefix: 'http.<stat_prefix>.rbac.' },
  RBAC_SHADOW_STATS: { schema: RBAC_SHADOW_STATS, prefix: 'http.<stat_prefix>.rbac.' },
  NETWORK_LOCAL_RATELIMIT_STATS: { schema: NETWORK_LOCAL_RATELIMIT_STATS, prefix: 'local_ratelimit.<stat_prefix>.' },
  NETWORK_RBAC_STATS: { schema: RBAC_STATS, prefix: '<stat_prefix>.rbac.' },
  NETWORK_RBAC_SHADOW_STATS: { schema: RBAC_SHADOW_STATS, prefix: '<stat_prefix>.rbac.' },
  GRPC_STATS: { schema: GRPC_STATS, prefix: 'cluster.<name>.grpc.' },
  LOCAL_RATE_LIMIT_STATS: { schema: LOCAL_RATE_LIMIT_STATS, prefix: '<stat_prefix>.http_local_rate_limit.' },
  GRPC_METHOD_STATS: { schema: GRPC_STATS, prefix: 'cluster.<name>.grpc.<service>.<method>.' },
  RATELIMIT_STATS: { schema: RATELIMIT_STATS, prefix: 'cluster.<name>.ratelimit.' },
  API_KEY_AUTH_STATS: { schema: API_KEY_AUTH_STATS, prefix: 'http.<stat_prefix>.api_key_auth.' },
  BASIC_AUTH_STATS: { schema: BASIC_AUTH_STATS, prefix: 'http.<stat_prefix>.basic_auth.' },
  EXT_AUTHZ_STATS: { schema: EXT_AUTHZ_STATS, prefix: 'http.<stat_prefix>.ext_authz.' },
  JWT_AUTHN_STATS: { schema: JWT_AUTHN_STATS, prefix: 'http.<stat_prefix>.jwt_authn.' },
  TCP_PROXY_STATS: { schema: TCP_PROXY_STATS, prefix: 'tcp.<stat_prefix>.' },
  TLS_INSPECTOR_STATS: { schema: TLS_INSPECTOR_STATS, prefix: 'tls_inspector.' },
  HTTP_INSPECTOR_STATS: { schema: HTTP_INSPECTOR_STATS, prefix: 'http_inspector.' },
  CLUSTER_STATS: { schema: CLUSTER_STATS, prefix: 'cluster.<name>.' },
  CLUSTER_MANAGER_STATS: { schema: CLUSTER_MANAGER_STATS, prefix: 'cluster_manager.' },
  CIRCUIT_BREAKER_STATS: { schema: CIRCUIT_BREAKER_STATS, prefix: 'cluster.<name>.circuit_breakers.<priority>.' },
  CIRCUIT_BREAKER_REMAINING_STATS: { schema: CIRCUIT_BREAKER_REMAINING_STATS, prefix: 'cluster.<name>.circuit_breakers.<priority>.' },
  HEALTH_CHECK_STATS: { schema: HEALTH_CHECK_STATS, prefix: 'cluster.<name>.health_check.' },
  OUTLIER_DETECTION_STATS: { schema: OUTLIER_DETECTION_STATS, prefix: 'cluster.<name>.outlier_detection.' },
  RING_HASH_LB_STATS: { schema: RING_HASH_LB_STATS, prefix: 'cluster.<name>.ring_hash_lb.' },
  MAGLEV_LB_STATS: { schema: MAGLEV_LB_STATS, prefix: 'cluster.<name>.maglev_lb.' },
};
/** Schemas whose values are shown elsewhere than in the stats (per-host counts in `/clusters`). */
const NOT_STATS = new Set(['HOST_STATS']);

// ---------------------------------------------------------------------------------------------------------------
// Placeholder names

const ADDRESS = String.raw`(?:\d{1,3}(?:\.\d{1,3}){3}_\d+|\[[0-9a-fA-F_]+\]_\d+)`;
/** What each placeholder stands for; any other `<x>` is one dot-free segment. */
const PLACEHOLDER_PATTERNS: Record<string, string> = {
  name: '[^.]+',
  cluster: '[^.]+',
  stat_prefix: '[^.]+',
  prefix: '[^.]+',
  // A listener address (`127.0.0.1_8080`, `[__1]_8080`) or the listener's stat_prefix.
  address: `(?:${ADDRESS}|[^.]+)`,
  code: '[1-5]\\d\\d',
  N: '[1-5]',
};
/** A concrete value for each placeholder, to turn a documented name into a stat name. */
const PLACEHOLDER_SAMPLES: Record<string, string> = {
  name: 'c0',
  cluster: 'c0',
  stat_prefix: 'ingress_http',
  prefix: 'ingress_http',
  address: '127.0.0.1_10000',
  code: '200',
  N: '2',
};

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The regex source of a name written with `<placeholders>` and `{a,b}` groups. */
function templateSource(template: string): string {
  let out = '';
  for (let i = 0; i < template.length; ) {
    const c = template[i]!;
    if (c === '<') {
      const end = template.indexOf('>', i);
      assert.ok(end > i, `unclosed placeholder in ${template}`);
      out += PLACEHOLDER_PATTERNS[template.slice(i + 1, end)] ?? '[^.]+';
      i = end + 1;
    } else if (c === '{') {
      const end = template.indexOf('}', i);
      assert.ok(end > i, `unclosed brace group in ${template}`);
      out += `(?:${template.slice(i + 1, end).split(',').map(templateSource).join('|')})`;
      i = end + 1;
    } else {
      out += escape(c);
      i++;
    }
  }
  return out;
}

function templateRegex(template: string): RegExp {
  return new RegExp(`^${templateSource(template)}$`);
}

/** The concrete names a documented name stands for: placeholders filled in, brace groups expanded. */
function instantiate(template: string): string[] {
  const brace = /\{([^{}]*)\}/.exec(template);
  if (brace) {
    return brace[1]!.split(',').flatMap((alternative) => instantiate(template.slice(0, brace.index) + alternative + template.slice(brace.index + brace[0].length)));
  }
  return [template.replace(/<([^>]+)>/g, (_, key: string) => PLACEHOLDER_SAMPLES[key] ?? 'x')];
}

// ---------------------------------------------------------------------------------------------------------------
// docs/stats.md

interface DocumentedStat {
  template: string;
  regex: RegExp;
  kind: Kind | undefined;
  line: number;
}

const KINDS: Record<string, Kind> = { c: 'counter', counter: 'counter', g: 'gauge', gauge: 'gauge', h: 'histogram', histogram: 'histogram' };

function cells(row: string): string[] {
  return row.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim());
}

/** Markdown tables as header cells and data rows (with their line numbers). */
function tables(markdown: string): Array<{ header: string[]; rows: Array<{ cells: string[]; line: number }> }> {
  const out: Array<{ header: string[]; rows: Array<{ cells: string[]; line: number }> }> = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.trim().startsWith('|') || !/^\s*\|?\s*:?-{3,}/.test(lines[i + 1] ?? '')) continue;
    const table = { header: cells(lines[i]!), rows: [] as Array<{ cells: string[]; line: number }> };
    let j = i + 2;
    for (; j < lines.length && lines[j]!.trim().startsWith('|'); j++) table.rows.push({ cells: cells(lines[j]!), line: j + 1 });
    out.push(table);
    i = j - 1;
  }
  return out;
}

/** Where documented names start: a root scope, or a filter's own `stat_prefix` (local rate limits). */
const STAT_ROOTS = /^(server|listener|listener_manager|http|tcp|cluster|cluster_manager|tls_inspector|http_inspector|local_ratelimit|control_plane|<stat_prefix>)\./;

/** The stats of every table whose first column is `Name`: each backticked name in that column. */
function documentedStats(markdown: string): DocumentedStat[] {
  const stats: DocumentedStat[] = [];
  for (const table of tables(markdown)) {
    if (table.header[0]?.toLowerCase() !== 'name') continue;
    const kindColumn = table.header.findIndex((h) => /^(kind|type)$/i.test(h));
    for (const row of table.rows) {
      const kindText = kindColumn < 0 ? undefined : row.cells[kindColumn]?.replace(/`/g, '').toLowerCase();
      const kind = kindText === undefined ? undefined : KINDS[kindText];
      for (const [, template] of row.cells[0]!.matchAll(/`([^`]+)`/g)) {
        if (!STAT_ROOTS.test(template!)) continue;
        stats.push({ template: template!, regex: templateRegex(template!), kind, line: row.line });
      }
    }
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------------------------

describe('the placeholder notation', () => {
  it('matches names with their placeholders filled in, and nothing else', () => {
    const cases: Array<[string, string[], string[]]> = [
      ['cluster.<name>.upstream_rq_<code>', ['cluster.c0.upstream_rq_200', 'cluster.backend.upstream_rq_503'], ['cluster.c0.upstream_rq_total', 'cluster.c0.upstream_rq_2xx', 'cluster.a.b.upstream_rq_200']],
      ['http.<stat_prefix>.downstream_rq_<N>xx', ['http.ingress_http.downstream_rq_5xx'], ['http.ingress_http.downstream_rq_200', 'http.ingress_http.downstream_rq_xx']],
      ['listener.<address>.downstream_cx_total', ['listener.127.0.0.1_10000.downstream_cx_total', 'listener.[__1]_80.downstream_cx_total', 'listener.public.downstream_cx_total'], ['listener.downstream_cx_total', 'listener.1.2.downstream_cx_total']],
      ['listener.<address>.http.<stat_prefix>.downstream_rq_completed', ['listener.0.0.0.0_8080.http.ingress_http.downstream_rq_completed'], ['listener.0.0.0.0_8080.downstream_rq_completed']],
      ['http.<stat_prefix>.downstream_cx_destroy{,_remote,_local}', ['http.x.downstream_cx_destroy', 'http.x.downstream_cx_destroy_remote'], ['http.x.downstream_cx_destroy_active']],
      ['server.live', ['server.live'], ['server_live', 'server.liveness']],
    ];
    for (const [template, yes, no] of cases) {
      const regex = templateRegex(template);
      for (const name of yes) assert.ok(regex.test(name), `${template} should match ${name}`);
      for (const name of no) assert.ok(!regex.test(name), `${template} should not match ${name}`);
    }
    assert.deepEqual(instantiate('http.<stat_prefix>.downstream_cx_{total,active}'), ['http.ingress_http.downstream_cx_total', 'http.ingress_http.downstream_cx_active']);
    assert.deepEqual(instantiate('cluster.<name>.upstream_rq_<code>'), ['cluster.c0.upstream_rq_200']);
  });
});

describe('docs/stats.md', () => {
  const markdown = readFileSync(join(PACKAGE_ROOT, 'docs', 'stats.md'), 'utf8');
  const documented = documentedStats(markdown);
  /** Every emitted stat name with its kind. */
  const emitted = new Map<string, Kind>();
  const cleanups: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  function documentationOf(name: string): DocumentedStat | undefined {
    return documented.find((d) => d.regex.test(name));
  }

  before(async () => {
    await collectInProcess(emitted, cleanups);
    await collectFromPorticoRun(emitted, cleanups);
  });

  it('lists stats in tables whose first column is the name', () => {
    assert.ok(documented.length >= 50, `only ${documented.length} stats found in docs/stats.md tables`);
    for (const root of ['server.', 'listener_manager.', 'listener.', 'http.', 'cluster.', 'cluster_manager.']) {
      assert.ok(documented.some((d) => d.template.startsWith(root)), `no ${root}* stat documented`);
    }
  });

  it('collects the stats of every component from real traffic', () => {
    for (const name of [
      'server.live',
      'server.worker_restarts',
      'server.memory_allocated',
      'listener_manager.listener_added',
      'cluster_manager.active_clusters',
      'http.ingress_http.downstream_rq_2xx',
      'http.public_http.downstream_rq_4xx',
      'listener.public.downstream_cx_total',
      'cluster.echo.upstream_rq_200',
      'cluster.echo.upstream_rq_404',
      'cluster.dead.upstream_rq_503',
      'cluster.hang.upstream_rq_504',
    ]) {
      assert.ok(emitted.has(name), `${name} was not emitted`);
    }
    assert.ok([...emitted.keys()].some((n) => /^listener\.127\.0\.0\.1_\d+\.http\.ingress_http\.downstream_rq_2xx$/.test(n)));
  });

  it('documents every emitted stat', () => {
    const undocumented = [...emitted.keys()].filter((name) => documentationOf(name) === undefined).sort();
    assert.deepEqual(undocumented, [], 'stats emitted but missing from docs/stats.md');
  });

  it('gives every emitted stat the kind it has', () => {
    const wrong: string[] = [];
    for (const [name, kind] of emitted) {
      const doc = documentationOf(name);
      if (doc?.kind !== undefined && doc.kind !== kind) wrong.push(`${name}: documented as ${doc.kind} (docs/stats.md:${doc.line}), is a ${kind}`);
    }
    assert.deepEqual(wrong.sort(), []);
  });

  it('documents every stat the component schemas declare', () => {
    const missing: string[] = [];
    for (const [schemaName, { schema, prefix }] of Object.entries(SCHEMAS)) {
      const names = [...schema.counterNames, ...schema.gaugeNames, ...schema.histogramNames, ...schema.codeFamilies.map((f) => `${f}_<code>`)];
      for (const name of names) {
        for (const concrete of instantiate(prefix + name)) {
          if (documentationOf(concrete) === undefined) missing.push(`${concrete} (${schemaName})`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it('documents no stat that nothing declares or emits', () => {
    const declared = Object.values(SCHEMAS).flatMap(({ schema, prefix }) =>
      [...schema.counterNames, ...schema.gaugeNames, ...schema.histogramNames, ...schema.codeFamilies.map((f) => `${f}_<code>`)].map((name) =>
        templateRegex(prefix + name),
      ),
    );
    const stale: string[] = [];
    for (const doc of documented) {
      for (const concrete of instantiate(doc.template)) {
        if (declared.some((regex) => regex.test(concrete)) || emitted.has(concrete)) continue;
        // Stats computed when read (server memory and connections) are emitted, not declared in a schema.
        if ([...emitted.keys()].some((name) => doc.regex.test(name))) continue;
        stale.push(`${doc.template} (docs/stats.md:${doc.line})`);
      }
    }
    assert.deepEqual(stale, [], 'documented stats that no schema declares and nothing emits');
  });

  it('knows the prefix of every stat schema in src/', () => {
    const exported: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
          if (entry.name !== 'generated') walk(path);
        } else if (entry.name.endsWith('.ts')) {
          for (const [, name] of readFileSync(path, 'utf8').matchAll(/export const (\w+) = defineStats\b/g)) exported.push(name!);
        }
      }
    };
    walk(join(PACKAGE_ROOT, 'src'));
    assert.ok(exported.length >= 7, `found ${exported}`);
    const unknown = exported.filter((name) => !(name in SCHEMAS) && !NOT_STATS.has(name));
    assert.deepEqual(unknown, [], 'a new stat schema: add it to SCHEMAS in this test with its prefix');
  });

  it('gives the Prometheus form Portico renders in its examples', () => {
    let examples = 0;
    for (const table of tables(markdown)) {
      const prometheusColumn = table.header.findIndex((h) => /prometheus/i.test(h));
      if (prometheusColumn < 0) continue;
      for (const row of table.rows) {
        const stat = /`([^`]+)`/.exec(row.cells[0] ?? '')?.[1];
        const expected = /`([^`]+)`/.exec(row.cells[prometheusColumn] ?? '')?.[1];
        if (stat === undefined || expected === undefined) continue;
        examples++;
        const rendered = renderPrometheus({ counters: [[stat, 7, true, true]], gauges: [], histograms: [] }, { usedOnly: false, filter: undefined });
        assert.equal(rendered.split('\n')[1], `${expected} 7`, `docs/stats.md:${row.line}`);
      }
    }
    assert.ok(examples > 0, 'no Prometheus examples found');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Traffic

/** Success, 404 from upstream, no route, direct response, redirect, 503 UF, 504 UT, resets; two listeners. */
async function collectInProcess(emitted: Map<string, Kind>, cleanups: Array<() => Promise<unknown>>): Promise<void> {
  const echo = await startEchoServer({ name: 'docs-echo' });
  cleanups.push(() => echo.close());
  const hang = await startMisbehavingUpstream('hang');
  cleanups.push(() => hang.close());
  const reset = await startMisbehavingUpstream('headers-then-reset');
  cleanups.push(() => reset.close());
  const dead = await refusedPort();
  const hcm = (prefix: string, routes: string) => `
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${prefix}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
${routes}
          http_filters:
          - name: envoy.filters.http.cors
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`;
  const gw = await startPortico(`
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:${hcm(
      'ingress_http',
      `              - { match: { prefix: "/direct" }, direct_response: { status: 200, body: { inline_string: "d" } } }
              - { match: { prefix: "/redirect" }, redirect: { path_redirect: "/x" } }
              - { match: { prefix: "/dead" }, route: { cluster: dead } }
              - { match: { prefix: "/hang" }, route: { cluster: hang, timeout: 0.1s } }
              - { match: { prefix: "/reset" }, route: { cluster: reset } }
              - { match: { prefix: "/by-header" }, route: { cluster_header: x-cluster } }
              - { match: { prefix: "/status" }, route: { cluster: echo } }
              - { match: { prefix: "/echo" }, route: { cluster: echo } }`,
    )}
  - name: public
    stat_prefix: public
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:${hcm('public_http', '              - { match: { prefix: "/echo" }, route: { cluster: echo } }')}
  clusters:
${[staticCluster('echo', echo.port), staticCluster('dead', dead), staticCluster('hang', hang.port), staticCluster('reset', reset.port)]
  .join('')
  .split('\n')
  .map((line) => (line ? `  ${line}` : line))
  .join('\n')}
`);
  cleanups.push(() => gw.close());
  const get = (path: string, headers: Record<string, string> = {}, listener = 0) => httpRequest(`${gw.url(listener)}${path}`, { headers });
  assert.equal((await get('/echo/ok')).status, 200);
  assert.equal((await get('/status/404')).status, 404);
  assert.equal((await get('/nowhere')).status, 404);
  assert.equal((await get('/direct')).status, 200);
  assert.equal((await get('/redirect')).status, 301);
  assert.equal((await get('/dead')).status, 503);
  assert.equal((await get('/hang')).status, 504);
  assert.equal((await get('/by-header', { 'x-cluster': 'missing' })).status, 503);
  assert.equal((await rawRequest(gw.port(), 'GET /reset HTTP/1.1\r\nhost: x\r\n\r\n')).status, 200);
  assert.equal((await rawRequest(gw.port(), 'GARBAGE\r\n\r\n')).status, 400);
  assert.equal((await get('/echo/public', {}, 1)).status, 200);
  assert.equal((await get('/nowhere', {}, 1)).status, 404);
  await echo.close();
  const snapshot = gw.plane.stats.snapshot();
  for (const [name] of snapshot.counters) emitted.set(name, 'counter');
  for (const [name] of snapshot.gauges) emitted.set(name, 'gauge');
  for (const [name] of snapshot.histograms) emitted.set(name, 'histogram');
}

/** The `/stats` of `portico run`: the primary's `server.*` with a worker's stats. */
async function collectFromPorticoRun(emitted: Map<string, Kind>, cleanups: Array<() => Promise<unknown>>): Promise<void> {
  const echo = await startEchoServer({ name: 'docs-run-echo' });
  cleanups.push(() => echo.close());
  const [listenerPort, adminPort] = [await freePort(), await freePort()];
  const file = join(mkdtempSync(join(tmpdir(), 'portico-stats-docs-')), 'bootstrap.yaml');
  writeFileSync(
    file,
    `admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${adminPort} } } }
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: ${listenerPort} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config: { virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: echo } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
${staticCluster('echo', echo.port)
  .split('\n')
  .map((line) => (line ? `  ${line}` : line))
  .join('\n')}
`,
  );
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'portico.js'), 'run', '-c', file, '-l', 'error', '--concurrency', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  const admin = (path: string) => httpRequest(`http://127.0.0.1:${adminPort}${path}`);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`portico run exited: ${stderr}`);
    const ready = await admin('/ready').catch(() => undefined);
    if (ready?.status === 200) break;
    if (Date.now() > deadline) throw new Error(`portico run did not become ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal((await httpRequest(`http://127.0.0.1:${listenerPort}/ok`)).status, 200);
  for (const [type, kind] of [
    ['Counters', 'counter'],
    ['Gauges', 'gauge'],
    ['Histograms', 'histogram'],
  ] as const) {
    const res = await admin(`/stats?type=${type}`);
    assert.equal(res.status, 200);
    for (const line of res.body.split('\n')) if (line) emitted.set(line.slice(0, line.indexOf(': ')), kind);
  }
}
