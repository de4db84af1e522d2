"""The billing core: pure planners that read plain data (grants, a subscription, a plan, the
boundary time) and return the ledger operations (``ops``) that carry out a billing rule. They do
no I/O; ``storage.billing`` applies their operations inside one Postgres transaction.
"""
