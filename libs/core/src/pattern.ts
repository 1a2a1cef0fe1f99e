import { InvalidArgumentError } from './errors';

/** The longest dead-letter rule `message_pattern` a queue may hold, in characters. */
export const MAX_PATTERN_LENGTH = 1024;

/** A compiled message pattern. */
export interface MessagePattern {
  test(text: string): boolean;
}

/**
 * Compiles a dead-letter rule's `message_pattern`, or throws an InvalidArgumentError naming
 * `field`. The engine is given by the caller (libs/config's compileMessagePattern: RE2, linear
 * time); libs/core depends on no package.
 */
export type PatternCompiler = (source: string, field: string) => MessagePattern;

/** Refuses a pattern over {@link MAX_PATTERN_LENGTH} characters. */
export function checkPatternLength(source: string, field: string): void {
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new InvalidArgumentError(field, `is ${source.length} characters; at most ${MAX_PATTERN_LENGTH}`);
  }
}
