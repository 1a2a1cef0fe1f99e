import type { LoadedConfigFile } from '@jobmesh/config';
import type { ProcessorDefinition } from '@jobmesh/sdk';
import { emailSendProcessor } from './email-send';
import type { Resolver } from './http-guard';
import { httpRequestProcessor } from './http-request';

export { type EmailSendData, type EmailSendResult, type EmailSettings, emailSendProcessor } from './email-send';
export { type HttpRequestData, type HttpRequestResult, type HttpRequestSettings, httpRequestProcessor, parseRetryAfter } from './http-request';
export { DestinationRefusedError, refusalReason, type Resolver } from './http-guard';
export { internalAddressReason } from './internal-addresses';

export interface BuiltinSettings {
  config: LoadedConfigFile;
  /** JOBMESH_SMTP_URL; overrides `smtp.url` of the config file. */
  smtpUrl?: string;
  /** JOBMESH_SMTP_FROM; overrides `smtp.from` of the config file. */
  smtpFrom?: string;
  /** JOBMESH_MODE: production turns on http.request's refusal of internal destinations. @default development */
  mode?: 'development' | 'production';
  /** How http.request's guard resolves host names (tests). @default dns.lookup */
  resolve?: Resolver;
}

/**
 * The built-in processors the config leaves on (`processors.builtins`, all on by default), for
 * every queue ('*'). A queue's own processor of the same name wins over a built-in.
 */
export function builtinProcessors(settings: BuiltinSettings): ProcessorDefinition[] {
  const { config } = settings;
  const on = config.processors.builtins;
  const defs: ProcessorDefinition[] = [];
  if (on['http.request']) {
    defs.push(httpRequestProcessor({ guard: settings.mode === 'production', config: config.processors.http_request, resolve: settings.resolve }));
  }
  if (on['email.send']) {
    defs.push(emailSendProcessor({ smtpUrl: settings.smtpUrl ?? config.smtp?.url, smtpFrom: settings.smtpFrom ?? config.smtp?.from }));
  }
  return defs;
}
