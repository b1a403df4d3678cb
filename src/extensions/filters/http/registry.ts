/**
 * Every HTTP filter extension Portico implements, in one place. The router is not here: it is the connection
 * manager's own terminal stage. A filter's config types must also be listed as supported extensions
 * (src/config/extensions.ts) and their fields in src/config/support.ts.
 */
import type { HttpFilterFactory } from '../../../dataplane/http/filter.js';
import { CORS_FILTER_FACTORY } from './cors/cors-filter.js';

export const HTTP_FILTER_FACTORIES: readonly HttpFilterFactory[] = [CORS_FILTER_FACTORY];
