"""A webhook receiver: an aiohttp server that verifies each delivery of the quota service and prints
its event.

    WEBHOOK_SECRET=whsec_... .venv/bin/python clients/examples/webhook_receiver.py [HOST] [PORT] [PATH]

It listens on 127.0.0.1:8080/webhooks by default. The service delivers there only with
QUOTA_WEBHOOK_ALLOW_PRIVATE=true (a receiver on the same machine, for development); in production
the URL is https:// at a public address, with TLS ended by the receiver or a proxy in front of it.

During a secret rotation set WEBHOOK_SECRET to the new secret and WEBHOOK_PREVIOUS_SECRET to the old
one: a delivery signed with either is accepted. The answers follow what the service expects: 2xx is
delivered, 4xx and 5xx are retried (a bad signature is answered 400, so a misconfigured receiver
shows up in the delivery log), and 410 Gone would disable the endpoint.
"""

from __future__ import annotations

import json
import os
import sys

from aiohttp import web
from quota_client.webhooks import WebhookVerificationError, verify


def secrets_from_env() -> list[str]:
    found = [os.environ.get(name, "") for name in ("WEBHOOK_SECRET", "WEBHOOK_PREVIOUS_SECRET")]
    out = [s for s in found if s]
    if not out:
        raise SystemExit("set WEBHOOK_SECRET to the endpoint's whsec_... secret (quota-cli webhooks create prints it)")
    return out


def make_app(secrets: list[str], path: str = "/webhooks", seen: set[str] | None = None) -> web.Application:
    """The receiver: verify, skip an event already handled (a retry has the same webhook-id), print."""
    handled = seen if seen is not None else set()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers them exactly
        try:
            event = verify(request.headers, body, secrets)
        except WebhookVerificationError as exc:
            print(f"refused a delivery: {exc}", file=sys.stderr, flush=True)
            return web.Response(status=400, text=str(exc))
        if event["id"] in handled:
            return web.Response(status=204)  # a retry of an event already handled: acknowledge it again
        handled.add(event["id"])
        data = event.get("data", {})
        print(f"{event['timestamp']} {event['type']} account={data.get('account_id')} meter={data.get('meter', '')}: "
              f"{json.dumps(data, sort_keys=True)}", flush=True)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post(path, receive)
    return app


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    path = sys.argv[3] if len(sys.argv) > 3 else "/webhooks"
    web.run_app(make_app(secrets_from_env(), path), host=host, port=port, print=lambda m: print(m, file=sys.stderr))
