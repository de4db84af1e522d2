// The client against a real server: tests/e2e/test_typescript_client.py starts one (real Valkey and
// Postgres, API keys checked) and runs these with QUOTA_TARGET ("host:port") and QUOTA_API_KEY (an
// admin key) in the environment, once over gRPC and once over the Connect protocol (QUOTA_PROTOCOL
// "connect", QUOTA_TARGET the HTTP port).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { createClient } from "@connectrpc/connect";

import {
  DecisionStatus, DenyReason, ExhaustedAction, QuotaClient, QuotaClientError, QuotaService, createTransport,
} from "@chat-quota/client";

// a public address: the suite's server refuses private ones (QUOTA_WEBHOOK_ALLOW_PRIVATE is off). No
// event of these tests' accounts is ever delivered there: they make none.
const PUBLIC_URL = "https://8.8.8.8/hooks/quota";
const SHIPPED_PRODUCTS = ["ai_chatbot", "ai_helpmate", "bot_billing", "bot_sessions", "conversation"];

const target = process.env.QUOTA_TARGET ?? "";
const protocol = process.env.QUOTA_PROTOCOL || "grpc";
let quota;

before(() => {
  assert.ok(target, "QUOTA_TARGET (host:port of a running service) and QUOTA_API_KEY must be set");
  quota = new QuotaClient({ target, protocol, timeoutMs: 10_000 });
});

after(() => quota.close());

/** A new account with `units` AI dialogs that hand the chat to an agent when they run out. */
async function account(units) {
  const id = `ts-${randomUUID().slice(0, 12)}`;
  await quota.createAccount(id, { policies: [{ meter: "ai_dialog", exhaustedAction: ExhaustedAction.HANDOFF_TO_AGENT }] });
  if (units > 0) {
    const { grant, replayed } = await quota.topUp(id, units, { meter: "ai_dialog", source: "plan" });
    assert.equal(grant.granted, BigInt(units));
    assert.equal(replayed, false);
  }
  return id;
}

async function meter(id) {
  const balance = await quota.getBalance(id, { meter: "ai_dialog" });
  return balance.meters.find((m) => m.bucket === "ai_dialog");
}

/** The id ("evt_...") of the account's first event of `type`, read from the WatchAlerts stream. */
async function firstEventId(accountId, type) {
  const { transport, close } = createTransport(target, protocol);
  const abort = new AbortController();
  try {
    const stream = createClient(QuotaService, transport).watchAlerts({ accountId, types: [type] }, {
      headers: { authorization: `Bearer ${process.env.QUOTA_API_KEY}` }, signal: abort.signal, timeoutMs: 10_000,
    });
    for await (const event of stream) {
      return event.id;
    }
    return assert.fail("the stream ended without an event");
  } finally {
    abort.abort();
    close();
  }
}

async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof QuotaClientError, `${err}`);
    return err;
  }
  assert.fail("the call succeeded");
}

test("reserve holds units, commit takes the actual amount and returns the rest", async () => {
  const id = await account(10);
  const hold = await quota.reserve(id, "ai_dialog", 3, { attributes: { room_id: "r-1" } });
  assert.equal(hold.status, DecisionStatus.GRANTED);
  assert.ok(hold.reservationId);
  assert.equal((await meter(id)).held, 3n);
  const done = await quota.commit(id, hold.reservationId, 2);
  assert.equal(done.status, DecisionStatus.GRANTED);
  const m = await meter(id);
  assert.deepEqual([m.used, m.held, m.remaining], [2n, 0n, 8n]);
});

test("release returns a hold", async () => {
  const id = await account(5);
  const hold = await quota.reserve(id, "ai_dialog", 4);
  await quota.release(id, hold.reservationId);
  const m = await meter(id);
  assert.deepEqual([m.used, m.held, m.remaining], [0n, 0n, 5n]);
});

test("consume charges at once; check changes nothing", async () => {
  const id = await account(10);
  const checked = await quota.check(id, "ai_dialog", 4);
  assert.equal(checked.status, DecisionStatus.GRANTED);
  const d = await quota.consume(id, "ai_dialog", 4);
  assert.equal(d.status, DecisionStatus.GRANTED);
  assert.equal(d.remaining, 6n);
  assert.equal((await meter(id)).used, 4n);
});

