"""`python -m quota_client.cli`: the same as `quota-cli`."""

from quota_client.cli.app import main

raise SystemExit(main())
