"""The metadata store: SQLAlchemy Core schema, engine set-up, and every query drayman makes.

One module per noun (`bundles`, `dags`, `runs`, `tries`, `pools`, `components`); each
function takes a `Connection` inside a transaction that its caller opened with
`Store.begin()`, so a state change and the changes that must go with it commit together.
"""
