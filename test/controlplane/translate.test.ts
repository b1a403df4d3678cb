import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { parseDocuments } from '../../src/controlplane/documents.js';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { checkTranslation, translate } from '../../src/controlplane/translate.js';
import { createLogger } from '../../src/util/logger.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';

const GOLDEN = join(PACKAGE_ROOT, 'test/controlplane/golden');
const OPTIONS = { listenerAddress: '0.0.0.0', listenerPort: 8080, httpsPort: 8443, rateLimitPort: 8081 };

function load(file: string): Resource[] {
  const errors: ConfigError[] = [];
  const resources = parseDocuments(readFileSync(join(GOLDEN, file), 'utf8'), file, errors).map((doc) => parseResource(doc, errors)!);
  assert.deepEqual(errors, [], `${file} holds invalid resources`);
  return resources;
}

function render(resources: Resource[]): string {
  const t = translate(resources, OPTIONS);
  const { errors } = checkTranslation(t, createLogger('off'));
  return `${JSON.stringify({ listeners: t.listeners, clusters: t.clusters, errors }, null, 2)}\n`;
}

describe('translator golden files', () => {
  for (const file of readdirSync(GOLDEN).filter((f) => f.endsWith('.yaml')).sort()) {
    it(file, () => {
      const actual = render(load(file));
      const goldenPath = join(GOLDEN, file.replace(/\.yaml$/, '.json'));
      // UPDATE_GOLDEN=1 rewrites the expected output; review the diff before committing it.
      if (process.env.UPDATE_GOLDEN) writeFileSync(goldenPath, actual);
      assert.equal(actual, readFileSync(goldenPath, 'utf8'));
    });
  }

  it('gives the same bytes whatever the order of the input', () => {
    for (const file of ['ordering.yaml', 'canary.yaml', 'features.yaml', 'hosts.yaml', 'listeners.yaml']) {
      const resources = load(file);
      assert.equal(render([...resources].reverse()), render(resources), file);
      assert.equal(render([...resources.slice(3), ...resources.slice(0, 3)]), render(resources), file);
    }
  });

  it('produces configurations the data plane accepts for every supported field', () => {
    for (const file of ['seed.yaml', 'ordering.yaml', 'canary.yaml', 'module.yaml', 'ratelimits.yaml', 'hosts.yaml', 'listeners.yaml']) {
      assert.deepEqual(JSON.parse(render(load(file))).errors, [], file);
    }
  });
});
