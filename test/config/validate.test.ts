import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { checkYaml, simpleBootstrap, staticCluster } from '../support/portico.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import { compileBootstrap, findCompileProblems } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';

function codes(errors: ConfigError[]): string[] {
  return errors.map((e) => `${e.code} ${e.path}`);
}

const ROUTER = `
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`;

describe('configuration validation', () => {
  it('accepts a minimal valid bootstrap', () => {
    const yaml = simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: a }', clusters: staticCluster('a', 1) });
    assert.deepEqual(checkYaml(yaml), []);
  });

  it('reports every problem of one document with its path', () => {
    const yaml = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    bogus_field: 1
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: a
              domains: ["example.com", "*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: missing }
              - match: { safe_regex: { regex: "(a)\\\\1" } }
                route: { cluster: c }
            - name: b
              domains: ["EXAMPLE.com"]
              routes: []
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
  clusters:
  - name: c
    connect_timeout: 1s
  - name: c
    connect_timeout: five
`;
    const errors = checkYaml(yaml);
    const found = codes(errors);
    const rc = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config';
    assert.deepEqual(found.sort(), [
      'duplicate_domain ' + rc + '.virtual_hosts[1].domains[0]',
      'duplicate_name static_resources.clusters[1].name',
      'invalid_value static_resources.clusters[1].connect_timeout',
      'router_not_last static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]',
      'router_not_last static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]',
      'unknown_cluster ' + rc + '.virtual_hosts[0].routes[0].route.cluster',
      'unknown_field static_resources.listeners[0].bogus_field',
      'unsupported_extension static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]',
    ]);
  });

  it('reports cross-reference, regex, filter order and extension problems together', () => {
    const yaml = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: a
              domains: ["example.com", "*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: missing }
            - name: b
              domains: ["EXAMPLE.com"]
              routes: []
          http_filters:
${ROUTER.slice(1)}
          - name: custom-name
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: y
          route_config:
            virtual_hosts:
            - name: a
              domains: ["*"]
              routes: []
          http_filters:
${ROUTER.slice(1)}
  clusters:
  - { name: c, connect_timeout: 1s }
  - { name: c, connect_timeout: 1s }
`;
    const errors = checkYaml(yaml);
    const found = codes(errors);
    const hcm = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
    for (const expected of [
      `unsupported_extension ${hcm}.http_filters[1]`,
      'duplicate_name static_resources.clusters[1].name',
      'duplicate_name static_resources.listeners[1].name',
      'duplicate_name static_resources.listeners[1].address',
    ]) {
      assert.ok(found.includes(expected), `missing "${expected}" in:\n${found.join('\n')}`);
    }
    assert.match(errors.find((e) => e.code === 'unsupported_extension')!.message, /unsupported extension envoy\.filters\.http\.lua/);
  });

  it('rejects a route naming an unknown cluster, a domain claimed twice and the router not last', () => {
    const yaml = simpleBootstrap({
      routes: '- match: { prefix: "/" }\n  route: { cluster: nowhere }',
      clusters: staticCluster('a', 1),
      routeConfigExtra: '',
      domains: '["a.com", "A.com"]',
    });
    const found = codes(checkYaml(yaml));
    const rc = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config';
    assert.ok(found.includes(`unknown_cluster ${rc}.virtual_hosts[0].routes[0].route.cluster`), found.join('\n'));
    assert.ok(found.includes(`duplicate_domain ${rc}.virtual_hosts[0].domains[1]`), found.join('\n'));

    const noRouter = yaml.replace('envoy.extensions.filters.http.router.v3.Router', 'envoy.extensions.filters.http.buffer.v3.Buffer');
    const errors = checkYaml(noRouter);
    assert.ok(errors.some((e) => e.code === 'unsupported_extension' && /envoy\.filters\.http\.buffer/.test(e.message)));
  });

  it('rejects an invalid regex with its path', () => {
    const yaml = simpleBootstrap({
      routes: '- match: { safe_regex: { regex: "/(?=x)" } }\n  route: { cluster: a }\n- match: { safe_regex: { regex: "/[" } }\n  route: { cluster: a }',
      clusters: staticCluster('a', 1),
    });
    const errors: ConfigError[] = [];
    const { bootstrap, errors: checked } = checkBootstrap(parseDocument(yaml, 't', errors));
    assert.deepEqual(checked, []);
    compileBootstrap(bootstrap, createLogger('off'), errors, EXTENSIONS);
    const regexErrors = errors.filter((e) => e.code === 'invalid_regex');
    assert.equal(regexErrors.length, 2, JSON.stringify(errors));
    assert.match(regexErrors[0]!.path, /routes\[0\]\.match\.safe_regex\.regex$/);
    assert.match(regexErrors[1]!.path, /routes\[1\]\.match\.safe_regex\.regex$/);
  });

  it('compiles a bootstrap that has other problems too, so that one pass reports them all, each once', () => {
    const yaml = simpleBootstrap({
      routes: '- match: { safe_regex: { regex: "/(a)\\\\1" } }\n  route: { cluster: nowhere }',
      clusters: staticCluster('a', 1),
      httpFilters: '- name: lua\n  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua }',
    });
    const { bootstrap, errors } = checkBootstrap(parseDocument(yaml, 't', []));
    findCompileProblems(bootstrap, createLogger('off'), errors, EXTENSIONS);
    const hcm = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
    assert.deepEqual(codes(errors), [
      `unsupported_extension ${hcm}.http_filters[0]`,
      `unknown_cluster ${hcm}.route_config.virtual_hosts[0].routes[0].route.cluster`,
      // Compiling the filter chain says the Lua filter is unsupported again: that is left out.
      `invalid_regex ${hcm}.route_config.virtual_hosts[0].routes[0].match.safe_regex.regex`,
    ]);
  });

  it('refuses fields it does not implement, naming them', () => {
    const yaml = simpleBootstrap({
      routes: '- match: { prefix: "/" }\n  route: { cluster: a, retry_policy: { retry_on: 5xx, rate_limited_retry_back_off: { reset_headers: [{ name: retry-after }] } } }',
      clusters: staticCluster('a', 1),
    });
    const errors = checkYaml(yaml);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'unsupported_field');
    assert.match(errors[0]!.message, /rate_limited_retry_back_off/);
  });

  it('accepts the proto3-JSON spellings Envoy accepts', () => {
    const yaml = `
staticResources:
  clusters:
  - name: a
    type: strict_dns
    lbPolicy: round_robin
    connectTimeout: { seconds: 0, nanos: 250000000 }
    loadAssignment:
      clusterName: other-name
      endpoints:
        lbEndpoints:
        - endpoint: { address: { socketAddress: { address: 127.0.0.1, portValue: 80 } } }
`;
    assert.deepEqual(checkYaml(yaml), []);
  });

  it('rejects a STATIC cluster with a host name and a LOGICAL_DNS cluster with two endpoints', () => {
    const yaml = `
static_resources:
  clusters:
  - name: s
    load_assignment:
      cluster_name: s
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: example.com, port_value: 80 } } }
  - name: l
    type: LOGICAL_DNS
    load_assignment:
      cluster_name: l
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: a.example, port_value: 80 } } }
        - endpoint: { address: { socket_address: { address: b.example, port_value: 80 } } }
`;
    const found = codes(checkYaml(yaml));
    assert.deepEqual(found, [
      'invalid_value static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address',
      'invalid_value static_resources.clusters[1].load_assignment',
    ]);
  });
});
