"""The `drayman` command. `main` imports only click; each command group imports what it
needs when it runs, so `drayman --version` stays fast."""
