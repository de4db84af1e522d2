/**
 * TypeScript client of quota.v1.QuotaService, the twin of the Python AsyncQuotaClient.
 *
 * Every mutating call carries an idempotency key, generated once per logical call when not given and
 * reused on every retry, so a retry never has a second effect. Retries happen on UNAVAILABLE only,
 * with exponential backoff and jitter, within the call's overall deadline (`timeoutMs`, retries
 * included). A denial is an answer (a Decision with status DENIED), never an error.
 *
 * Results are the generated message types of src/gen: 64-bit integers (amounts, *_minor, *_ms) are
 * `bigint`, the protobuf-es default, because money in minor units and epoch times are not always safe
 * as a JavaScript number. Inputs take a `number` (a safe integer) or a `bigint`.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

import {
  AccountStatus,
  MeterPolicySchema,
  QuotaService,
  type Account,
  type Balance,
  type CreateWebhookEndpointResponse,
  type Decision,
  type DeleteWebhookEndpointResponse,
  type ListCatalogueResponse,
  type ListDeliveriesResponse,
  type ListWebhookEndpointsResponse,
  type ReplayDeliveriesResponse,
  type RotateWebhookSecretResponse,
  type SetWebhookEndpointEnabledResponse,
  type TopUpResponse,
} from "./gen/quota/v1/quota_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { createTransport, type Protocol } from "./transport.js";

/** A whole number: a safe-integer `number` or a `bigint` (64-bit fields are bigint on the wire side). */
export type Int = number | bigint;

/** A meter policy as createAccount takes it: `{ meter: "ai_dialog", exhaustedAction: ExhaustedAction.HANDOFF_TO_AGENT }`. */
export type MeterPolicyInit = MessageInitShape<typeof MeterPolicySchema>;

export interface QuotaClientOptions {
  /** "host:port" of the service (gRPC port, default 50051), or a URL "http(s)://host:port". */
  target?: string;
  /** "grpc" (default): the gRPC port. "connect": the Connect protocol on the service's HTTP port. */
  protocol?: Protocol;
  /** TLS for a bare "host:port" target. */
  tls?: boolean;
  /** A Connect transport of the caller's own (interceptors, TLS options ...): replaces target/protocol/tls. */
  transport?: Transport;
  /** "qk_..." (default: env QUOTA_API_KEY, or the file QUOTA_API_KEY_FILE names; "" sends no key). */
  apiKey?: string;
  /** Overall deadline of one logical call, retries included, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** Retries after the first attempt, on UNAVAILABLE only (default 4). */
  retries?: number;
  /** First backoff in milliseconds, doubled each retry, with jitter 0.5x..1.5x (default 50). */
  backoffMs?: number;
}

export interface CallOptions {
  /** This call's overall deadline in milliseconds, retries included (default: the client's). */
  timeoutMs?: number;
  /** Abandons the call (and its retries). */
  signal?: AbortSignal;
}

export interface KeyedOptions extends CallOptions {
  /** Same key => same answer, one effect (1..255 characters). Default: a new UUID per logical call. */
  idempotencyKey?: string;
}

export interface CheckOptions extends CallOptions {
  /** A business key charged once per window (a visitor, a session). */
  dedupKey?: string;
  dedupWindowS?: Int;
  /** e.g. { room_id: "r-17", channel: "whatsapp" }; unique meters build their dedup key from these. */
  attributes?: Record<string, string>;
  /** What the units are for (autopilot, playground ...), when the plan distinguishes them. */
  feature?: string;
}

export interface ConsumeOptions extends CheckOptions, KeyedOptions {}

export interface ReserveOptions extends ConsumeOptions {
  /** How long the hold lives before it is released by itself, in milliseconds (0: 60 s). */
  ttlMs?: Int;
}

export interface BalanceOptions extends CallOptions {
  /** One meter or wallet ("" = all). */
  meter?: string;
  /** The balance at this past time (ms since the epoch), from the ledger; 0 = now. */
  asOfMs?: Int;
}

