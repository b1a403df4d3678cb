import type { AnyMessage } from '../generated/envoy.js';
import { type ConfigError, childPath } from './errors.js';
import { extensionName, isSupportedExtension, typeNameFromUrl } from './extensions.js';
import { type FieldDescriptor, getMessageDescriptor } from './proto/schema.js';

/**
 * The fields Portico implements, per message type. A field that is set but not listed here is refused with
 * `unsupported_field`, and an `Any` whose type is not a supported extension with `unsupported_extension`:
 * configuration is never half-applied. `'*'` marks messages whose every field is implemented (or purely
 * descriptive). Message types missing from this table accept no fields at all.
 */
export const SUPPORTED_FIELDS: Readonly<Record<string, readonly string[] | '*'>> = {
  // Bootstrap
  'envoy.config.bootstrap.v3.Bootstrap': ['node', 'static_resources', 'dynamic_resources', 'admin', 'layered_runtime', 'stats_flush_interval'],
  'envoy.config.bootstrap.v3.Bootstrap.StaticResources': ['listeners', 'clusters'],
  // xDS (src/xds/client.ts): listeners and clusters from a control plane or from files.
  'envoy.config.bootstrap.v3.Bootstrap.DynamicResources': ['lds_config', 'cds_config', 'ads_config'],
  'envoy.config.core.v3.ConfigSource': ['path', 'path_config_source', 'api_config_source', 'ads', 'self', 'initial_fetch_timeout', 'resource_api_version'],
  'envoy.config.core.v3.ApiConfigSource': ['api_type', 'transport_api_version', 'grpc_services', 'set_node_on_first_message_only'],
  'envoy.config.core.v3.PathConfigSource': ['path', 'watched_directory'],
  'envoy.config.core.v3.WatchedDirectory': ['path'],
  'envoy.config.core.v3.AggregatedConfigSource': '*',
  'envoy.config.core.v3.SelfConfigSource': '*',
  'envoy.config.bootstrap.v3.Admin': ['address'],
  'envoy.config.bootstrap.v3.LayeredRuntime': ['layers'],
  'envoy.config.bootstrap.v3.RuntimeLayer': ['name', 'static_layer', 'disk_layer', 'admin_layer'],
  'envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer': ['symlink_root', 'subdirectory'],
  'envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer': '*',
  'envoy.config.core.v3.Node': '*',
  'envoy.config.core.v3.Locality': '*',
  'envoy.config.core.v3.Metadata': '*',
  'envoy.config.core.v3.BuildVersion': '*',
  'envoy.type.v3.SemanticVersion': '*',
  'envoy.config.core.v3.Extension': '*',
  'envoy.config.core.v3.Address': ['socket_address'],
  'envoy.config.core.v3.SocketAddress': ['protocol', 'address', 'port_value', 'ipv4_compat'],
  'envoy.config.core.v3.CidrRange': '*',
  'envoy.config.core.v3.DataSource': ['filename', 'inline_string', 'inline_bytes', 'environment_variable'],
  'envoy.config.core.v3.TransportSocket': ['name', 'typed_config'],
  'envoy.config.core.v3.RuntimeFractionalPercent': ['default_value', 'runtime_key'],
  'envoy.type.v3.FractionalPercent': '*',
  'envoy.type.v3.Int64Range': '*',
  'envoy.config.core.v3.GrpcService': ['envoy_grpc', 'google_grpc', 'timeout', 'initial_metadata'],
  'envoy.config.core.v3.GrpcService.EnvoyGrpc': ['cluster_name', 'authority'],
  'envoy.config.core.v3.GrpcService.GoogleGrpc': ['target_uri', 'channel_credentials', 'stat_prefix'],
  'envoy.config.core.v3.GrpcService.GoogleGrpc.ChannelCredentials': ['ssl_credentials'],
  'envoy.config.core.v3.GrpcService.GoogleGrpc.SslCredentials': '*',
  'envoy.config.core.v3.HeaderValueOption': ['header', 'append', 'append_action', 'keep_empty_value'],
  'envoy.config.core.v3.HeaderValue': ['key', 'value', 'raw_value'],
  'envoy.config.core.v3.HttpProtocolOptions': [
    'idle_timeout',
    'max_headers_count',
    'max_requests_per_connection',
    'headers_with_underscores_action',
  ],
  'envoy.config.core.v3.Http1ProtocolOptions': ['accept_http_10', 'default_host_for_http_10', 'enable_trailers'],
  // Clusters and the connection manager (whose connection_keepalive validate.ts refuses).
  'envoy.config.core.v3.Http2ProtocolOptions': [
    'max_concurrent_streams',
    'initial_stream_window_size',
    'initial_connection_window_size',
    'connection_keepalive',
  ],
  // interval_jitter and connection_idle_interval are refused: PINGs go at the interval exactly.
  'envoy.config.core.v3.KeepaliveSettings': ['interval', 'timeout'],

  // Listeners
  'envoy.config.listener.v3.Listener': [
    'name',
    'address',
    'filter_chains',
    'default_filter_chain',
    'access_log',
    'stat_prefix',
    'per_connection_buffer_limit_bytes',
    'traffic_direction',
    'listener_filters',
    'listener_filters_timeout',
    'continue_on_listener_filters_timeout',
  ],
  // Listener filters (src/extensions/filters/listener/registry.ts); the TLS inspector's options are not supported.
  'envoy.config.listener.v3.ListenerFilter': ['name', 'typed_config'],
  'envoy.extensions.filters.listener.http_inspector.v3.HttpInspector': '*',
  'envoy.config.listener.v3.FilterChain': ['filter_chain_match', 'filters', 'transport_socket', 'name'],
  'envoy.config.listener.v3.FilterChainMatch': [
    'destination_port',
    'prefix_ranges',
    'server_names',
    'transport_protocol',
    'application_protocols',
    'direct_source_prefix_ranges',
    'source_type',
    'source_prefix_ranges',
    'source_ports',
  ],
  'envoy.config.listener.v3.Filter': ['name', 'typed_config'],

  // TLS termination
  'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext': ['common_tls_context', 'require_client_certificate'],
  'envoy.extensions.transport_sockets.tls.v3.CommonTlsContext': [
    'tls_params',
    'tls_certificates',
    'validation_context',
    'alpn_protocols',
  ],
  'envoy.extensions.transport_sockets.tls.v3.TlsParameters': [
    'tls_minimum_protocol_version',
    'tls_maximum_protocol_version',
    'cipher_suites',
    'ecdh_curves',
  ],
  'envoy.extensions.transport_sockets.tls.v3.TlsCertificate': ['certificate_chain', 'private_key', 'password'],
  'envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext': ['trusted_ca', 'match_typed_subject_alt_names'],
  'envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher': ['san_type', 'matcher'],
  'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext': ['common_tls_context', 'sni'],

  // TCP proxy
  'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy': [
    'stat_prefix',
    'cluster',
    'weighted_clusters',
    'idle_timeout',
    'access_log',
    'max_connect_attempts',
  ],
  'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster': ['clusters'],
  'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight': ['name', 'weight'],

  // HTTP connection manager
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager': [
    'codec_type',
    'http2_protocol_options',
    'stat_prefix',
    'route_config',
    'http_filters',
    'use_remote_address',
    'xff_num_trusted_hops',
    'skip_xff_append',
    'via',
    'internal_address_config',
    'generate_request_id',
    'preserve_external_request_id',
    'always_set_request_id_in_response',
    'server_name',
    'server_header_transformation',
    'stream_idle_timeout',
    'request_timeout',
    'request_headers_timeout',
    'drain_timeout',
    'max_request_headers_kb',
    'common_http_protocol_options',
    'http_protocol_options',
    'normalize_path',
    'merge_slashes',
    'path_with_escaped_slashes_action',
    'strip_matching_host_port',
    'strip_any_host_port',
    'local_reply_config',
    'forward_client_cert_details',
    'append_x_forwarded_port',
    'access_log',
    'upgrade_configs',
  ],
  // filters (a filter chain of its own for upgrades) is refused.
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig': ['upgrade_type', 'enabled'],
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig': [
    'unix_sockets',
    'cidr_ranges',
  ],
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter': ['name', 'typed_config', 'disabled'],
  'envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig': ['mappers', 'body_format'],
  'envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper': [
    'filter',
    'status_code',
    'body',
    'body_format_override',
    'headers_to_add',
  ],
  'envoy.config.core.v3.SubstitutionFormatString': [
    'text_format',
    'text_format_source',
    'json_format',
    'omit_empty_values',
    'content_type',
    'json_format_options',
  ],
  'envoy.config.core.v3.JsonFormatOptions': '*',
  'envoy.config.accesslog.v3.AccessLog': ['name', 'filter', 'typed_config'],
  'envoy.extensions.access_loggers.file.v3.FileAccessLog': ['path', 'log_format', 'format', 'json_format', 'typed_json_format'],
  'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog': ['log_format'],
  'envoy.extensions.access_loggers.stream.v3.StderrAccessLog': ['log_format'],
  'envoy.config.accesslog.v3.AccessLogFilter': [
    'status_code_filter',
    'duration_filter',
    'not_health_check_filter',
    'traceable_filter',
    'runtime_filter',
    'and_filter',
    'or_filter',
    'header_filter',
    'response_flag_filter',
  ],
  'envoy.config.accesslog.v3.StatusCodeFilter': '*',
  'envoy.config.accesslog.v3.DurationFilter': '*',
  'envoy.config.accesslog.v3.ComparisonFilter': '*',
  'envoy.config.core.v3.RuntimeUInt32': '*',
  'envoy.config.accesslog.v3.NotHealthCheckFilter': '*',
  'envoy.config.accesslog.v3.TraceableFilter': '*',
  'envoy.config.accesslog.v3.RuntimeFilter': '*',
  'envoy.config.accesslog.v3.AndFilter': '*',
  'envoy.config.accesslog.v3.OrFilter': '*',
  'envoy.config.accesslog.v3.HeaderFilter': '*',
  'envoy.config.accesslog.v3.ResponseFlagFilter': '*',
  'envoy.extensions.filters.http.router.v3.Router': ['dynamic_stats', 'start_child_span', 'suppress_envoy_headers', 'respect_expected_rq_timeout'],
  'envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig': [],
  'envoy.extensions.filters.http.cors.v3.Cors': [],
  'envoy.extensions.filters.http.grpc_web.v3.GrpcWeb': [],
  // emit_filter_state and enable_upstream_stats are refused.
  'envoy.extensions.filters.http.ratelimit.v3.RateLimit': [
    'domain',
    'stage',
    'request_type',
    'timeout',
    'failure_mode_deny',
    'rate_limited_as_resource_exhausted',
    'rate_limit_service',
    'enable_x_ratelimit_headers',
    'disable_x_envoy_ratelimited_header',
    'rate_limited_status',
    'response_headers_to_add',
    'status_on_error',
    'stat_prefix',
  ],
  // local_cluster_rate_limit (a limit shared by a cluster's gateways) is refused.
  'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit': [
    'stat_prefix',
    'status',
    'token_bucket',
    'filter_enabled',
    'filter_enforced',
    'request_headers_to_add_when_not_enforced',
    'response_headers_to_add',
    'descriptors',
    'stage',
    'local_rate_limit_per_downstream_connection',
    'enable_x_ratelimit_headers',
    'vh_rate_limits',
    'always_consume_default_token_bucket',
    'rate_limited_as_resource_exhausted',
  ],
  'envoy.type.v3.TokenBucket': '*',
  'envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor': '*',
  'envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry': '*',
  // jwt_authn: filter_state_rules, subjects, normalize_payload_in_metadata,
  // failed_status_in_metadata, clear_route_cache, retry_policy and strip_failure_response
  // are refused.
  'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication': ['providers', 'rules', 'requirement_map', 'bypass_cors_preflight'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtProvider': [
    'issuer',
    'audiences',
    'require_expiration',
    'max_lifetime',
    'remote_jwks',
    'local_jwks',
    'forward',
    'from_headers',
    'from_params',
    'from_cookies',
    'forward_payload_header',
    'pad_forward_payload_header',
    'payload_in_metadata',
    'header_in_metadata',
    'clock_skew_seconds',
    'claim_to_headers',
    'jwt_cache_config',
  ],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtCacheConfig': ['jwt_cache_size'],
  'envoy.extensions.filters.http.jwt_authn.v3.RemoteJwks': ['http_uri', 'cache_duration', 'async_fetch'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwksAsyncFetch': ['fast_listener', 'failed_refetch_duration'],
  'envoy.config.core.v3.HttpUri': ['uri', 'cluster', 'timeout'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtHeader': ['name', 'value_prefix'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtClaimToHeader': ['header_name', 'claim_name'],
  'envoy.extensions.filters.http.jwt_authn.v3.RequirementRule': ['match', 'requires', 'requirement_name'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtRequirement': [
    'provider_name',
    'provider_and_audiences',
    'requires_any',
    'requires_all',
    'allow_missing_or_failed',
    'allow_missing',
  ],
  'envoy.extensions.filters.http.jwt_authn.v3.ProviderWithAudiences': ['provider_name', 'audiences'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtRequirementOrList': ['requirements'],
  'envoy.extensions.filters.http.jwt_authn.v3.JwtRequirementAndList': ['requirements'],
  'envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig': ['disabled', 'requirement_name'],
  // ext_authz: filter_enabled, deny_at_disable, validate_mutations and the rest are refused.
  'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz': [
    'grpc_service',
    'http_service',
    'transport_api_version',
    'failure_mode_allow',
    'failure_mode_allow_header_add',
    'with_request_body',
    'clear_route_cache',
    'status_on_error',
    'metadata_context_namespaces',
    'include_peer_certificate',
    'stat_prefix',
    'allowed_headers',
  ],
  'envoy.extensions.filters.http.ext_authz.v3.HttpService': ['server_uri', 'path_prefix', 'authorization_request', 'authorization_response'],
  'envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest': ['allowed_headers', 'headers_to_add'],
  'envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse': '*',
  'envoy.extensions.filters.http.ext_authz.v3.BufferSettings': '*',
  'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute': ['disabled', 'check_settings'],
  'envoy.extensions.filters.http.ext_authz.v3.CheckSettings': ['context_extensions', 'disable_request_body_buffering'],
  'envoy.type.matcher.v3.ListStringMatcher': ['patterns'],
  'envoy.extensions.filters.http.basic_auth.v3.BasicAuth': ['users', 'forward_username_header'],
  'envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute': ['users'],
  'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth': ['credentials', 'key_sources', 'forwarding'],
  'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute': ['credentials', 'key_sources', 'allowed_clients', 'forwarding'],
  'envoy.extensions.filters.http.api_key_auth.v3.Credential': ['key', 'client'],
  'envoy.extensions.filters.http.api_key_auth.v3.KeySource': ['header', 'query', 'cookie'],
  'envoy.extensions.filters.http.api_key_auth.v3.Forwarding': ['header', 'hide_credentials'],
  'envoy.config.ratelimit.v3.RateLimitServiceConfig': ['grpc_service', 'transport_api_version'],
  'envoy.type.v3.HttpStatus': ['code'],
  'envoy.extensions.filters.http.grpc_stats.v3.FilterConfig': ['stats_for_all_methods', 'individual_method_stats_allowlist', 'replace_dots_in_grpc_service_name'],
  'envoy.config.core.v3.GrpcMethodList': ['services'],
  'envoy.config.core.v3.GrpcMethodList.Service': ['name', 'method_names'],
  'envoy.extensions.filters.http.cors.v3.CorsPolicy': '*',
  'envoy.config.route.v3.FilterConfig': ['config', 'disabled'],
  // The deprecated `cors` of virtual hosts and route actions: the same fields.
  'envoy.config.route.v3.CorsPolicy': '*',
  // RBAC (HTTP and network): CEL conditions, the xDS matcher tree, per-rule stats and audit logging are refused.
  'envoy.extensions.filters.http.rbac.v3.RBAC': ['rules', 'rules_stat_prefix', 'shadow_rules', 'shadow_rules_stat_prefix'],
  'envoy.extensions.filters.http.rbac.v3.RBACPerRoute': ['rbac'],
  'envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit': ['stat_prefix', 'token_bucket', 'runtime_enabled'],
  'envoy.config.core.v3.RuntimeFeatureFlag': ['default_value', 'runtime_key'],
  'envoy.extensions.filters.network.rbac.v3.RBAC': ['stat_prefix', 'rules', 'shadow_rules', 'shadow_rules_stat_prefix', 'enforcement_type'],
  'envoy.config.rbac.v3.RBAC': ['action', 'policies'],
  'envoy.config.rbac.v3.Policy': ['permissions', 'principals'],
  'envoy.config.rbac.v3.Permission': [
    'any',
    'header',
    'url_path',
    'destination_ip',
    'destination_port',
    'destination_port_range',
    'and_rules',
    'or_rules',
    'not_rule',
    'requested_server_name',
    'metadata',
  ],
  'envoy.config.rbac.v3.Permission.Set': ['rules'],
  'envoy.config.rbac.v3.Principal': [
    'any',
    'authenticated',
    'direct_remote_ip',
    'source_ip',
    'remote_ip',
    'header',
    'url_path',
    'metadata',
    'and_ids',
    'or_ids',
    'not_id',
  ],
  'envoy.config.rbac.v3.Principal.Set': ['ids'],
  'envoy.config.rbac.v3.Principal.Authenticated': ['principal_name'],
  'envoy.type.v3.Int32Range': '*',
  'envoy.type.v3.DoubleRange': '*',
  'envoy.type.matcher.v3.PathMatcher': ['path'],
  'envoy.type.matcher.v3.MetadataMatcher': ['filter', 'path', 'value', 'invert'],
  'envoy.type.matcher.v3.MetadataMatcher.PathSegment': ['key'],
  'envoy.type.matcher.v3.ValueMatcher': ['null_match', 'double_match', 'string_match', 'bool_match', 'present_match', 'list_match', 'or_match'],
  'envoy.type.matcher.v3.ValueMatcher.NullMatch': '*',
  'envoy.type.matcher.v3.DoubleMatcher': ['range', 'exact'],
  'envoy.type.matcher.v3.ListMatcher': ['one_of'],
  'envoy.type.matcher.v3.OrMatcher': ['value_matchers'],

  // Routing
  'envoy.config.route.v3.RouteConfiguration': [
    'name',
    'virtual_hosts',
    'internal_only_headers',
    'request_headers_to_add',
    'request_headers_to_remove',
    'response_headers_to_add',
    'response_headers_to_remove',
    'most_specific_header_mutations_wins',
    'validate_clusters',
    'max_direct_response_body_size_bytes',
    'ignore_port_in_host_matching',
    'request_mirror_policies',
    'typed_per_filter_config',
  ],
  'envoy.config.route.v3.VirtualHost': [
    'name',
    'domains',
    'routes',
    'require_tls',
    'request_headers_to_add',
    'request_headers_to_remove',
    'response_headers_to_add',
    'response_headers_to_remove',
    'include_request_attempt_count',
    'include_attempt_count_in_response',
    'retry_policy',
    'per_request_buffer_limit_bytes',
    'request_mirror_policies',
    'typed_per_filter_config',
    'cors',
    'rate_limits',
  ],
  'envoy.config.route.v3.Route': [
    'name',
    'match',
    'route',
    'redirect',
    'direct_response',
    'metadata',
    'request_headers_to_add',
    'request_headers_to_remove',
    'response_headers_to_add',
    'response_headers_to_remove',
    'per_request_buffer_limit_bytes',
    'typed_per_filter_config',
  ],
  'envoy.config.route.v3.RouteMatch': [
    'prefix',
    'path',
    'safe_regex',
    'path_separated_prefix',
    'case_sensitive',
    'runtime_fraction',
    'headers',
    'query_parameters',
    'grpc',
  ],
  'envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions': '*',
  'envoy.config.route.v3.HeaderMatcher': '*',
  'envoy.config.route.v3.QueryParameterMatcher': '*',
  'envoy.type.matcher.v3.StringMatcher': ['exact', 'prefix', 'suffix', 'safe_regex', 'contains', 'ignore_case'],
  'envoy.type.matcher.v3.RegexMatcher': ['google_re2', 'regex'],
  'envoy.type.matcher.v3.RegexMatcher.GoogleRE2': '*',
  'envoy.type.matcher.v3.RegexMatchAndSubstitute': '*',
  'envoy.config.route.v3.RouteAction': [
    'cluster',
    'cluster_header',
    'weighted_clusters',
    'cluster_not_found_response_code',
    'prefix_rewrite',
    'regex_rewrite',
    'host_rewrite_literal',
    'auto_host_rewrite',
    'host_rewrite_header',
    'host_rewrite_path_regex',
    'append_x_forwarded_host',
    'timeout',
    'idle_timeout',
    'hash_policy',
    'retry_policy',
    'priority',
    'request_mirror_policies',
    'cors',
    'upgrade_configs',
    'max_stream_duration',
    'rate_limits',
    'include_vh_rate_limits',
  ],
  // limit (an override of the limit from dynamic metadata) is refused.
  'envoy.config.route.v3.RateLimit': ['stage', 'disable_key', 'actions'],
  // extension (CEL and other descriptor extensions) is refused.
  'envoy.config.route.v3.RateLimit.Action': [
    'source_cluster',
    'destination_cluster',
    'request_headers',
    'remote_address',
    'generic_key',
    'header_value_match',
    'dynamic_metadata',
    'metadata',
    'masked_remote_address',
    'query_parameter_value_match',
    'query_parameters',
  ],
  'envoy.config.route.v3.RateLimit.Action.SourceCluster': '*',
  'envoy.config.route.v3.RateLimit.Action.DestinationCluster': '*',
  'envoy.config.route.v3.RateLimit.Action.RequestHeaders': '*',
  'envoy.config.route.v3.RateLimit.Action.RemoteAddress': '*',
  'envoy.config.route.v3.RateLimit.Action.GenericKey': '*',
  'envoy.config.route.v3.RateLimit.Action.HeaderValueMatch': '*',
  'envoy.config.route.v3.RateLimit.Action.DynamicMetaData': '*',
  'envoy.config.route.v3.RateLimit.Action.MetaData': '*',
  'envoy.config.route.v3.RateLimit.Action.MaskedRemoteAddress': '*',
  'envoy.config.route.v3.RateLimit.Action.QueryParameterValueMatch': '*',
  'envoy.config.route.v3.RateLimit.Action.QueryParameters': '*',
  'envoy.type.metadata.v3.MetadataKey': '*',
  'envoy.type.metadata.v3.MetadataKey.PathSegment': '*',
  // max_stream_duration itself (a limit on the whole stream) is refused.
  'envoy.config.route.v3.RouteAction.MaxStreamDuration': ['grpc_timeout_header_max', 'grpc_timeout_header_offset'],
  // connect_config (CONNECT terminated as raw TCP) is refused.
  'envoy.config.route.v3.RouteAction.UpgradeConfig': ['upgrade_type', 'enabled'],
  // trace_sampled only matters to tracing, which Portico does not do: no copy is traced either way.
  'envoy.config.route.v3.RouteAction.RequestMirrorPolicy': [
    'cluster',
    'cluster_header',
    'runtime_fraction',
    'trace_sampled',
    'disable_shadow_host_suffix_append',
  ],
  // retry_priority, rate_limited_retry_back_off and retry_options_predicates are refused.
  'envoy.config.route.v3.RetryPolicy': [
    'retry_on',
    'num_retries',
    'per_try_timeout',
    'per_try_idle_timeout',
    'retry_host_predicate',
    'host_selection_retry_max_attempts',
    'retriable_status_codes',
    'retry_back_off',
    'retriable_headers',
    'retriable_request_headers',
  ],
  'envoy.config.route.v3.RetryPolicy.RetryBackOff': '*',
  'envoy.config.route.v3.RetryPolicy.RetryHostPredicate': ['name', 'typed_config'],
  'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate': '*',
  // filter_state is refused: nothing in Portico puts hashable objects in filter state.
  'envoy.config.route.v3.RouteAction.HashPolicy': ['header', 'cookie', 'connection_properties', 'query_parameter', 'terminal'],
  'envoy.config.route.v3.RouteAction.HashPolicy.Header': ['header_name', 'regex_rewrite'],
  'envoy.config.route.v3.RouteAction.HashPolicy.Cookie': ['name', 'ttl', 'path', 'attributes'],
  'envoy.config.route.v3.RouteAction.HashPolicy.CookieAttribute': ['name', 'value'],
  'envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties': ['source_ip'],
  'envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter': ['name'],
  'envoy.config.route.v3.WeightedCluster': ['clusters', 'total_weight', 'header_name'],
  'envoy.config.route.v3.WeightedCluster.ClusterWeight': [
    'name',
    'cluster_header',
    'weight',
    'request_headers_to_add',
    'request_headers_to_remove',
    'response_headers_to_add',
    'response_headers_to_remove',
    'host_rewrite_literal',
  ],
  'envoy.config.route.v3.RedirectAction': '*',
  'envoy.config.route.v3.DirectResponseAction': '*',

  // Clusters
  'envoy.config.cluster.v3.Cluster': [
    'name',
    'alt_stat_name',
    'type',
    'connect_timeout',
    'lb_policy',
    'least_request_lb_config',
    'ring_hash_lb_config',
    'maglev_lb_config',
    'common_lb_config',
    'load_assignment',
    'dns_lookup_family',
    'dns_refresh_rate',
    'typed_extension_protocol_options',
    'common_http_protocol_options',
    'http_protocol_options',
    'http2_protocol_options',
    'max_requests_per_connection',
    'transport_socket',
    'circuit_breakers',
    'health_checks',
    'outlier_detection',
  ],
  'envoy.config.cluster.v3.CircuitBreakers': ['thresholds', 'per_host_thresholds'],
  // max_connection_pools is refused: every host has one pool.
  'envoy.config.cluster.v3.CircuitBreakers.Thresholds': [
    'priority',
    'max_connections',
    'max_pending_requests',
    'max_requests',
    'max_retries',
    'retry_budget',
    'track_remaining',
  ],
  'envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget': '*',
  'envoy.config.cluster.v3.Cluster.CommonLbConfig': ['healthy_panic_threshold', 'locality_weighted_lb_config'],
  'envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig': '*',
  // initial_metadata is refused.
  'envoy.config.core.v3.HealthCheck.GrpcHealthCheck': ['service_name', 'authority'],
  'envoy.config.core.v3.HealthCheck': [
    'timeout',
    'interval',
    'initial_jitter',
    'interval_jitter',
    'interval_jitter_percent',
    'unhealthy_threshold',
    'healthy_threshold',
    'reuse_connection',
    'http_health_check',
    'grpc_health_check',
    'tcp_health_check',
    'no_traffic_interval',
    'no_traffic_healthy_interval',
    'unhealthy_interval',
    'unhealthy_edge_interval',
    'healthy_edge_interval',
  ],
  'envoy.config.core.v3.HealthCheck.HttpHealthCheck': [
    'host',
    'path',
    'request_headers_to_add',
    'request_headers_to_remove',
    'expected_statuses',
    'codec_client_type',
    'method',
  ],
  'envoy.config.core.v3.HealthCheck.TcpHealthCheck': ['send', 'receive'],
  'envoy.config.core.v3.HealthCheck.Payload': '*',
  'envoy.config.cluster.v3.OutlierDetection': [
    'consecutive_5xx',
    'interval',
    'base_ejection_time',
    'max_ejection_percent',
    'enforcing_consecutive_5xx',
    'enforcing_success_rate',
    'success_rate_minimum_hosts',
    'success_rate_request_volume',
    'success_rate_stdev_factor',
    'consecutive_gateway_failure',
    'enforcing_consecutive_gateway_failure',
    'split_external_local_origin_errors',
    'consecutive_local_origin_failure',
    'enforcing_consecutive_local_origin_failure',
    'enforcing_local_origin_success_rate',
    'failure_percentage_threshold',
    'enforcing_failure_percentage',
    'enforcing_failure_percentage_local_origin',
    'failure_percentage_minimum_hosts',
    'failure_percentage_request_volume',
    'max_ejection_time',
    'max_ejection_time_jitter',
    'successful_active_health_check_uneject_host',
    'always_eject_one_host',
  ],
  'envoy.config.cluster.v3.Cluster.LeastRequestLbConfig': ['choice_count', 'active_request_bias'],
  'envoy.config.cluster.v3.Cluster.RingHashLbConfig': ['minimum_ring_size', 'maximum_ring_size', 'hash_function'],
  'envoy.config.cluster.v3.Cluster.MaglevLbConfig': ['table_size'],
  'envoy.config.core.v3.RuntimeDouble': ['default_value', 'runtime_key'],
  'envoy.type.v3.Percent': '*',
  'envoy.config.endpoint.v3.ClusterLoadAssignment': ['cluster_name', 'endpoints', 'policy'],
  'envoy.config.endpoint.v3.ClusterLoadAssignment.Policy': ['overprovisioning_factor'],
  'envoy.config.endpoint.v3.LocalityLbEndpoints': ['locality', 'lb_endpoints', 'load_balancing_weight', 'priority'],
  'envoy.config.endpoint.v3.LbEndpoint': ['endpoint', 'health_status', 'metadata', 'load_balancing_weight'],
  'envoy.config.endpoint.v3.Endpoint': ['address', 'hostname', 'health_check_config'],
  'envoy.config.endpoint.v3.Endpoint.HealthCheckConfig': ['port_value', 'hostname', 'address', 'disable_active_health_check'],
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': [
    'common_http_protocol_options',
    'explicit_http_config',
    'auto_config',
    'use_downstream_protocol_config',
  ],
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig': ['http_protocol_options', 'http2_protocol_options'],
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig': ['http_protocol_options', 'http2_protocol_options'],
  // The downstream is HTTP/1.1 only, so only its HTTP/1.1 options can apply.
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig': ['http_protocol_options'],
};

/** True for message types whose contents are free-form data rather than configuration fields. */
const OPAQUE_TYPES = new Set([
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.Empty',
  'google.protobuf.DoubleValue',
  'google.protobuf.FloatValue',
  'google.protobuf.Int64Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.Int32Value',
  'google.protobuf.UInt32Value',
  'google.protobuf.BoolValue',
  'google.protobuf.StringValue',
  'google.protobuf.BytesValue',
]);

/**
 * Walks a decoded message and reports every field Portico does not implement and every extension it does
 * not support, with paths. Runs once per configuration, never per request.
 */
export function checkSupport(typeName: string, value: unknown, path: string, errors: ConfigError[]): void {
  if (value === undefined || value === null || OPAQUE_TYPES.has(typeName)) return;
  if (typeName === 'google.protobuf.Any') {
    checkExtension(value as AnyMessage, path, errors);
    return;
  }
  const schema = getMessageDescriptor(typeName);
  if (!schema) return;
  const supported = SUPPORTED_FIELDS[typeName];
  const message = value as Record<string, unknown>;
  for (const field in message) {
    const fieldValue = message[field];
    if (fieldValue === undefined) continue;
    const descriptor = schema.fields[field];
    if (!descriptor) continue;
    const fieldPath = childPath(path, field);
    if (supported !== '*' && !supported?.includes(field)) {
      // Name the extensions inside an unsupported field (per-route configs, upstream filters, listener
      // filters): "unsupported extension envoy.filters.http.lua" says more than "field ... is not supported".
      const before = errors.length;
      reportExtensionsWithin(descriptor, fieldValue, fieldPath, field === 'typed_config' ? path : fieldPath, errors);
      if (errors.length === before) {
        errors.push({
          code: 'unsupported_field',
          path: fieldPath,
          message: `field ${field} of ${typeName} is not supported`,
        });
      }
      continue;
    }
    if (descriptor.kind !== 'message') continue;
    // `typed_config` names the extension at the element that holds it, as Envoy's own messages do.
    const reportPath = field === 'typed_config' ? path : fieldPath;
    if (descriptor.mapKey !== undefined) {
      for (const [key, item] of Object.entries(fieldValue as Record<string, unknown>)) {
        checkSupport(descriptor.type, item, `${fieldPath}[${JSON.stringify(key)}]`, errors);
      }
    } else if (descriptor.repeated) {
      (fieldValue as unknown[]).forEach((item, i) => checkSupport(descriptor.type, item, childPath(fieldPath, i), errors));
    } else if (descriptor.type === 'google.protobuf.Any') {
      checkExtension(fieldValue as AnyMessage, reportPath, errors, fieldPath);
    } else {
      checkSupport(descriptor.type, fieldValue, fieldPath, errors);
    }
  }
}

/** Reports every unsupported extension found anywhere under a field, without checking field support. */
function reportExtensionsWithin(
  descriptor: FieldDescriptor,
  value: unknown,
  fieldPath: string,
  reportPath: string,
  errors: ConfigError[],
): void {
  if (descriptor.kind !== 'message' || OPAQUE_TYPES.has(descriptor.type)) return;
  const visit = (item: unknown, itemPath: string, itemReportPath: string): void => {
    if (item === undefined || item === null) return;
    if (descriptor.type === 'google.protobuf.Any') {
      const any = item as AnyMessage;
      const typeName = typeNameFromUrl(any.type_url);
      if (!isSupportedExtension(typeName)) {
        errors.push({ code: 'unsupported_extension', path: itemReportPath, message: `unsupported extension ${extensionName(typeName)} (${typeName})` });
        return;
      }
      walkMessage(typeName, any.value, itemPath);
      return;
    }
    walkMessage(descriptor.type, item, itemPath);
  };
  const walkMessage = (typeName: string, message: unknown, messagePath: string): void => {
    const schema = getMessageDescriptor(typeName);
    if (!schema || message === null || typeof message !== 'object') return;
    for (const [field, fieldValue] of Object.entries(message as Record<string, unknown>)) {
      const child = schema.fields[field];
      if (child === undefined || fieldValue === undefined) continue;
      const fieldPathInMessage = childPath(messagePath, field);
      reportExtensionsWithin(child, fieldValue, fieldPathInMessage, field === 'typed_config' ? messagePath : fieldPathInMessage, errors);
    }
  };
  if (descriptor.mapKey !== undefined) {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      const itemPath = `${fieldPath}[${JSON.stringify(key)}]`;
      visit(item, itemPath, itemPath);
    }
  } else if (descriptor.repeated) {
    (value as unknown[]).forEach((item, i) => visit(item, childPath(fieldPath, i), childPath(fieldPath, i)));
  } else {
    visit(value, fieldPath, reportPath);
  }
}

function checkExtension(any: AnyMessage, reportPath: string, errors: ConfigError[], valuePath = reportPath): void {
  const typeName = typeNameFromUrl(any.type_url);
  if (!isSupportedExtension(typeName)) {
    errors.push({
      code: 'unsupported_extension',
      path: reportPath,
      message: `unsupported extension ${extensionName(typeName)} (${typeName})`,
    });
    return;
  }
  checkSupport(typeName, any.value, valuePath, errors);
}
