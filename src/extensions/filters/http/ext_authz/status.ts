/** `envoy.type.v3.StatusCode` names (as configs and decoded CheckResponses carry them) to HTTP status codes. */
import { loadEnvoyProto } from '../../../../grpc/envoy-protos.js';

let codes: Record<string, number> | undefined;

/** The HTTP status of a StatusCode given by name or number; undefined for none, `Empty` or an unknown name. */
export function httpStatusCode(code: string | number | undefined): number | undefined {
  if (typeof code === 'number') return code >= 100 && code <= 599 ? code : undefined;
  if (code === undefined) return undefined;
  codes ??= loadEnvoyProto('envoy/type/v3/http_status.proto').lookupEnum('envoy.type.v3.StatusCode').values;
  const value = codes[code];
  return value === undefined || value === 0 ? undefined : value;
}
