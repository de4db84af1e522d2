"""Delivery of events: webhooks (webhook.py, signed per Standard Webhooks), email (email.py), the
dispatcher that sends and retries them (dispatcher.py, schedule.py) and the SSRF guard (ssrf.py)."""
