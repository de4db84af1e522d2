"""The application layer: each use case composes the pure rules of ``domain/`` and ``catalogue/``
with the stores of ``storage/``, which it receives at construction.

- ``reserve``: the hot path (Reserve, Commit, Release, Consume, Check, batches) and the rebuild of
  an account's Redis state from the ledger.
- ``subscriptions``: Subscribe, ChangePlan, ExtendSubscription, GetSubscription.
- ``billing_cycle``: the cycle end of every subscription (the cycler and ``roll_cycle``).
- ``settlement``: debts paid by top-ups, settlement rules, withheld resets released.
- ``top_ups``: the automatic top-up of a wallet (TA9).
- ``accounts``: accounts, top-ups, adjustments, status and owner changes.
- ``alerts``: the alert feed behind WatchAlerts.
"""
