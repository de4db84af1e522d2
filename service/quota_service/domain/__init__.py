"""Pure decisions and policies: no I/O, time from an injected clock."""
