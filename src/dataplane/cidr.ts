import { BlockList, isIP } from 'node:net';
import type { envoy } from '../generated/envoy.js';

/** A BlockList of Envoy CidrRanges, built once at configuration time. */
export function cidrBlockList(ranges: readonly envoy.config.core.v3.CidrRange[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) {
    const prefix = range.address_prefix ?? '';
    const type = isIP(prefix) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(prefix, range.prefix_len ?? (type === 'ipv6' ? 128 : 32), type);
  }
  return list;
}

/** Whether an address (IPv4, IPv6 or IPv4-mapped IPv6) lies in the list; false for anything that is not an IP. */
export function inBlockList(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6 && address.startsWith('::ffff:')) return list.check(address.slice(7), 'ipv4');
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}
