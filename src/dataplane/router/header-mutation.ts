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