test("the same idempotency key replays the first answer and charges once", async () => {
  const id = await account(10);
  const first = await quota.consume(id, "ai_dialog", 1, { idempotencyKey: "msg-7" });
  const again = await quota.consume(id, "ai_dialog", 1, { idempotencyKey: "msg-7" });
  assert.equal(first.replayed, false);
  assert.equal(again.replayed, true);
  assert.equal(again.remaining, first.remaining);
  assert.equal((await meter(id)).used, 1n);
});

test("a denial is an answer: DENIED QUOTA_EXHAUSTED with the plan's action", async () => {
  const id = await account(1);
  assert.equal((await quota.consume(id, "ai_dialog", 1)).status, DecisionStatus.GRANTED);
  const d = await quota.consume(id, "ai_dialog", 1);
  assert.equal(d.status, DecisionStatus.DENIED);
  assert.equal(d.reason, DenyReason.QUOTA_EXHAUSTED);
  assert.equal(d.action, ExhaustedAction.HANDOFF_TO_AGENT);
  assert.equal(d.remaining, 0n);
});

test("bad input is INVALID_ARGUMENT naming the field", async () => {
  const id = await account(1);
  const err = await failure(quota.consume(id, "ai_dialog", 0));
  assert.equal(err.codeName, "INVALID_ARGUMENT");
  assert.match(err.details, /amount/);
  // the google.rpc details: ErrorInfo's reason and BadRequest's field, without parsing the message
  assert.equal(err.reason, "INVALID_FIELD");
  assert.deepEqual(err.fieldViolations.map((v) => v.field), ["amount"]);
  const bad = await failure(quota.consume("no spaces allowed", "ai_dialog", 1));
  assert.equal(bad.codeName, "INVALID_ARGUMENT");
  assert.match(bad.details, /account_id/);
  assert.deepEqual(bad.fieldViolations.map((v) => v.field), ["account_id"]);
});

test("without an API key the service answers UNAUTHENTICATED", async () => {
  const anonymous = new QuotaClient({ target, protocol, apiKey: "" });
  try {
    const err = await failure(anonymous.getBalance("anyone"));
    assert.equal(err.codeName, "UNAUTHENTICATED");
    assert.equal(err.reason, "UNAUTHENTICATED");
    assert.deepEqual(err.fieldViolations, []);
  } finally {
    anonymous.close();
  }
});

test("a service that cannot be reached is UNAVAILABLE once the retries are spent", async () => {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));  // nothing listens there any more
  const down = new QuotaClient({ target: `127.0.0.1:${port}`, protocol, retries: 2, backoffMs: 1, timeoutMs: 10_000 });
  try {
    const err = await failure(down.consume("acme", "ai_dialog", 1));
    assert.equal(err.codeName, "UNAVAILABLE");
  } finally {
    down.close();
  }
});

