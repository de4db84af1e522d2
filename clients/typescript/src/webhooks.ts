/**
 * Receiving the service's webhooks in Node.js: check that a delivery is the service's, per Standard
 * Webhooks, with the `standardwebhooks` library. The twin of the Python `quota_client.webhooks.verify`.
 *
 * Every delivery is a POST whose body is the event as JSON (`{ id, type, timestamp, data }`), with three
 * headers: `webhook-id` (the event id: the same on every retry and replay, so a receiver that has seen
 * it can acknowledge and skip it), `webhook-timestamp` (seconds since the epoch) and `webhook-signature`
 * (`v1,<base64 HMAC-SHA256>`, one per secret in force, separated by spaces: two during the grace period
 * of a rotation).
 *
 *     try {
 *       const event = verifyWebhook(req.headers, rawBody, secret);   // the raw bytes, before any JSON parsing
 *     } catch (err) {
 *       if (err instanceof WebhookVerificationError) { res.statusCode = 400; ... }
 *     }
 */

import { Webhook, WebhookVerificationError as Refused } from "standardwebhooks";

/** The headers a delivery is checked with: the three `webhook-*` ones are required. */
export const WEBHOOK_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;

/** A timestamp further than this from the receiver's clock is refused (the library's rule), in seconds. */
export const WEBHOOK_TOLERANCE_S = 300;

/**
 * A request's headers, names in any case: Node's `req.headers` (IncomingHttpHeaders), a plain object,
 * or (name, value) pairs such as a fetch `Headers` or a `Map`.
 */
export type WebhookHeaders = Record<string, string | string[] | undefined> | Iterable<readonly [string, string]>;

/** The body of a delivery: one event. */
export interface WebhookEvent {
  /** "evt_...": the webhook-id, the same on every retry and replay. */
  id: string;
  /** e.g. "alert.triggered", "balance.topped_up". */
  type: string;
  /** When the event happened: ISO 8601 UTC with milliseconds ("2026-11-01T09:30:00.000Z"). */
  timestamp: string;
  /** The event's fields (README, Events); integers are JSON numbers. */
  data: Record<string, unknown>;
}

/**
 * The delivery is not the service's: a header missing, a timestamp too old or too new, or no signature
 * made with the secret. Answer it with a 4xx status and do not act on it.
 */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

/** The headers by lower-case name (HTTP header names are case-insensitive); the first of repeated ones. */
function headersOf(headers: WebhookHeaders): Record<string, string> {
  const pairs: Iterable<readonly [string, unknown]> = Symbol.iterator in headers
    ? (headers as Iterable<readonly [string, string]>)
    : Object.entries(headers);
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    const key = String(name).toLowerCase();
    const first = Array.isArray(value) ? value[0] : value;
    if (!(key in out) && first !== undefined) {
      out[key] = String(first);
    }
  }
  return out;
}

function webhooksOf(secrets: string | readonly string[]): Webhook[] {
  const found = typeof secrets === "string" ? [secrets] : [...secrets];
  if (found.length === 0 || !found.every((s) => typeof s === "string" && s !== "")) {
    throw new TypeError("secrets: give the endpoint's whsec_... secret (or a list of them)");
  }
  return found.map((s) => {
    try {
      return new Webhook(s);
    } catch {
      throw new TypeError("secrets: not a whsec_... secret (base64 after the prefix)");
    }
  });
}

/**
 * The event a delivery carries (its JSON body), once its signature is checked with the
 * `standardwebhooks` library against `secrets`: the endpoint's `whsec_...` secret, or several (during
 * a rotation the new and the old one): a delivery signed with any of them verifies.
 *
 * `headers`: the request's headers, names in any case. `body`: the raw body exactly as received (a
 * string or the bytes, e.g. a Buffer), never a re-serialized object.
 * Throws WebhookVerificationError saying what is wrong; a TypeError for a secret that is not one.
 */
export function verifyWebhook(
  headers: WebhookHeaders, body: string | Uint8Array, secrets: string | readonly string[],
): WebhookEvent {
  const hooks = webhooksOf(secrets);
  const found = headersOf(headers);
  const missing = WEBHOOK_HEADERS.filter((h) => !found[h]);
  if (missing.length > 0) {
    throw new WebhookVerificationError(`missing header${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`);
  }
  let text: string;
  try {
    text = typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    throw new WebhookVerificationError("malformed delivery: the body is not UTF-8");
  }
  const wanted = Object.fromEntries(WEBHOOK_HEADERS.map((h) => [h, found[h] as string]));
  for (const hook of hooks) {
    try {
      hook.verify(text, wanted, { jsonParse: false });
    } catch (exc) {
      if (!(exc instanceof Refused)) {
        throw exc;
      }
      if (exc.message === "Invalid Signature Headers") {
        throw new WebhookVerificationError("webhook-timestamp is not a number of seconds");
      }
      if (/timestamp/i.test(exc.message)) {
        throw new WebhookVerificationError(
          `webhook-timestamp ${JSON.stringify(wanted["webhook-timestamp"]?.slice(0, 20))} is not within ` +
          `${WEBHOOK_TOLERANCE_S} s of this receiver's clock (a delayed or replayed delivery, or a clock that is off)`,
        );
      }
      continue;  // no signature made with this secret: try the next one
    }
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch {
      throw new WebhookVerificationError("malformed delivery: the body is not JSON");
    }
    if (event === null || typeof event !== "object" || Array.isArray(event)) {
      throw new WebhookVerificationError("the body is not a JSON object");
    }
    return event as WebhookEvent;
  }
  throw new WebhookVerificationError(
    "no signature in webhook-signature was made with the secret: a wrong secret, or a body changed after " +
    "it was signed (verify the raw bytes)",
  );
}
