import { RE2JS } from 're2js';
import { InvalidArgumentError } from './errors';

/** The longest dead-letter rule `message_pattern` a queue may hold, in characters. */
export const MAX_PATTERN_LENGTH = 1024;

/** A compiled message pattern: matched in time linear in the text, whatever the pattern. */
export interface MessagePattern {
  test(text: string): boolean;
}

/**
 * Compiles a dead-letter rule's `message_pattern` with RE2 (re2js, pure JavaScript), not with
 * JavaScript's backtracking RegExp: patterns come from API callers, and a pattern such as "(a+)+b"
 * would stall the event loop for minutes on one failure message. RE2 matches in linear time and has
 * no backreferences or lookaround; such a pattern is refused here, with what RE2 said about it.
 */
export function compileMessagePattern(source: string, field = 'message_pattern'): MessagePattern {
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new InvalidArgumentError(field, `is ${source.length} characters; at most ${MAX_PATTERN_LENGTH}`);
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (err) {
    throw new InvalidArgumentError(field, `is not a valid RE2 regular expression (no backreferences or lookaround): ${(err as Error).message.slice(0, 200)}`);
  }
  return { test: (text) => re.matcher(text).find() };
}
