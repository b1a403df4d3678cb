/**
 * A configuration problem: a stable code, a message, and the path of the offending field in the document as
 * the user wrote it (`static_resources.listeners[0].filter_chains[0].filters[0].typed_config...`).
 */
export interface ConfigError {
  code: ConfigErrorCode;
  path: string;
  message: string;
}

export type ConfigErrorCode =
  | 'parse_error'
  | 'unknown_field'
  | 'wrong_type'
  | 'invalid_value'
  | 'missing_required'
  | 'oneof_conflict'
  | 'unknown_type'
  | 'unsupported_extension'
  | 'unsupported_field'
  | 'unknown_cluster'
  | 'duplicate_name'
  | 'duplicate_domain'
  | 'invalid_regex'
  | 'router_not_last'
  | 'io_error';

/** Thrown when a configuration is refused; carries every problem found, not only the first. */
export class ConfigValidationError extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(formatConfigErrors(errors));
    this.name = 'ConfigValidationError';
  }
}

export function formatConfigErrors(errors: readonly ConfigError[]): string {
  return errors.map((e) => `${e.path || '(root)'}: ${e.message} [${e.code}]`).join('\n');
}

/** Appends `.field` or `[i]` to a path. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}
