"""The metadata store: SQLAlchemy Core schema, engine set-up, and every query drayman makes.

One module per noun (`bundles`, `dags`, `runs`, `tries`, `pools`, `components`); each
function takes a `Connection` inside a transaction that its caller opened with
`Store.begin()`, so a state change and the changes that must go with it commit together.
What they read comes back as frozen dataclasses of the store's own (`rows` for whole table
rows, the others next to their query), never as SQLAlchemy rows; and the store never calls
back into its callers: what it needs from them (a retry delay) it is given as a value.
"""
