import type { envoy } from '../../../generated/envoy.js';
import { getEnumDescriptor } from '../../../config/proto/schema.js';

/**
 * An `envoy.type.v3.HttpStatus` (decoded as its enum name, or a number outside the enum) as a number; `fallback`
 * when unset or below 400, as the filters that take one (rate limits, authorization) treat it.
 */
export function httpStatus(status: envoy.type.v3.HttpStatus | undefined, fallback: number): number {
  const code = status?.code;
  if (code === undefined) return fallback;
  const number = typeof code === 'number' ? code : (getEnumDescriptor('envoy.type.v3.StatusCode')?.[code] ?? fallback);
  return number >= 400 ? number : fallback;
}
