/** What one active health check of one host concluded, and how a kind of check (HTTP, TCP) is run. */

export const ProbeOutcome = {
  HEALTHY: 0,
  /** The host answered, wrongly (an unexpected status): it is marked unhealthy at once, whatever the threshold. */
  ACTIVE_FAILURE: 1,
  /** Connect failure, reset, garbage: counts towards `unhealthy_threshold`. */
  NETWORK_FAILURE: 2,
} as const;
export type ProbeOutcomeKind = (typeof ProbeOutcome)[keyof typeof ProbeOutcome];

export interface ProbeResult {
  outcome: ProbeOutcomeKind;
  /** The response carried `x-envoy-immediate-health-check-fail`. */
  immediateFail: boolean;
}

/** Where a check goes: the host's address and port unless its `health_check_config` says otherwise. */
export interface ProbeTarget {
  address: string;
  port: number;
  /** The Host header of HTTP checks. */
  authority: string;
}

/** One host's checks of one kind, with the connection it keeps between checks (`reuse_connection`). */
export interface HealthProbe {
  /** Runs one check; `done` is called once, unless `abort()` comes first. */
  check(target: ProbeTarget, done: (result: ProbeResult) => void): void;
  /** Gives up the check in flight (timeout) and closes its connection. */
  abort(): void;
  /** Closes the kept connection; the probe is not used again. */
  close(): void;
}

export const HEALTHY: ProbeResult = { outcome: ProbeOutcome.HEALTHY, immediateFail: false };
export const NETWORK_FAILURE: ProbeResult = { outcome: ProbeOutcome.NETWORK_FAILURE, immediateFail: false };
