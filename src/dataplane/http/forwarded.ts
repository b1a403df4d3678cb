import { BlockList, isIP } from 'node:net';
import type { envoy } from '../../generated/envoy.js';

type InternalAddressConfig =
  envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig;

/**
 * Which client addresses count as internal (`x-envoy-internal`, edge sanitising): the configured CIDR ranges,
 * or by default the RFC 1918, loopback and unique-local ranges.
 */
export function compileInternalAddresses(config: InternalAddressConfig | undefined): BlockList {
  const list = new BlockList();
  const ranges = config?.cidr_ranges;
  if (ranges !== undefined && ranges.length > 0) {
    for (const range of ranges) {
      const prefix = range.address_prefix ?? '';
      const type = isIP(prefix) === 6 ? 'ipv6' : 'ipv4';
      list.addSubnet(prefix, range.prefix_len ?? (type === 'ipv6' ? 128 : 32), type);
    }
    return list;
  }
  list.addSubnet('10.0.0.0', 8, 'ipv4');
  list.addSubnet('172.16.0.0', 12, 'ipv4');
  list.addSubnet('192.168.0.0', 16, 'ipv4');
  list.addSubnet('127.0.0.0', 8, 'ipv4');
  list.addSubnet('fc00::', 7, 'ipv6');
  list.addAddress('::1', 'ipv6');
  return list;
}

export function isInternal(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6 && address.startsWith('::ffff:')) return list.check(address.slice(7), 'ipv4');
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

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
