"""Backups of partitioned tables (SPEC §6–8).

One module per job, data flowing one way: ``logical`` (the checksum over a partition's
items) → ``package`` (one partition → one ``.tar.zst`` object) → ``verify`` (re-inflate and
compare with the export before upload; reopen and re-walk on demand) → ``unpack`` (the
safe extractor that restore and verify share). ``manifest`` is the contract between them
and the object store.
"""
