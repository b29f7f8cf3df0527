"""Secondary indexes (issue 14): LSIs kept in the base partitions, GSIs in their own
partitions fed from an outbox by a durable follower.

* :mod:`.definitions` — the shape and validation of index definitions;
* :mod:`.maintain` — index maintenance inside a base partition's write transaction;
* :mod:`.gsi_store` — a GSI's own partitions;
* :mod:`.follower` — applies the outboxes to the GSIs;
* :mod:`.manager` — the service: create/delete/backfill, describe, catch up;
* :mod:`.query` — Query and Scan on an index.
"""
