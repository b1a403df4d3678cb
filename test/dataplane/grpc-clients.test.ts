/**
 * A real @grpc/grpc-js client through Portico (h2c downstream, HTTP/2 upstream) to a real @grpc/grpc-js server:
 * unary, server streaming, client streaming and bidirectional calls; metadata both ways and trailers; every
 * status code; a client deadline; a 10 MiB message each way.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type RunningPortico, simpleBootstrap, startPortico, staticCluster } from '../support/portico.js';
import { rawUnaryMethod } from '../support/grpc.js';

const identity = (b: Buffer): Buffer => b;
const method = (path: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  ...rawUnaryMethod(path),
  requestStream,
  responseStream,
});

const SERVICE = {
  Echo: method('/test.Streams/Echo', false, false),
  Fanout: method('/test.Streams/Fanout', false, true),
  Gather: method('/test.Streams/Gather', true, false),
  Chat: method('/test.Streams/Chat', true, true),
  Status: method('/test.Streams/Status', false, false),
  Slow: method('/test.Streams/Slow', false, false),
};

const UNLIMITED = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 };
const TEN_MIB = 10 * 1024 * 1024;

describe('gRPC clients through Portico', () => {
  let server: grpc.Server;
  let gw: RunningPortico;
  let client: grpc.Client;

  before(async () => {
    server = new grpc.Server(UNLIMITED);
    server.addService(SERVICE, {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const trailers = new grpc.Metadata();
        trailers.set('x-trailer', 'from-server');
        const seen = call.metadata.get('x-client')[0];
        callback(null, call.request.length > 1024 ? call.request : Buffer.from(`echo:${call.request.toString()}:${seen ?? ''}`), trailers);
      },
      Fanout: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const n = Number(call.request.toString());
        for (let i = 0; i < n; i++) call.write(Buffer.from(`part ${i}`));
        call.end();
      },
      Gather: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const parts: string[] = [];
        call.on('data', (chunk: Buffer) => parts.push(chunk.toString()));
        call.on('end', () => callback(null, Buffer.from(parts.join('+'))));
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (chunk: Buffer) => call.write(Buffer.from(`re:${chunk.toString()}`)));
        call.on('end', () => call.end());
      },
      Status: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        callback({ code: Number(call.request.toString()), details: `status ${call.request.toString()}` });
      },
      // Never answers: only the client's deadline can end the call.
      Slow: () => {},
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    gw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/test.Streams/", grpc: {} }
  route: { cluster: grpc, timeout: 0s }`,
        clusters: `${staticCluster('grpc', port)}
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: {} }`,
      }),
    );
    client = new grpc.Client(`127.0.0.1:${gw.port()}`, grpc.credentials.createInsecure(), UNLIMITED);
  });

  after(async () => {
    client.close();
    await gw.close();
    server.forceShutdown();
  });

  function unary(path: string, request: Buffer, options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<{ response?: Buffer; error?: grpc.ServiceError; trailers?: grpc.Metadata }> {
    return new Promise((resolve) => {
      let trailers: grpc.Metadata | undefined;
      const call = client.makeUnaryRequest(path, identity, identity, request, metadata, options, (error, response) =>
        // The status (with its trailers) comes after the callback's response in grpc-js; wait a tick for it.
        setImmediate(() => resolve({ response: response ?? undefined, error: error ?? undefined, trailers })),
      );
      call.on('status', (status) => (trailers = status.metadata));
    });
  }

  it('unary: metadata reaches the server, the response and its trailers reach the client', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-client', 'portico-test');
    const { response, error, trailers } = await unary('/test.Streams/Echo', Buffer.from('hi'), {}, metadata);
    assert.equal(error, undefined);
    assert.equal(response!.toString(), 'echo:hi:portico-test');
    assert.deepEqual(trailers!.get('x-trailer'), ['from-server']);
  });

  it('server streaming: every message in order', async () => {
    const call = client.makeServerStreamRequest('/test.Streams/Fanout', identity, identity, Buffer.from('50'), new grpc.Metadata(), {});
    const parts: string[] = [];
    for await (const chunk of call as AsyncIterable<Buffer>) parts.push(chunk.toString());
    assert.deepEqual(parts, Array.from({ length: 50 }, (_, i) => `part ${i}`));
  });

  it('client streaming: the server sees every message before answering', async () => {
    const response = await new Promise<Buffer>((resolve, reject) => {
      const call = client.makeClientStreamRequest('/test.Streams/Gather', identity, identity, new grpc.Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res!)));
      for (const word of ['a', 'b', 'c', 'd']) call.write(Buffer.from(word));
      call.end();
    });
    assert.equal(response.toString(), 'a+b+c+d');
  });

  it('bidirectional: each message is answered while the call stays open', async () => {
    const call = client.makeBidiStreamRequest('/test.Streams/Chat', identity, identity, new grpc.Metadata(), {});
    const replies: string[] = [];
    const next = () => new Promise<string>((resolve) => call.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    for (const word of ['one', 'two', 'three']) {
      const reply = next();
      call.write(Buffer.from(word));
      // The reply to each message arrives before the next is sent: the stream is not buffered end to end.
      replies.push(await reply);
    }
    call.end();
    await new Promise((resolve) => call.on('status', resolve));
    assert.deepEqual(replies, ['re:one', 're:two', 're:three']);
  });

  it('every status code reaches the client with its message', async () => {
    for (let code = 1; code <= 16; code++) {
      const { error } = await unary('/test.Streams/Status', Buffer.from(String(code)));
      assert.equal(error?.code, code, `status ${code}`);
      assert.equal(error?.details, `status ${code}`);
    }
  });

  it('a client deadline ends the call with DEADLINE_EXCEEDED', async () => {
    const { error } = await unary('/test.Streams/Slow', Buffer.from('x'), { deadline: Date.now() + 200 });
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED);
  });

  it('a 10 MiB message goes up and comes back intact', async () => {
    const big = Buffer.alloc(TEN_MIB);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    const { response, error } = await unary('/test.Streams/Echo', big);
    assert.equal(error, undefined);
    assert.equal(response!.length, TEN_MIB);
    assert.ok(response!.equals(big));
  });
});
