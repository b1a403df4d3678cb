/**
 * Every extension Portico implements, as the data plane is handed them where the program is composed
 * (src/server/worker.ts, src/cli/run.ts, src/controlplane/): the data plane itself knows none by name.
 */
import { HTTP_FILTERS } from './filters/http/registry.js';
import { LISTENER_FILTERS } from './filters/listener/registry.js';
import { NETWORK_FILTERS } from './filters/network/registry.js';

export const EXTENSIONS = { httpFilters: HTTP_FILTERS, listenerFilters: LISTENER_FILTERS, networkFilters: NETWORK_FILTERS } as const;