export interface TopUpOptions extends KeyedOptions {
  /** Units of a meter, or ... */
  meter?: string;
  /** ... minor units of money of a wallet (e.g. "IDR"). */
  currency?: string;
  /** A top-up kind of the account's catalogue; without it the grant is ad hoc (admin role). */
  kind?: string;
  source?: string;
  /** Lower is used first; unset = 100 (0 is a priority like any other). */
  priority?: number;
  overdraftLimit?: Int;
  startsAtMs?: Int;
  expiresAtMs?: Int;
  label?: string;
  grantId?: string;
}

export interface CreateAccountOptions extends KeyedOptions {
  orgId?: string;
  /** IANA time zone of the account's days and cycles (default "UTC"). */
  timeZone?: string;
  policies?: MeterPolicyInit[];
}

export interface SetBillingContactsOptions extends KeyedOptions {
  /** Of the email notices: "en" or "id"; "" or unset keeps the account's. */
  language?: string;
}

export interface CreateWebhookEndpointOptions extends KeyedOptions {
  /** The account whose events the endpoint gets; exactly one of accountId and orgId. */
  accountId?: string;
  /** The organization, for the events of every account of it (a key for the whole organization). */
  orgId?: string;
  /** e.g. ["alert.triggered", "balance.topped_up"]; empty or unset = every type. */
  eventTypes?: string[];
  /** At most 200 characters. */
  description?: string;
}

export interface PageOptions extends CallOptions {
  /** 1..1000; 0 or unset = 100. */
  pageSize?: number;
  /** The `nextPageToken` of the page before; "" or unset = from the first. */
  pageToken?: string;
}

export interface ListWebhookEndpointsOptions extends PageOptions {
  /** An account's endpoints, or ... */
  accountId?: string;
  /** ... an organization's; neither = every endpoint (a key for every account). */
  orgId?: string;
}

export interface RotateWebhookSecretOptions extends KeyedOptions {
  /**
   * How long the old secret keeps signing beside the new one, 0..604800 seconds (7 days); unset =
   * 86400 (24 h); 0 = it stops at once (a leaked secret).
   */
  graceSeconds?: Int;
}

export interface ListDeliveriesOptions extends PageOptions {
  /** An endpoint's deliveries, or ... */
  endpointId?: string;
  /** ... an account's (webhook and email); exactly one of the two. */
  accountId?: string;
}

export interface ReplayDeliveriesOptions extends KeyedOptions {
  /** One delivery, or ... */
  deliveryId?: Int;
  /** ... every event of this endpoint, ... */
  endpointId?: string;
  /** ... from this event on ("evt_...", a Delivery's eventId; required with endpointId). */
  sinceEventId?: string;
}

export interface CatalogueOptions extends CallOptions {
  /** One product (NOT_FOUND if the service has none of that name); "" or unset = every product. */
  product?: string;
}

/**
 * An RPC failed: `code` is the status code (connect's Code), `codeName` its gRPC name, `details` the
 * server's message. `reason` is the error's google.rpc.ErrorInfo reason (INVALID_FIELD,
 * UNAUTHENTICATED, BACKEND_UNAVAILABLE, IDEMPOTENCY_MISMATCH ...; "" when the server sent none) and
 * `fieldViolations` the google.rpc.BadRequest fields at fault, read from the error's details.
 */
export class QuotaClientError extends Error {
  readonly code: Code;
  readonly codeName: string;
  readonly details: string;
  readonly reason: string;
  readonly fieldViolations: ReadonlyArray<{ field: string; description: string }>;

  constructor(cause: ConnectError) {
    const codeName = grpcCodeName(cause.code);
    super(`${codeName}: ${cause.rawMessage}`, { cause });
    this.name = "QuotaClientError";
    this.code = cause.code;
    this.codeName = codeName;
    this.details = cause.rawMessage;
    this.reason = cause.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
    this.fieldViolations = cause
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  }
}

/** "INVALID_ARGUMENT" for Code.InvalidArgument: the names the service's docs and the Python client use. */
export function grpcCodeName(code: Code): string {
  return (Code[code] ?? `CODE_${code}`).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** QUOTA_API_KEY, else the text of the file QUOTA_API_KEY_FILE names (a mounted secret); "" when neither is set. */
export function apiKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const key = env.QUOTA_API_KEY ?? "";
  const path = env.QUOTA_API_KEY_FILE ?? "";
  if (key || !path) {
    return key;
  }
  return readFileSync(path, "utf8").replace(/\r?\n$/, "");
}

