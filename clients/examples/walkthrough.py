"""The README's walk-through: create an account, top up, reserve, commit, read the balance.

    QUOTA_API_KEY=$(cat .data/admin.key) .venv/bin/python clients/examples/walkthrough.py [TARGET] [ACCOUNT]
"""

from __future__ import annotations

import asyncio
import sys

from quota_client import AsyncQuotaClient, MeterPolicy, new_key


async def main(target: str, account: str) -> None:
    async with AsyncQuotaClient(target) as quota:
        # AI dialogs hand the chat to an agent when they run out; alerts at 40% and 0% left
        await quota.create_account(account, idempotency_key=f"create-{account}", policies=[
            MeterPolicy("ai_dialog", exhausted_action="HANDOFF_TO_AGENT", alert_pct_left=(40, 0))])
        await quota.top_up(account, 100, meter="ai_dialog", source="plan", idempotency_key=f"plan-{account}")

        hold = await quota.reserve(account, "ai_dialog", 1, idempotency_key=new_key(),
                                   attributes={"room_id": "r-17", "channel": "whatsapp"})
        if hold.granted:
            # ... the AI answers the customer's question here ...
            done = await quota.commit(account, hold.reservation_id, actual_amount=1)
            print(f"charged {done.amount} dialog, {done.remaining} left ({done.remaining_pct:.0f}%)")
        else:
            print(f"denied: {hold.reason}, caller should {hold.action or 'do nothing'}")

        m = (await quota.balance(account)).meters["ai_dialog"]
        print(f"ai_dialog: granted={m.granted} used={m.used} held={m.held} remaining={m.remaining}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051",
                     sys.argv[2] if len(sys.argv) > 2 else "acme"))
