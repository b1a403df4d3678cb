/**
 * Envoy API messages and fields newer than the copy of the API that generated/envoy-schema.json is generated
 * from (the data-plane-api that ships in @grpc/grpc-js-xds), written here by hand from Envoy's protos and merged
 * into the schema when it loads, so that a regeneration keeps them. Remove an entry once the generated schema has it.
 */
import type { FieldDescriptor, MessageDescriptor } from './schema.js';

const string = (rules?: FieldDescriptor['rules']): FieldDescriptor => ({ kind: 'scalar', type: 'string', ...(rules ? { rules } : {}) });
const message = (type: string, repeated = false): FieldDescriptor => ({ kind: 'message', type, ...(repeated ? { repeated: true } : {}) });
const API_KEY = 'envoy.extensions.filters.http.api_key_auth.v3';

/** Whole messages missing from the generated schema. */
export const SUPPLEMENTARY_MESSAGES: Record<string, MessageDescriptor> = {
  // envoy/extensions/filters/http/api_key_auth/v3/api_key_auth.proto (Envoy 1.32)
  [`${API_KEY}.ApiKeyAuth`]: {
    fields: { credentials: message(`${API_KEY}.Credential`, true), key_sources: message(`${API_KEY}.KeySource`, true), forwarding: message(`${API_KEY}.Forwarding`) },
  },
  [`${API_KEY}.ApiKeyAuthPerRoute`]: {
    fields: {
      credentials: message(`${API_KEY}.Credential`, true),
      key_sources: message(`${API_KEY}.KeySource`, true),
      allowed_clients: { kind: 'scalar', type: 'string', repeated: true },
      forwarding: message(`${API_KEY}.Forwarding`),
    },
  },
  [`${API_KEY}.Credential`]: { fields: { key: string({ minLen: 1 }), client: string({ minLen: 1 }) } },
  // `header` and `cookie` are HTTP_HEADER_NAME with ignore_empty in Envoy; the filter checks them when set.
  [`${API_KEY}.KeySource`]: { fields: { header: string({ maxLen: 1024 }), query: string({ maxLen: 1024 }), cookie: string({ maxLen: 1024 }) } },
  [`${API_KEY}.Forwarding`]: { fields: { header: string({ maxLen: 1024 }), hide_credentials: { kind: 'scalar', type: 'bool' } } },
  // RateLimit.Action.QueryParameters (envoy/config/route/v3/route_components.proto, Envoy 1.31)
  'envoy.config.route.v3.RateLimit.Action.QueryParameters': {
    fields: { query_parameter_name: string({ minLen: 1 }), descriptor_key: string({ minLen: 1 }), skip_if_absent: { kind: 'scalar', type: 'bool' } },
  },
};

/** Fields missing from messages the generated schema has. */
export const SUPPLEMENTARY_FIELDS: Record<string, Record<string, FieldDescriptor>> = {
  'envoy.config.route.v3.RateLimit.Action': {
    query_parameters: { kind: 'message', type: 'envoy.config.route.v3.RateLimit.Action.QueryParameters', oneof: 'action_specifier' },
  },
};
/** TypeScript types of the decoded messages above (proto field names), as src/generated/envoy.ts would have them. */
export declare namespace api_key_auth {
  export interface ApiKeyAuth {
    credentials?: Credential[];
    key_sources?: KeySource[];
    forwarding?: Forwarding;
  }
  export interface ApiKeyAuthPerRoute {
    credentials?: Credential[];
    key_sources?: KeySource[];
    allowed_clients?: string[];
    forwarding?: Forwarding;
  }
  export interface Credential {
    key?: string;
    client?: string;
  }
  export interface KeySource {
    header?: string;
    query?: string;
    cookie?: string;
  }
  export interface Forwarding {
    header?: string;
    hide_credentials?: boolean;
  }
}
