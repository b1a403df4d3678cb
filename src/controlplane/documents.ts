import YAML from 'yaml';
import type { ConfigError } from '../config/errors.js';
import { isObject } from './schema.js';

/**
 * Reads resource documents from text: multi-document YAML (`---` separated), a JSON object, a JSON array, or a
 * Kubernetes-style `{kind: List, items: [...]}`. Empty documents are skipped.
 */
export function parseDocuments(text: string, source: string, errors: ConfigError[]): unknown[] {
  const docs = YAML.parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  const out: unknown[] = [];
  (Array.isArray(docs) ? docs : [docs]).forEach((doc, i) => {
    const path = docs.length > 1 ? `${source}#${i}` : source;
    for (const e of doc.errors) {
      errors.push({ code: 'parse_error', path, message: `${e.message.split('\n')[0]} (line ${e.linePos?.[0].line ?? '?'})` });
    }
    if (doc.errors.length) return;
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) out.push(...value);
    else if (isObject(value) && value.kind === 'List' && Array.isArray(value.items)) out.push(...value.items);
    else out.push(value);
  });
  return out;
}
