import type { LoadedConfigFile } from '@jobmesh/config';
import type { ProcessorDefinition } from '@jobmesh/sdk';
import { emailSendProcessor } from './email-send';
import { httpRequestProcessor } from './http-request';

export { type EmailSendData, type EmailSendResult, type EmailSettings, emailSendProcessor } from './email-send';
export { type HttpRequestData, type HttpRequestResult, httpRequestProcessor, parseRetryAfter } from './http-request';

export interface BuiltinSettings {
  config: LoadedConfigFile;
  /** JOBMESH_SMTP_URL; overrides `smtp.url` of the config file. */
  smtpUrl?: string;
  /** JOBMESH_SMTP_FROM; overrides `smtp.from` of the config file. */
  smtpFrom?: string;
}

/**
 * The built-in processors the config leaves on (`processors.builtins`, all on by default), for
 * every queue ('*'). A queue's own processor of the same name wins over a built-in.
 */
export function builtinProcessors(settings: BuiltinSettings): ProcessorDefinition[] {
  const { config } = settings;
  const on = config.processors.builtins;
  const defs: ProcessorDefinition[] = [];
  if (on['http.request']) defs.push(httpRequestProcessor());
  if (on['email.send']) {
    defs.push(emailSendProcessor({ smtpUrl: settings.smtpUrl ?? config.smtp?.url, smtpFrom: settings.smtpFrom ?? config.smtp?.from }));
  }
  return defs;
}
