/**
 * @chat-quota/client: the TypeScript client of quota.v1.QuotaService.
 *
 * `QuotaClient` is the hand-written layer (idempotency keys, retries, deadlines) and `verifyWebhook`
 * checks a webhook delivery's signature; the message types, enums and the service descriptor are the
 * generated code of proto/quota/v1/quota.proto.
 */

export {
  QuotaClient,
  QuotaClientError,
  apiKeyFromEnv,
  grpcCodeName,
  newKey,
  type BalanceOptions,
  type CallOptions,
  type CatalogueOptions,
  type CheckOptions,
  type ConsumeOptions,
  type CreateAccountOptions,
  type CreateWebhookEndpointOptions,
  type Int,
  type KeyedOptions,
  type ListDeliveriesOptions,
  type ListWebhookEndpointsOptions,
  type MeterPolicyInit,
  type PageOptions,
  type QuotaClientOptions,
  type ReplayDeliveriesOptions,
  type ReserveOptions,
  type RotateWebhookSecretOptions,
  type SetBillingContactsOptions,
  type TopUpOptions,
} from "./client.js";
export {
  WEBHOOK_HEADERS,
  WEBHOOK_TOLERANCE_S,
  WebhookVerificationError,
  verifyWebhook,
  type WebhookEvent,
  type WebhookHeaders,
} from "./webhooks.js";
export { baseUrlOf, createTransport, type OwnedTransport, type Protocol } from "./transport.js";
export * from "./gen/quota/v1/quota_pb.js";
export { BadRequestSchema, ErrorInfoSchema, type BadRequest, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
export { Code } from "@connectrpc/connect";
