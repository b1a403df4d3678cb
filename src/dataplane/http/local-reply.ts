import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileStreamFilter, type StreamPredicate } from '../access-log/filter.js';
import type { Runtime } from '../runtime/runtime.js';
import type { StreamInfo } from '../stream-info.js';
import { compileHeaderMutation, type HeaderMutation } from '../router/header-mutation.js';
import { readDataSource } from '../router/route-action.js';
import { compileSubstitutionFormat, type SubstitutionFormat } from './substitution-format.js';

type LocalReplyConfig = envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig;

interface Mapper {
  filter: StreamPredicate;
  status: number | undefined;
  body: string | undefined;
  bodyFormat: SubstitutionFormat | undefined;
  headers: HeaderMutation | undefined;
}

/** The local reply a connection manager sends: status, body, content type and any extra headers. */
export interface LocalReply {
  status: number;
  body: string;
  contentType: string;
  headers: HeaderMutation | undefined;
}

/**
 * `local_reply_config`: the first mapper whose filter matches may change the status, body and headers of a
 * local reply; the body is then rendered with the mapper's or the default `body_format`.
 */
export class LocalReplyRenderer {
  private readonly mappers: Mapper[];
  private readonly bodyFormat: SubstitutionFormat | undefined;

  constructor(config: LocalReplyConfig | undefined, path: string, errors: ConfigError[], runtime: Runtime) {
    this.mappers = (config?.mappers ?? []).map((mapper, i): Mapper => {
      const mapperPath = `${path}.mappers[${i}]`;
      if (!mapper.filter) errors.push({ code: 'missing_required', path: `${mapperPath}.filter`, message: 'a mapper needs a filter' });
      return {
        filter: mapper.filter ? compileStreamFilter(mapper.filter, `${mapperPath}.filter`, errors, runtime) : () => false,
        status: mapper.status_code,
        body: mapper.body ? readDataSource(mapper.body, `${mapperPath}.body`, errors)?.toString() : undefined,
        bodyFormat: mapper.body_format_override
          ? compileSubstitutionFormat(mapper.body_format_override, `${mapperPath}.body_format_override`, errors)
          : undefined,
        headers: compileHeaderMutation(mapper.headers_to_add, undefined, mapperPath, 'headers_to_add', '', errors),
      };
    });
    this.bodyFormat = config?.body_format ? compileSubstitutionFormat(config.body_format, `${path}.body_format`, errors) : undefined;
  }

  render(info: StreamInfo, status: number, body: string): LocalReply {
    let format = this.bodyFormat;
    let headers: HeaderMutation | undefined;
    info.responseCode = status;
    for (const mapper of this.mappers) {
      if (!mapper.filter(info)) continue;
      if (mapper.status !== undefined) status = mapper.status;
      if (mapper.body !== undefined) body = mapper.body;
      if (mapper.bodyFormat) format = mapper.bodyFormat;
      headers = mapper.headers;
      break;
    }
    if (format === undefined) return { status, body, contentType: 'text/plain', headers };
    info.responseCode = status;
    info.localReplyBody = body;
    return { status, body: format.render(info), contentType: format.contentType, headers };
  }
}

