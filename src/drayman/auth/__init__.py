"""Who may use drayman's web UI and API, and what each may do.

`passwords` (argon2id hashing), `users` (accounts and login with a rate limit), `tokens` (API
tokens for scripts), `sessions` (browser sessions), `roles` (what a role allows), `throttle`
(the login rate limit), `secret` (the key that signs cookies and CSRF tokens). Every function
that touches the database takes the `Store` and a `now`, and opens its own short
transactions: a password check takes tens of milliseconds and must not hold a write lock.
See docs/security.md.
"""
