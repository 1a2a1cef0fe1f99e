import {
  Metadata,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  type ServiceDefinition,
  status as Status,
} from '@grpc/grpc-js';
import { shorten } from '@jobmesh/core';

/**
 * What a guarded deserializer gives for bytes that are no valid message of the method's request
 * type (malformed protobuf, an int64 beyond 2^53, a Struct nested too deep): grpc-js answers a
 * deserializer that throws with INTERNAL "Error deserializing request", whatever the error says,
 * and before any handler or metric sees the call. The interceptor below answers it instead.
 */
export class UndecodableRequest {
  constructor(readonly reason: string) {}
}

/** `definition` with each request deserializer made to return an UndecodableRequest instead of throwing. */
export function guardDeserializers(definition: ServiceDefinition): ServiceDefinition {
  const guarded: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    guarded[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (err) {
          return new UndecodableRequest(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return guarded;
}

/**
 * A server interceptor that answers a request message the guarded deserializer could not decode
 * with INVALID_ARGUMENT (saying why) and reports it to `refused`, so it is counted like any call.
 * A stream ends at the first such message; the handler never sees it.
 */
export function decodeGuard(refused: (method: string, code: Status) => void): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(
      call,
      new ResponderBuilder()
        .withStart((next) =>
          next(
            new ServerListenerBuilder()
              .withOnReceiveMessage((message: unknown, pass) => {
                if (!(message instanceof UndecodableRequest)) return pass(message);
                refused(method.path, Status.INVALID_ARGUMENT);
                call.sendStatus({
                  code: Status.INVALID_ARGUMENT,
                  details: `the request is not a valid protobuf message for ${method.path}: ${shorten(message.reason, 200)}`,
                  metadata: new Metadata(),
                });
              })
              .build(),
          ),
        )
        .build(),
    );
}
