import { type BlockList, isIP } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import { cidrBlockList } from '../cidr.js';

type InternalAddressConfig =
  envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig;

/**
 * Which client addresses count as internal (`x-envoy-internal`, edge sanitising): the configured CIDR ranges,
 * or by default the RFC 1918, loopback and unique-local ranges.
 */
export function compileInternalAddresses(config: InternalAddressConfig | undefined): BlockList {
  const ranges = config?.cidr_ranges;
  if (ranges !== undefined && ranges.length > 0) return cidrBlockList(ranges);
  return cidrBlockList(DEFAULT_INTERNAL_RANGES);
}

const DEFAULT_INTERNAL_RANGES = [
  { address_prefix: '10.0.0.0', prefix_len: 8 },
  { address_prefix: '172.16.0.0', prefix_len: 12 },
  { address_prefix: '192.168.0.0', prefix_len: 16 },
  { address_prefix: '127.0.0.0', prefix_len: 8 },
  { address_prefix: 'fc00::', prefix_len: 7 },
  { address_prefix: '::1', prefix_len: 128 },
];

/** Strips the `::ffff:` prefix Node gives IPv4 peers on dual-stack sockets. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The trusted client address from `x-forwarded-for`, counting `trustedHops` entries from the right (Envoy's
 * `xff_num_trusted_hops`); undefined when the header has too few valid entries.
 */
export function clientAddressFromXff(xff: string | undefined, trustedHops: number): string | undefined {
  if (xff === undefined || xff === '') return undefined;
  const entries = xff.split(',');
  const index = entries.length - 1 - trustedHops;
  if (index < 0) return undefined;
  const candidate = entries[index]!.trim();
  return isIP(candidate) !== 0 ? candidate : undefined;
}
