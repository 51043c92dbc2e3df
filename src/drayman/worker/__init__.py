"""The Celery worker's engine (`drayman worker`): claim, run and record tries in batches.

Its rooms: `engine` (the pump thread and the rounds it runs), `requests` (what the Celery
threads hand the engine and how they are answered), `recorder` (outcomes and log chunks not
stored yet), `outage` (a database that is away). The claim itself is `drayman.store.remote_claims`;
the spec and run caches are `drayman.store.caches`; the warm processes that run the tries
are `drayman.runner.pool`.
"""
