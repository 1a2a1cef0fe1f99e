import { NotFoundError } from '@jobmesh/core';

export class DeadLetterNotFoundError extends NotFoundError {
  constructor(readonly id: string) {
    super(`dead letter "${id}" not found`);
  }
}
