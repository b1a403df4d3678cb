import { fileURLToPath } from 'node:url';

/** The package's root directory (this file is compiled to dist/src/util/). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