test("E2 a webhook endpoint is created with its secret shown once, listed, disabled, enabled, rotated, deleted", async () => {
  const id = await account(0);
  const made = await quota.createWebhookEndpoint(PUBLIC_URL, {
    accountId: id, eventTypes: ["alert.triggered", "balance.topped_up"], description: "billing bot", idempotencyKey: `we-${id}`,
  });
  const e = made.endpoint;
  assert.match(made.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  assert.equal(made.replayed, false);
  assert.match(e.endpointId, /^we_/);
  assert.deepEqual([e.accountId, e.orgId, e.url, e.eventTypes, e.description, e.enabled, e.disabledReason],
    [id, "", PUBLIC_URL, ["alert.triggered", "balance.topped_up"], "billing bot", true, ""]);
  assert.equal(e.previousSecretUntilMs, 0n);
  // the same idempotency key replays the answer, without the secret
  const again = await quota.createWebhookEndpoint(PUBLIC_URL, {
    accountId: id, eventTypes: ["alert.triggered", "balance.topped_up"], description: "billing bot", idempotencyKey: `we-${id}`,
  });
  assert.deepEqual([again.replayed, again.secret, again.endpoint.endpointId], [true, "", e.endpointId]);

  const page = await quota.listWebhookEndpoints({ accountId: id });
  assert.deepEqual(page.endpoints.map((x) => x.endpointId), [e.endpointId]);
  assert.equal(page.nextPageToken, "");
  assert.ok(!JSON.stringify(page, (_, v) => (typeof v === "bigint" ? `${v}` : v)).includes(made.secret.slice(6)));

  const off = await quota.setWebhookEndpointEnabled(e.endpointId, false);
  assert.deepEqual([off.endpoint.enabled, off.endpoint.disabledReason, off.replayed], [false, "manual", false]);
  const on = await quota.setWebhookEndpointEnabled(e.endpointId, true);
  assert.deepEqual([on.endpoint.enabled, on.endpoint.disabledReason], [true, ""]);

  const rotated = await quota.rotateWebhookSecret(e.endpointId);
  assert.match(rotated.secret, /^whsec_/);
  assert.notEqual(rotated.secret, made.secret);
  assert.ok(rotated.endpoint.previousSecretUntilMs > e.createdAtMs, "unset grace: the old secret signs for 24 h");
  const cut = await quota.rotateWebhookSecret(e.endpointId, { graceSeconds: 0 });
  assert.ok(cut.secret && cut.secret !== rotated.secret);
  assert.equal(cut.endpoint.previousSecretUntilMs, 0n, "grace 0: the old secret stops at once");
  const tooLong = await failure(quota.rotateWebhookSecret(e.endpointId, { graceSeconds: 604_801 }));
  assert.equal(tooLong.codeName, "INVALID_ARGUMENT");
  assert.deepEqual(tooLong.fieldViolations.map((v) => v.field), ["grace_seconds"]);

  const gone = await quota.deleteWebhookEndpoint(e.endpointId);
  assert.deepEqual([gone.endpointId, gone.replayed], [e.endpointId, false]);
  assert.deepEqual((await quota.listWebhookEndpoints({ accountId: id })).endpoints, []);
  const err = await failure(quota.setWebhookEndpointEnabled(e.endpointId, true));
  assert.equal(err.codeName, "NOT_FOUND");
  assert.match(err.details, /endpoint_id/);
});

test("E2 a webhook URL at a private address is refused with INVALID_ARGUMENT naming url", async () => {
  const id = await account(0);
  const err = await failure(quota.createWebhookEndpoint("https://127.0.0.1/hook", { accountId: id }));
  assert.equal(err.codeName, "INVALID_ARGUMENT");
  assert.deepEqual(err.fieldViolations.map((v) => v.field), ["url"]);
  assert.match(err.details, /loopback/);
  assert.deepEqual((await quota.listWebhookEndpoints({ accountId: id })).endpoints, []);
});

test("E2 an endpoint's deliveries are listed; a replay of the endpoint answers how many are pending again", async () => {
  // No delivery is ever sent to PUBLIC_URL: the event is made while the endpoint that takes its type is
  // disabled, and the replay goes to an enabled endpoint of other types (so 0 deliveries are pending again).
  const id = await account(0);
  const topUps = await quota.createWebhookEndpoint(PUBLIC_URL, { accountId: id, eventTypes: ["balance.topped_up"] });
  const plans = await quota.createWebhookEndpoint(PUBLIC_URL, { accountId: id, eventTypes: ["plan.changed"] });
  const [off, on] = [topUps.endpoint.endpointId, plans.endpoint.endpointId];
  await quota.setWebhookEndpointEnabled(off, false);
  await quota.topUp(id, 5, { meter: "ai_dialog", source: "plan" });
  const eventId = await firstEventId(id, "balance.topped_up");
  assert.match(eventId, /^evt_/);
  // a disabled endpoint gets no new deliveries; the other one does not take the event's type
  const listed = await quota.listDeliveries({ endpointId: off });
  assert.deepEqual([listed.deliveries, listed.nextPageToken], [[], ""]);
  assert.deepEqual((await quota.listDeliveries({ endpointId: on, pageSize: 10 })).deliveries, []);
  assert.deepEqual((await quota.listDeliveries({ accountId: id })).deliveries, []);
  const neither = await failure(quota.listDeliveries());
  assert.equal(neither.codeName, "INVALID_ARGUMENT");
  assert.deepEqual(neither.fieldViolations.map((v) => v.field), ["endpoint_id"]);

  const request = { endpointId: on, sinceEventId: eventId, idempotencyKey: `replay-${id}` };
  const replay = await quota.replayDeliveries(request);
  assert.deepEqual([replay.deliveries, replay.replayed], [0, false]);
  const again = await quota.replayDeliveries(request);
  assert.deepEqual([again.deliveries, again.replayed], [0, true]);
  const disabled = await failure(quota.replayDeliveries({ endpointId: off, sinceEventId: eventId }));
  assert.equal(disabled.codeName, "FAILED_PRECONDITION");
  const unknown = await failure(quota.replayDeliveries({ endpointId: on, sinceEventId: "evt_00000000000000000000000000" }));
  assert.equal(unknown.codeName, "NOT_FOUND");
  assert.match(unknown.details, /since_event_id/);
  await quota.deleteWebhookEndpoint(off);
  await quota.deleteWebhookEndpoint(on);
});

test("E3 billing contacts: the addresses and language of an account's email notices", async () => {
  const id = await account(0);
  const set = await quota.setBillingContacts(id, ["billing@acme.example", "ops@acme.example"], { language: "id" });
  assert.deepEqual([set.accountId, set.billingEmails, set.language], [id, ["billing@acme.example", "ops@acme.example"], "id"]);
  const kept = await quota.setBillingContacts(id, []);
  assert.deepEqual([kept.billingEmails, kept.language], [[], "id"]);
  const bad = await failure(quota.setBillingContacts(id, ["not an address"]));
  assert.equal(bad.codeName, "INVALID_ARGUMENT");
  assert.deepEqual(bad.fieldViolations.map((v) => v.field), ["emails[0]"]);
});

test("A2 the catalogue lists every shipped product, or one by name; an unknown product is NOT_FOUND", async () => {
  const all = await quota.listCatalogue();
  assert.deepEqual(all.products.map((p) => p.product), SHIPPED_PRODUCTS);
  const { products } = await quota.listCatalogue({ product: "ai_chatbot" });
  assert.equal(products.length, 1);
  const [chatbot] = products;
  assert.equal(chatbot.product, "ai_chatbot");
  assert.ok(chatbot.version >= 1n && chatbot.contentHash, "a version and a content hash");
  assert.deepEqual(chatbot.meters.map((m) => [m.name, m.kind, m.unit]), [["ai_dialog", "count", "dialog"]]);
  assert.ok(chatbot.plans.some((p) => p.plan === "starter" && p.kind === "subscription"), "the starter plan");
  assert.deepEqual(chatbot, all.products.find((p) => p.product === "ai_chatbot"));
  const err = await failure(quota.listCatalogue({ product: "no_such_product" }));
  assert.equal(err.codeName, "NOT_FOUND");
  assert.match(err.details, /no_such_product/);
});

test("the chat-router example hands the chat to an agent when AI dialogs run out", async () => {
  const example = fileURLToPath(new URL("../examples/chat-router.mjs", import.meta.url));
  const id = `ts-${randomUUID().slice(0, 12)}`;
  const { stdout } = await promisify(execFile)(process.execPath, [example, target, id, protocol], { timeout: 60_000 });
  assert.deepEqual(stdout.trim().split("\n"), [
    "m1 r-17: AI answers (1 dialog left)",
    "m2 r-17: AI answers (0 dialogs left)",
    "m2 r-17: AI answers (0 dialogs left, replayed)",
    "m3 r-17: handed to an agent (QUOTA_EXHAUSTED)",
  ]);
  const m = await meter(id);
  assert.deepEqual([m.granted, m.used], [2n, 2n]);
});
