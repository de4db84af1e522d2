// verifyWebhook, the receiving side of the service's webhooks, on deliveries signed here the way the
// service signs them (Standard Webhooks: "v1," + base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>"
// keyed with the base64 after "whsec_"), independently of the library verifyWebhook uses.
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";

import { WebhookVerificationError, verifyWebhook } from "@chat-quota/client";

const secret = () => `whsec_${randomBytes(24).toString("base64")}`;
const EVENT = {
  id: "evt_01JC4ZB3V6Q9W8KX2M7N5P0R1T",
  type: "balance.topped_up",
  timestamp: "2026-11-01T09:30:00.000Z",
  data: { meter: "ai_dialog", amount: 500, source: "manual", note: "Rp 50.000 – ünïcode" },
};
const BODY = JSON.stringify(EVENT);

function signature(key, id, timestampS, body) {
  const mac = createHmac("sha256", Buffer.from(key.slice("whsec_".length), "base64"));
  return `v1,${mac.update(`${id}.${timestampS}.${body}`).digest("base64")}`;
}

/** The headers of a delivery of `body` signed with each of `keys`, made `ageS` seconds ago. */
function delivery(keys, { body = BODY, ageS = 0, id = EVENT.id } = {}) {
  const ts = Math.floor(Date.now() / 1000) - ageS;
  return {
    "webhook-id": id,
    "webhook-timestamp": `${ts}`,
    "webhook-signature": keys.map((k) => signature(k, id, ts, body)).join(" "),
  };
}

function refused(fn, pattern) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof WebhookVerificationError, `${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test("E2 verifyWebhook returns the event of a signed delivery, from headers in any case or shape and a raw body", () => {
  const key = secret();
  const headers = delivery([key]);
  assert.deepEqual(verifyWebhook(headers, BODY, key), EVENT);
  // the raw bytes (a Buffer, a Uint8Array), headers as a fetch Headers, in capitals, as pairs, as arrays
  assert.deepEqual(verifyWebhook(new Headers(headers), Buffer.from(BODY), key), EVENT);
  const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
  assert.deepEqual(verifyWebhook(upper, new TextEncoder().encode(BODY), key), EVENT);
  assert.deepEqual(verifyWebhook(Object.entries(headers), BODY, [key]), EVENT);
  const arrays = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]]));
  assert.deepEqual(verifyWebhook({ ...arrays, "content-type": "application/json", host: undefined }, BODY, key), EVENT);
});

test("E2 during a secret rotation a delivery signed with both secrets verifies with either; another secret fails", () => {
  const [now, old] = [secret(), secret()];
  const headers = delivery([now, old]);
  assert.equal(headers["webhook-signature"].split(" ").length, 2);
  assert.deepEqual(verifyWebhook(headers, BODY, now), EVENT);
  assert.deepEqual(verifyWebhook(headers, BODY, old), EVENT);
  // a receiver that has switched to the new secret while the old one alone signs: pass both
  assert.deepEqual(verifyWebhook(delivery([old]), BODY, [now, old]), EVENT);
  refused(() => verifyWebhook(delivery([old]), BODY, now), /no signature in webhook-signature was made with the secret/);
  refused(() => verifyWebhook(headers, BODY, [secret(), secret()]), /no signature/);
});

test("E2 a changed, forged, stale, incomplete or malformed delivery is refused; a secret that is none is a TypeError", () => {
  const key = secret();
  const headers = delivery([key]);
  refused(() => verifyWebhook(headers, BODY.replace("500", "5000"), key), /no signature/);
  refused(() => verifyWebhook(headers, JSON.stringify(JSON.parse(BODY), null, 2), key), /no signature/);
  refused(() => verifyWebhook({ ...headers, "webhook-id": "evt_other" }, BODY, key), /no signature/);
  refused(() => verifyWebhook({ ...headers, "webhook-signature": "v2,abc" }, BODY, key), /no signature/);
  refused(() => verifyWebhook(delivery([key], { ageS: 301 }), BODY, key), /webhook-timestamp .* not within 300 s/);
  refused(() => verifyWebhook(delivery([key], { ageS: -301 }), BODY, key), /not within 300 s/);
  refused(() => verifyWebhook({ ...headers, "webhook-timestamp": "soon" }, BODY, key), /not a number of seconds/);
  const { "webhook-signature": _, ...unsigned } = headers;
  refused(() => verifyWebhook(unsigned, BODY, key), /^missing header: webhook-signature$/);
  refused(() => verifyWebhook({}, BODY, key), /^missing headers: webhook-id, webhook-timestamp, webhook-signature$/);
  const notUtf8 = Buffer.from([0x7b, 0xff, 0x7d]);
  refused(() => verifyWebhook(delivery([key], { body: notUtf8.toString("latin1") }), notUtf8, key), /not UTF-8/);
  refused(() => verifyWebhook(delivery([key], { body: "[1,2]" }), "[1,2]", key), /not a JSON object/);
  refused(() => verifyWebhook(delivery([key], { body: "ok" }), "ok", key), /not JSON/);
  assert.throws(() => verifyWebhook(headers, BODY, ""), TypeError);
  assert.throws(() => verifyWebhook(headers, BODY, []), TypeError);
  assert.throws(() => verifyWebhook(headers, BODY, "whsec_not*base64!"), /not a whsec_\.\.\. secret/);
});
