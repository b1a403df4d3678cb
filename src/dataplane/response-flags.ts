/**
 * Envoy's response flags (%RESPONSE_FLAGS%), as a bit set. The table order is the order Envoy prints them in.
 */
export const RESPONSE_FLAGS = [
  ['LH', 'FailedLocalHealthCheck'],
  ['UH', 'NoHealthyUpstream'],
  ['UT', 'UpstreamRequestTimeout'],
  ['LR', 'LocalReset'],
  ['UR', 'UpstreamRemoteReset'],
  ['UF', 'UpstreamConnectionFailure'],
  ['UC', 'UpstreamConnectionTermination'],
  ['UO', 'UpstreamOverflow'],
  ['NR', 'NoRouteFound'],
  ['DI', 'DelayInjected'],
  ['FI', 'FaultInjected'],
  ['RL', 'RateLimited'],
  ['UAEX', 'UnauthorizedExternalService'],
  ['RLSE', 'RateLimitServiceError'],
  ['DC', 'DownstreamConnectionTermination'],
  ['URX', 'UpstreamRetryLimitExceeded'],
  ['SI', 'StreamIdleTimeout'],
  ['IH', 'InvalidEnvoyRequestHeaders'],
  ['DPE', 'DownstreamProtocolError'],
  ['UMSDR', 'UpstreamMaxStreamDurationReached'],
  ['RFCF', 'ResponseFromCacheFilter'],
  ['NFCF', 'NoFilterConfigFound'],
  ['DT', 'DurationTimeout'],
  ['UPE', 'UpstreamProtocolError'],
  ['NC', 'NoClusterFound'],
  ['OM', 'OverloadManagerTerminated'],
  ['DF', 'DnsResolutionFailed'],
  ['DO', 'DropOverload'],
] as const;

export type ResponseFlagName = (typeof RESPONSE_FLAGS)[number][0];

/** Bit for each short flag name: `ResponseFlag.UH`, ... */
export const ResponseFlag = Object.fromEntries(RESPONSE_FLAGS.map(([short], i) => [short, 1 << i])) as Record<
  ResponseFlagName,
  number
>;

/** `UH,UF` style rendering, `-` when no flag is set. */
export function formatResponseFlags(flags: number, long = false): string {
  if (flags === 0) return '-';
  let out = '';
  for (let i = 0; i < RESPONSE_FLAGS.length; i++) {
    if (flags & (1 << i)) out += (out ? ',' : '') + RESPONSE_FLAGS[i]![long ? 1 : 0];
  }
  return out;
}

/** Parses a short flag name as written in access log filters; undefined when unknown. */
export function responseFlagByName(name: string): number | undefined {
  const i = RESPONSE_FLAGS.findIndex(([short]) => short === name);
  return i < 0 ? undefined : 1 << i;
}