export function newKey(): string {
  return randomUUID();
}

/** A whole number as the wire's int64; a fractional or unsafe number is refused here, naming the field. */
function toInt(field: string, value: Int | undefined): bigint {
  if (value === undefined) {
    return 0n;
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new RangeError(`${field}: ${value} is not a safe integer (pass a bigint for large values)`);
  }
  return BigInt(value);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

type Attempt<T> = (opts: { timeoutMs: number; headers: Record<string, string>; signal?: AbortSignal }) => Promise<T>;

export class QuotaClient {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
  private readonly rpc: Client<typeof QuotaService>;
  private readonly headers: Record<string, string>;
  private readonly closeTransport: () => void;

  constructor(options: QuotaClientOptions = {}) {
    let transport = options.transport;
    this.closeTransport = () => undefined;
    if (transport === undefined) {
      const owned = createTransport(options.target ?? "127.0.0.1:50051", options.protocol ?? "grpc", options.tls);
      transport = owned.transport;
      this.closeTransport = owned.close;
    }
    this.rpc = createClient(QuotaService, transport);
    const token = options.apiKey ?? apiKeyFromEnv();
    this.headers = token ? { authorization: `Bearer ${token}` } : {};
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.retries = options.retries ?? 4;
    this.backoffMs = options.backoffMs ?? 50;
  }

  /** Closes the connection this client opened (not a transport the caller passed in). */
  close(): void {
    this.closeTransport();
  }

  /**
   * One logical call: attempts until an answer, an error other than UNAVAILABLE, `retries` retries,
   * or the deadline. Each attempt gets what is left of the deadline; a retry is made only if an
   * attempt as slow as the last one still fits after the backoff. A retry that runs out of time
   * reports the UNAVAILABLE that caused it, which is what the caller needs to know.
   */
  private async call<T>(attempt: Attempt<T>, options: CallOptions): Promise<T> {
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    let lastUnavailable: ConnectError | undefined;
    for (let retry = 0; ; retry++) {
      const started = Date.now();
      try {
        const left = Math.max(deadline - started, 1);
        return await attempt({ timeoutMs: left, headers: this.headers, signal: options.signal });
      } catch (exc) {
        let err = ConnectError.from(exc);
        if (err.code === Code.DeadlineExceeded && lastUnavailable !== undefined) {
          err = lastUnavailable;
        }
        if (err.code !== Code.Unavailable || retry >= this.retries || options.signal?.aborted) {
          throw new QuotaClientError(err);
        }
        lastUnavailable = err;
        const took = Date.now() - started;
        const delay = this.backoffMs * 2 ** retry * (0.5 + Math.random());
        if (Date.now() + delay + took >= deadline) {
          throw new QuotaClientError(err);
        }
        await sleep(delay, options.signal);
      }
    }
  }

  /** Hold `amount` units; commit or release the returned reservationId later. */
  async reserve(accountId: string, meter: string, amount: Int = 1, options: ReserveOptions = {}): Promise<Decision> {
    const request = {
      ...reserveFields(accountId, meter, amount, options),
      idempotencyKey: options.idempotencyKey || newKey(),
      ttlMs: toInt("ttlMs", options.ttlMs),
    };
    return this.call((o) => this.rpc.reserve(request, o), options);
  }

  /** Reserve and commit in one step. */
  async consume(accountId: string, meter: string, amount: Int = 1, options: ConsumeOptions = {}): Promise<Decision> {
    const request = {
      ...reserveFields(accountId, meter, amount, options),
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.consume(request, o), options);
  }

  /** Dry run: what reserve would answer now. Changes nothing. */
  async check(accountId: string, meter: string, amount: Int = 1, options: CheckOptions = {}): Promise<Decision> {
    const request = reserveFields(accountId, meter, amount, options);
    return this.call((o) => this.rpc.check(request, o), options);
  }

  /** Finalize a hold with the actual amount: less returns the rest, more takes the difference if available. */
  async commit(accountId: string, reservationId: string, actualAmount: Int, options: KeyedOptions = {}): Promise<Decision> {
    const request = {
      accountId,
      reservationId,
      actualAmount: toInt("actualAmount", actualAmount),
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.commit(request, o), options);
  }

  /** Return a hold. */
  async release(accountId: string, reservationId: string, options: KeyedOptions = {}): Promise<Decision> {
    const request = { accountId, reservationId, idempotencyKey: options.idempotencyKey || newKey() };
    return this.call((o) => this.rpc.release(request, o), options);
  }

  /** Per meter and per grant: granted, used, held, remaining; with asOfMs, at a past time. */
  async getBalance(accountId: string, options: BalanceOptions = {}): Promise<Balance> {
    const request = { accountId, meter: options.meter ?? "", asOfMs: toInt("asOfMs", options.asOfMs) };
    return this.call((o) => this.rpc.getBalance(request, o), options);
  }

  /**
   * Add a grant of `amount` units of `meter`, or minor units of `currency`; the answer has the grant
   * and `replayed`. The grant first pays what the meter or wallet owes; only the rest is spendable.
   */
  async topUp(accountId: string, amount: Int, options: TopUpOptions = {}): Promise<TopUpResponse> {
    const grant = {
      grantId: options.grantId ?? "",
      meter: options.meter ?? "",
      currency: options.currency ?? "",
      amount: toInt("amount", amount),
      source: options.source ?? "",
      priority: options.priority,
      overdraftLimit: toInt("overdraftLimit", options.overdraftLimit),
      startsAtMs: toInt("startsAtMs", options.startsAtMs),
      expiresAtMs: toInt("expiresAtMs", options.expiresAtMs),
      label: options.label ?? "",
      kind: options.kind ?? "",
    };
    const request = { accountId, grant, idempotencyKey: options.idempotencyKey || newKey() };
    return this.call((o) => this.rpc.topUp(request, o), options);
  }

  /** Correct a grant after the fact: `amount` more used (> 0) or less (< 0), with a reason (admin role). */
  async adjust(
    accountId: string, grantId: string, amount: Int, reason: string, options: KeyedOptions = {},
  ): Promise<TopUpResponse> {
    const request = {
      accountId,
      grantId,
      amount: toInt("amount", amount),
      reason,
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.adjust(request, o), options);
  }

  /** An account with its meter policies. */
  async createAccount(accountId: string, options: CreateAccountOptions = {}): Promise<Account> {
    const request = {
      accountId,
      orgId: options.orgId ?? "",
      timeZone: options.timeZone ?? "UTC",
      policies: (options.policies ?? []).map((p) => create(MeterPolicySchema, p)),
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.createAccount(request, o), options);
  }

  /** ACTIVE, SUSPENDED or EXPIRED. */
  async setAccountStatus(accountId: string, status: AccountStatus, options: KeyedOptions = {}): Promise<Account> {
    const request = { accountId, status, idempotencyKey: options.idempotencyKey || newKey() };
    return this.call((o) => this.rpc.setAccountStatus(request, o), options);
  }

  /**
   * The addresses the account's email notices go to (at most 10; none = no email), and with
   * `language` their language (admin role).
   */
  async setBillingContacts(
    accountId: string, emails: string[], options: SetBillingContactsOptions = {},
  ): Promise<Account> {
    const request = {
      accountId,
      emails: [...emails],
      language: options.language ?? "",
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.setBillingContacts(request, o), options);
  }

  /**
   * An endpoint where the events of an account (`accountId`) or of every account of an organization
   * (`orgId`) are POSTed, signed per Standard Webhooks (admin role). `url` is https:// at a public
   * address unless the service allows others (QUOTA_WEBHOOK_ALLOW_PRIVATE). The answer's `secret`
   * ("whsec_...") is shown here once: never listed, and "" when the same idempotency key replays it.
   */
  async createWebhookEndpoint(
    url: string, options: CreateWebhookEndpointOptions = {},
  ): Promise<CreateWebhookEndpointResponse> {
    const request = {
      accountId: options.accountId ?? "",
      orgId: options.orgId ?? "",
      url,
      eventTypes: [...(options.eventTypes ?? [])],
      description: options.description ?? "",
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.createWebhookEndpoint(request, o), options);
  }

  /** A page of the endpoints of an account, of an organization, or (neither) every endpoint; no secrets. */
  async listWebhookEndpoints(options: ListWebhookEndpointsOptions = {}): Promise<ListWebhookEndpointsResponse> {
    const request = {
      accountId: options.accountId ?? "",
      orgId: options.orgId ?? "",
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
    };
    return this.call((o) => this.rpc.listWebhookEndpoints(request, o), options);
  }

  /** Enable or disable an endpoint: a disabled endpoint gets no new deliveries (disabledReason "manual"). */
  async setWebhookEndpointEnabled(
    endpointId: string, enabled: boolean, options: KeyedOptions = {},
  ): Promise<SetWebhookEndpointEnabledResponse> {
    const request = { endpointId, enabled, idempotencyKey: options.idempotencyKey || newKey() };
    return this.call((o) => this.rpc.setWebhookEndpointEnabled(request, o), options);
  }

  /**
   * A new signing secret, in this answer only ("" when the same idempotency key replays it). The old
   * one keeps signing beside it for `graceSeconds` (unset: 24 h), so receivers switch without a gap.
   */
  async rotateWebhookSecret(
    endpointId: string, options: RotateWebhookSecretOptions = {},
  ): Promise<RotateWebhookSecretResponse> {
    const request = {
      endpointId,
      graceSeconds: options.graceSeconds === undefined ? undefined : toInt("graceSeconds", options.graceSeconds),
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.rotateWebhookSecret(request, o), options);
  }

  /** Delete an endpoint, with its deliveries. */
  async deleteWebhookEndpoint(endpointId: string, options: KeyedOptions = {}): Promise<DeleteWebhookEndpointResponse> {
    const request = { endpointId, idempotencyKey: options.idempotencyKey || newKey() };
    return this.call((o) => this.rpc.deleteWebhookEndpoint(request, o), options);
  }

  /**
   * A page of the deliveries of an endpoint or of an account (exactly one), oldest first, each with its
   * attempts: when, HTTP status, latency and the first 1 KB of the answer (admin role).
   */
  async listDeliveries(options: ListDeliveriesOptions = {}): Promise<ListDeliveriesResponse> {
    const request = {
      endpointId: options.endpointId ?? "",
      accountId: options.accountId ?? "",
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
    };
    return this.call((o) => this.rpc.listDeliveries(request, o), options);
  }

  /**
   * Send again: one delivery (`deliveryId`), or every event of an endpoint (`endpointId`) from
   * `sinceEventId` on, each under its own event id, with a new retry window (admin role). The answer's
   * `deliveries` is how many are pending again (or new). The endpoint must be enabled.
   */
  async replayDeliveries(options: ReplayDeliveriesOptions = {}): Promise<ReplayDeliveriesResponse> {
    const request = {
      deliveryId: toInt("deliveryId", options.deliveryId),
      endpointId: options.endpointId ?? "",
      sinceEventId: options.sinceEventId ?? "",
      idempotencyKey: options.idempotencyKey || newKey(),
    };
    return this.call((o) => this.rpc.replayDeliveries(request, o), options);
  }

  /**
   * The catalogue the service sells from, as loaded now: every product (or `product` alone) with its
   * meters, plans, packs and wallet top-up kinds, by product name. Empty when the service runs
   * without a catalogue.
   */
  async listCatalogue(options: CatalogueOptions = {}): Promise<ListCatalogueResponse> {
    const request = { product: options.product ?? "" };
    return this.call((o) => this.rpc.listCatalogue(request, o), options);
  }
}

function reserveFields(accountId: string, meter: string, amount: Int, options: CheckOptions) {
  return {
    accountId,
    meter,
    amount: toInt("amount", amount),
    dedupKey: options.dedupKey ?? "",
    dedupWindowS: toInt("dedupWindowS", options.dedupWindowS),
    attributes: { ...(options.attributes ?? {}) },
    feature: options.feature ?? "",
  };
}
