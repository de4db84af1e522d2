// The client's own logic, on an in-memory Connect transport (no network): the idempotency key of one
// logical call is reused on every retry, only UNAVAILABLE is retried, retries stop at `retries` and
// at the deadline, and the API key travels as a Bearer token.
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { DecisionSchema, DecisionStatus, QuotaClient, QuotaClientError, QuotaService } from "@chat-quota/client";

/** A transport whose Consume fails with `codes` in turn, then grants; it records every request seen. */
function scripted(codes) {
  const seen = [];
  const transport = createRouterTransport(({ service }) => {
    service(QuotaService, {
      consume(request, context) {
        seen.push({ key: request.idempotencyKey, authorization: context.requestHeader.get("authorization") });
        const code = codes[seen.length - 1];
        if (code !== undefined) {
          throw new ConnectError("backend down", code);
        }
        return create(DecisionSchema, { status: DecisionStatus.GRANTED, amount: request.amount, remaining: 9n });
      },
    });
  });
  return { transport, seen };
}

test("UNAVAILABLE is retried with the same idempotency key, then the answer is returned", async () => {
  const { transport, seen } = scripted([Code.Unavailable, Code.Unavailable]);
  const quota = new QuotaClient({ transport, apiKey: "qk_a_b", backoffMs: 1, timeoutMs: 5000 });
  const decision = await quota.consume("acme", "ai_dialog", 1);
  assert.equal(decision.status, DecisionStatus.GRANTED);
  assert.equal(decision.remaining, 9n);
  assert.equal(seen.length, 3);
  assert.equal(new Set(seen.map((s) => s.key)).size, 1, "one key for the three attempts");
  assert.match(seen[0].key, /^[0-9a-f-]{36}$/);
});

test("a caller's idempotency key is sent as given; two logical calls get two keys", async () => {
  const { transport, seen } = scripted([]);
  const quota = new QuotaClient({ transport, apiKey: "" });
  await quota.consume("acme", "ai_dialog", 1, { idempotencyKey: "msg-42" });
  await quota.consume("acme", "ai_dialog", 1);
  await quota.consume("acme", "ai_dialog", 1);
  assert.equal(seen[0].key, "msg-42");
  assert.notEqual(seen[1].key, seen[2].key);
});

test("an error other than UNAVAILABLE is not retried", async () => {
  const { transport, seen } = scripted([Code.InvalidArgument]);
  const quota = new QuotaClient({ transport, apiKey: "", backoffMs: 1 });
  await assert.rejects(quota.consume("acme", "ai_dialog", 1), (err) => {
    assert.ok(err instanceof QuotaClientError);
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.details, "backend down");
    return true;
  });
  assert.equal(seen.length, 1);
});

test("retries stop after `retries`, with the UNAVAILABLE error", async () => {
  const { transport, seen } = scripted(Array(10).fill(Code.Unavailable));
  const quota = new QuotaClient({ transport, apiKey: "", retries: 2, backoffMs: 1, timeoutMs: 5000 });
  await assert.rejects(quota.consume("acme", "ai_dialog", 1), { name: "QuotaClientError", codeName: "UNAVAILABLE" });
  assert.equal(seen.length, 3);
});

test("no retry is made when its backoff would pass the deadline", async () => {
  // the first backoff is at least 0.5 x 10 s, far past the 200 ms deadline
  const { transport, seen } = scripted(Array(10).fill(Code.Unavailable));
  const quota = new QuotaClient({ transport, apiKey: "", backoffMs: 10_000, timeoutMs: 200 });
  await assert.rejects(quota.consume("acme", "ai_dialog", 1), { codeName: "UNAVAILABLE" });
  assert.equal(seen.length, 1);
});

test("the API key is sent as a Bearer token; none is sent without a key", async () => {
  const { transport, seen } = scripted([]);
  await new QuotaClient({ transport, apiKey: "qk_id_secret" }).consume("acme", "ai_dialog", 1);
  await new QuotaClient({ transport, apiKey: "" }).consume("acme", "ai_dialog", 1);
  assert.equal(seen[0].authorization, "Bearer qk_id_secret");
  assert.equal(seen[1].authorization, null);
});

test("amounts take a safe integer or a bigint; a fraction is refused without a call, naming the field", async () => {
  const { transport, seen } = scripted([]);
  const quota = new QuotaClient({ transport, apiKey: "" });
  assert.equal((await quota.consume("acme", "ai_dialog", 2n)).amount, 2n);
  await assert.rejects(quota.consume("acme", "ai_dialog", 1.5), { name: "RangeError", message: /^amount: 1\.5/ });
  assert.equal(seen.length, 1);
});
