/**
 * The transport under the client: gRPC over HTTP/2 (the service's gRPC port), or the Connect
 * protocol (its HTTP port, QUOTA_HTTP_PORT). Switching is one option, `protocol`, or the caller's
 * own Connect transport.
 */

import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** "grpc": the gRPC port (default 50051). "connect": the Connect protocol (JSON), on the HTTP port. */
export type Protocol = "grpc" | "connect";

export interface OwnedTransport {
  transport: Transport;
  /** Closes the connection the transport opened (an HTTP/2 session), so a process can exit. */
  close(): void;
}

/**
 * "host:port" (plain text), or a URL: "http://host:port", "https://host:port" (TLS).
 * A bare "host:port" gets "https://" when `tls` is set, else "http://".
 */
export function baseUrlOf(target: string, tls = false): string {
  if (/^https?:\/\//.test(target)) {
    return target.replace(/\/+$/, "");
  }
  return `${tls ? "https" : "http"}://${target}`;
}

/**
 * A transport of the given protocol to `target`. The gRPC transport keeps one HTTP/2 connection
 * (a session manager owned here, so that close() ends it); the Connect transport speaks HTTP/1.1
 * with JSON bodies, which any HTTP server and a `curl` also speak.
 */
export function createTransport(target: string, protocol: Protocol, tls = false): OwnedTransport {
  const baseUrl = baseUrlOf(target, tls);
  if (protocol === "connect") {
    return { transport: createConnectTransport({ baseUrl, httpVersion: "1.1" }), close: () => undefined };
  }
  if (protocol !== "grpc") {
    throw new TypeError(`protocol must be "grpc" or "connect", not ${JSON.stringify(protocol)}`);
  }
  const sessionManager = new Http2SessionManager(baseUrl);
  return {
    transport: createGrpcTransport({ baseUrl, sessionManager }),
    close: () => sessionManager.abort(),
  };
}
