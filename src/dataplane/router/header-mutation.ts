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

/** Applies removals, then additions, to a header object. */
export function applyHeaderMutation(mutation: HeaderMutation, headers: HeaderMap, info: StreamInfo): void {
  for (const name of mutation.remove) delete headers[name];
  for (const addition of mutation.add) {
    const value = addition.format(info);
    if (value === '' && !addition.keepEmpty) continue;
    const existing = headers[addition.name];
    switch (addition.action) {
      case AppendAction.AppendIfExistsOrAdd:
        if (existing === undefined) headers[addition.name] = value;
        else if (Array.isArray(existing)) existing.push(value);
        else headers[addition.name] = [String(existing), value];
        break;
      case AppendAction.AddIfAbsent:
        if (existing === undefined) headers[addition.name] = value;
        break;
      case AppendAction.OverwriteIfExistsOrAdd:
        headers[addition.name] = value;
        break;
      case AppendAction.OverwriteIfExists:
        if (existing !== undefined) headers[addition.name] = value;
        break;
    }
  }
}
