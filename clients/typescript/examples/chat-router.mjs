// A chat router: before the AI answers a customer's message it consumes one `ai_dialog`. When the
// account's AI dialogs have run out, the service answers DENIED with the action the plan asks for,
// HANDOFF_TO_AGENT, and the router hands the chat to a human agent instead.
//
// The message's id is the idempotency key: a message the chat platform delivers twice is charged once
// (the second answer is the first one again, `replayed`).
//
//   npm run build
//   QUOTA_API_KEY=$(cat ../../.data/admin.key) node examples/chat-router.mjs [host:port] [account]
import { pathToFileURL } from "node:url";

import { DecisionStatus, DenyReason, ExhaustedAction, QuotaClient } from "@chat-quota/client";

/**
 * Route one customer message: the AI answers while the account has dialogs, an agent takes over
 * when the plan says so. Returns what happened, for the caller's logs.
 */
export async function routeMessage(quota, accountId, message) {
  const decision = await quota.consume(accountId, "ai_dialog", 1, {
    idempotencyKey: `msg-${message.id}`,
    attributes: { room_id: message.roomId, channel: message.channel },
  });
  if (decision.status === DecisionStatus.GRANTED) {
    const left = `${decision.remaining} dialog${decision.remaining === 1n ? "" : "s"} left`;
    return `${message.id} ${message.roomId}: AI answers (${left}${decision.replayed ? ", replayed" : ""})`;
  }
  const reason = DenyReason[decision.reason];
  if (decision.action === ExhaustedAction.HANDOFF_TO_AGENT) {
    return `${message.id} ${message.roomId}: handed to an agent (${reason})`;
  }
  return `${message.id} ${message.roomId}: no AI answer (${reason})`;
}

async function main(target, accountId, protocol) {
  const quota = new QuotaClient({ target, protocol, timeoutMs: 5000 });
  try {
    // the plan: AI dialogs hand the chat to an agent when they run out; two dialogs bought
    await quota.createAccount(accountId, {
      policies: [{ meter: "ai_dialog", exhaustedAction: ExhaustedAction.HANDOFF_TO_AGENT, alertPctLeft: [40, 0] }],
    });
    await quota.topUp(accountId, 2, { meter: "ai_dialog", source: "plan" });
    const room = { roomId: "r-17", channel: "whatsapp" };
    const messages = [{ id: "m1", ...room }, { id: "m2", ...room }, { id: "m2", ...room }, { id: "m3", ...room }];
    for (const message of messages) {
      console.log(await routeMessage(quota, accountId, message));
    }
  } finally {
    quota.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  // protocol: "grpc" (target: the gRPC port) or "connect" (target: the HTTP port, e.g. 127.0.0.1:8080)
  const [target = "127.0.0.1:50051", accountId = `acme-${Date.now()}`, protocol = "grpc"] = process.argv.slice(2);
  await main(target, accountId, protocol);
}
