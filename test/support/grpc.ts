/** Real @grpc/grpc-js servers for tests, with methods whose messages are raw bytes (no protobuf code needed). */
import * as grpc from '@grpc/grpc-js';

const identity = (b: Buffer): Buffer => b;

/** A unary method at `path` that hands its handler the request's bytes and sends the reply's as they are. */
export function rawUnaryMethod(path: string): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

export type RawUnaryHandler = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => void;

/** A plaintext gRPC server on a free loopback port serving `methods` (name → path and handler). */
export async function startGrpcServer(methods: Record<string, { path: string; handler: RawUnaryHandler }>): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, { path, handler }] of Object.entries(methods)) {
    definition[name] = rawUnaryMethod(path);
    handlers[name] = handler;
  }
  server.addService(definition, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return { server, port };
}
