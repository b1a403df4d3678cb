import YAML from 'yaml';
import type { ConfigError } from '../config/errors.js';
import { isObject } from './schema.js';

/**
 * Reads resource documents from text: multi-document YAML (`---` separated), a JSON object, a JSON array, or a
 * Kubernetes-style `{kind: List, items: [...]}`. Empty documents are skipped.
 */
export function parseDocuments(text: string, source: string, errors: ConfigError[]): unknown[] {
  // JSON is YAML too, but the YAML parser is an order of magnitude slower on a 5,000-resource batch.
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      return flatten(JSON.parse(text));
    } catch {
      // not JSON after all (YAML flow style): the YAML parser below reports any error
    }
  }
  const docs = YAML.parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  const out: unknown[] = [];
  (Array.isArray(docs) ? docs : [docs]).forEach((doc, i) => {
    const path = docs.length > 1 ? `${source}#${i}` : source;
    for (const e of doc.errors) {
      errors.push({ code: 'parse_error', path, message: `${e.message.split('\n')[0]} (line ${e.linePos?.[0].line ?? '?'})` });
    }
    if (doc.errors.length) return;
    out.push(...flatten(doc.toJS({ maxAliasCount: 100 })));
  });
  return out;
}

function flatten(value: unknown): unknown[] {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value)) return value;
  if (isObject(value) && value.kind === 'List' && Array.isArray(value.items)) return value.items;
  return [value];
}
