import type { LoadedConfigFile } from '@jobmesh/config';
import type { ProcessorDefinition } from '@jobmesh/sdk';

export interface BuiltinSettings {
  config: LoadedConfigFile;
  smtpUrl?: string;
  smtpFrom?: string;
}

/** The built-in processors the config leaves on, for every queue ('*'). */
export function builtinProcessors(_settings: BuiltinSettings): ProcessorDefinition[] {
  return [];
}
