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

import { DecisionStatus, DenyReason, ExhaustedAction, QuotaClient, QuotaClientError } from "@chat-quota/client";

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
