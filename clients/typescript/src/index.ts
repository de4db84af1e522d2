/**
 * @chat-quota/client: the TypeScript client of quota.v1.QuotaService.
 *
 * `QuotaClient` is the hand-written layer (idempotency keys, retries, deadlines); the message types,
 * enums and the service descriptor are the generated code of proto/quota/v1/quota.proto.
 */

export {
  QuotaClient,
  QuotaClientError,
  apiKeyFromEnv,
  grpcCodeName,
  newKey,
  type BalanceOptions,
  type CallOptions,
  type CheckOptions,
  type ConsumeOptions,
  type CreateAccountOptions,
  type Int,
  type KeyedOptions,
  type MeterPolicyInit,
  type QuotaClientOptions,
  type ReserveOptions,
  type TopUpOptions,
} from "./client.js";
export { baseUrlOf, createTransport, type OwnedTransport, type Protocol } from "./transport.js";
export * from "./gen/quota/v1/quota_pb.js";
export { BadRequestSchema, ErrorInfoSchema, type BadRequest, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
export { Code } from "@connectrpc/connect";
