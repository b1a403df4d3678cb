import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileFormat, type Formatter } from '../http/header-formatter.js';
import type { StreamInfo } from '../stream-info.js';

type HeaderValueOption = envoy.config.core.v3.HeaderValueOption;
export type HeaderMap = Record<string, string | string[] | number | undefined>;

const enum AppendAction {
  AppendIfExistsOrAdd,
  AddIfAbsent,
  OverwriteIfExistsOrAdd,
  OverwriteIfExists,
}

interface HeaderAddition {
  name: string;
  format: Formatter;
  action: AppendAction;
  keepEmpty: boolean;
}

/** One level's `*_headers_to_add` and `*_headers_to_remove`, compiled. */
export interface HeaderMutation {
  readonly remove: readonly string[];
  readonly add: readonly HeaderAddition[];
}

const ACTIONS: Record<string, AppendAction> = {
  APPEND_IF_EXISTS_OR_ADD: AppendAction.AppendIfExistsOrAdd,
  ADD_IF_ABSENT: AppendAction.AddIfAbsent,
  OVERWRITE_IF_EXISTS_OR_ADD: AppendAction.OverwriteIfExistsOrAdd,
  OVERWRITE_IF_EXISTS: AppendAction.OverwriteIfExists,
};

/** Compiles a level's additions and removals; undefined when the level changes nothing. */
export function compileHeaderMutation(
  add: readonly HeaderValueOption[] | undefined,
  remove: readonly string[] | undefined,
  path: string,
  addField: string,
  removeField: string,
  errors: ConfigError[],
): HeaderMutation | undefined {
  if (!add?.length && !remove?.length) return undefined;
  const additions = (add ?? []).map((option, i): HeaderAddition => {
    const optionPath = `${path}.${addField}[${i}]`;
    const name = (option.header?.key ?? '').toLowerCase();
    checkMutable(name, `${optionPath}.header.key`, errors);
    const raw = option.header?.raw_value;
    const value = option.header?.value ?? (raw ? Buffer.from(raw).toString('latin1') : '');
    let action = ACTIONS[option.append_action ?? 'APPEND_IF_EXISTS_OR_ADD'] ?? AppendAction.AppendIfExistsOrAdd;
    if (option.append !== undefined) {
      // Envoy (HeadersToAddEntry) refuses the deprecated `append` next to a non-default `append_action`.
      if (action !== AppendAction.AppendIfExistsOrAdd) {
        errors.push({
          code: 'invalid_value',
          path: `${optionPath}.append`,
          message: "both append and append_action are set and it's not allowed",
        });
      }
      action = option.append ? AppendAction.AppendIfExistsOrAdd : AppendAction.OverwriteIfExistsOrAdd;
    }
    return {
      name,
      format: compileFormat(value, `${optionPath}.header.value`, errors, { missing: '' }),
      action,
      keepEmpty: option.keep_empty_value ?? false,
    };
  });
  const removals = (remove ?? []).map((name, i) => {
    const lower = name.toLowerCase();
    checkMutable(lower, `${path}.${removeField}[${i}]`, errors);
    return lower;
  });
  return { remove: removals, add: additions };
}

/** The header-mutation fields that routes, virtual hosts, route configurations and weighted clusters share. */
export interface HeaderMutationFields {
  request_headers_to_add?: HeaderValueOption[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: HeaderValueOption[];
  response_headers_to_remove?: string[];
}

/** One configuration level's request and response mutations. */
export interface LevelMutations {
  readonly request: HeaderMutation | undefined;
  readonly response: HeaderMutation | undefined;
}

export function compileLevelMutations(config: HeaderMutationFields, path: string, errors: ConfigError[]): LevelMutations {
  return {
    request: compileHeaderMutation(
      config.request_headers_to_add,
      config.request_headers_to_remove,
      path,
      'request_headers_to_add',
      'request_headers_to_remove',
      errors,
    ),
    response: compileHeaderMutation(
      config.response_headers_to_add,
      config.response_headers_to_remove,
      path,
      'response_headers_to_add',
      'response_headers_to_remove',
      errors,
    ),
  };
}

/** Every level's mutations that apply to one route, in the order they run, resolved at config time. */
export interface MutationChains {
  readonly request: readonly HeaderMutation[];
  readonly response: readonly HeaderMutation[];
}

/**
 * Orders levels given from the most specific (weighted cluster, route) to the least (route configuration). Envoy
 * applies them in that order, so the outer level wins a conflict, or reversed with
 * `most_specific_header_mutations_wins`.
 */
export function chainMutations(levels: readonly LevelMutations[], mostSpecificWins: boolean): MutationChains {
  // Runs for every route of every configuration: plain loops, no intermediate arrays.
  const request: HeaderMutation[] = [];
  const response: HeaderMutation[] = [];
  for (let i = 0; i < levels.length; i++) {
    const level = levels[mostSpecificWins ? levels.length - 1 - i : i]!;
    if (level.request) request.push(level.request);
    if (level.response) response.push(level.response);
  }
  return { request, response };
}

export function applyHeaderMutations(chain: readonly HeaderMutation[], headers: HeaderMap, info: StreamInfo): void {
  for (let i = 0; i < chain.length; i++) applyHeaderMutation(chain[i]!, headers, info);
}

/** Envoy refuses configuration that would rewrite pseudo-headers or Host through header mutations. */
function checkMutable(name: string, path: string, errors: ConfigError[]): void {
  if (name.startsWith(':') || name === 'host') {
    errors.push({ code: 'invalid_value', path, message: `header "${name}" cannot be modified here (pseudo-headers and host are reserved)` });
  }
}

/**
 * Applies one level's removals, then its additions, as Envoy's HeaderParser::evaluateHeaders does: every value
 * is formatted, and every ADD_IF_ABSENT / OVERWRITE_IF_EXISTS condition checked, against the headers as they
 * were before this level's additions; then all overwrites are applied, then all appends. So within one level
 * `[x: a (append), x: b (overwrite)]` gives `x: b, x: a`, and two ADD_IF_ABSENT entries for an absent header
 * both add.
 */
export function applyHeaderMutation(mutation: HeaderMutation, headers: HeaderMap, info: StreamInfo): void {
  for (const name of mutation.remove) delete headers[name];
  const additions = mutation.add;
  if (additions.length === 0) return;
  let overwrites: [string, string][] | undefined;
  let appends: [string, string][] | undefined;
  for (const addition of additions) {
    const value = addition.format(info);
    if (value === '' && !addition.keepEmpty) continue;
    const name = addition.name;
    switch (addition.action) {
      case AppendAction.AppendIfExistsOrAdd:
        (appends ??= []).push([name, value]);
        break;
      case AppendAction.AddIfAbsent:
        if (headers[name] === undefined) (appends ??= []).push([name, value]);
        break;
      case AppendAction.OverwriteIfExists:
        if (headers[name] !== undefined) (overwrites ??= []).push([name, value]);
        break;
      case AppendAction.OverwriteIfExistsOrAdd:
        (overwrites ??= []).push([name, value]);
        break;
    }
  }
  if (overwrites !== undefined) for (const [name, value] of overwrites) headers[name] = value;
  if (appends !== undefined) {
    for (const [name, value] of appends) {
      const existing = headers[name];
      if (existing === undefined) headers[name] = value;
      else if (Array.isArray(existing)) existing.push(value);
      else headers[name] = [String(existing), value];
    }
  }
}
