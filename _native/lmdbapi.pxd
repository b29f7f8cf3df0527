# cython: language_level=3
# The vendored LMDB's C API (_native/lmdb/lmdb.h), as far as the modules that link it
# use it: logicalsum.pyx (walk a closed environment) and rangecopy.pyx (fill a new one).
# Only for environments no other handle has open (see _native/lmdb/README.md).
# Every failing return code becomes this package's error through lmdb_failure below.

cdef extern from "lmdb.h" nogil:
    ctypedef struct MDB_env:
        pass
    ctypedef struct MDB_txn:
        pass
    ctypedef struct MDB_cursor:
        pass
    ctypedef unsigned int MDB_dbi
    ctypedef struct MDB_val:
        size_t mv_size
        void *mv_data
    ctypedef enum MDB_cursor_op:
        MDB_FIRST
        MDB_NEXT
        MDB_SET_RANGE
    enum:
        MDB_RDONLY
        MDB_NOLOCK
        MDB_NOSYNC
        MDB_NOMETASYNC
        MDB_CREATE
        MDB_APPEND
        MDB_NOTFOUND
        MDB_KEYEXIST
        MDB_MAP_FULL
    int mdb_env_create(MDB_env **env)
    int mdb_env_set_maxdbs(MDB_env *env, MDB_dbi dbs)
    int mdb_env_set_mapsize(MDB_env *env, size_t size)
    int mdb_env_open(MDB_env *env, const char *path, unsigned int flags, unsigned int mode)
    int mdb_env_sync(MDB_env *env, int force)
    void mdb_env_close(MDB_env *env)
    int mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn)
    int mdb_txn_commit(MDB_txn *txn)
    void mdb_txn_abort(MDB_txn *txn)
    int mdb_dbi_open(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi)
    int mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor)
    void mdb_cursor_close(MDB_cursor *cursor)
    int mdb_cursor_get(MDB_cursor *cursor, MDB_val *key, MDB_val *data, MDB_cursor_op op)
    int mdb_cursor_put(MDB_cursor *cursor, MDB_val *key, MDB_val *data, unsigned int flags)
    char *mdb_strerror(int err)


cdef inline int open_env(MDB_env **env, const char *path, unsigned int flags,
                         size_t map_size) noexcept nogil:
    """Create and open ``*env`` (4 named databases; ``map_size`` 0 keeps LMDB's default).

    Returns LMDB's status; on failure ``*env`` is closed again and NULL.
    """
    cdef int rc = mdb_env_create(env)
    if rc:
        env[0] = NULL
        return rc
    rc = mdb_env_set_maxdbs(env[0], 4)
    if not rc and map_size:
        rc = mdb_env_set_mapsize(env[0], map_size)
    if not rc:
        rc = mdb_env_open(env[0], path, flags, 0o644)
    if rc:
        mdb_env_close(env[0])
        env[0] = NULL
    return rc


cdef inline void close_reader(MDB_cursor **cursor, MDB_txn **txn,
                              MDB_env **env) noexcept nogil:
    """Close whichever of a read cursor, its transaction and its environment are open."""
    if cursor[0] != NULL:
        mdb_cursor_close(cursor[0])
        cursor[0] = NULL
    if txn[0] != NULL:
        mdb_txn_abort(txn[0])
        txn[0] = NULL
    if env[0] != NULL:
        mdb_env_close(env[0])
        env[0] = NULL


cdef inline int open_items_reader(const char *path, MDB_env **env, MDB_txn **txn,
                                  MDB_cursor **cursor, bint *no_items) noexcept nogil:
    """Open a closed environment read-only (``MDB_NOLOCK``) with a cursor on ``items``.

    Returns LMDB's status (``*no_items`` set if the database does not exist); on failure
    everything opened is closed again.
    """
    cdef MDB_dbi dbi
    no_items[0] = False
    cdef int rc = open_env(env, path, MDB_RDONLY | MDB_NOLOCK, 0)
    if not rc:
        rc = mdb_txn_begin(env[0], NULL, MDB_RDONLY, txn)
    if not rc:
        rc = mdb_dbi_open(txn[0], "items", 0, &dbi)
        no_items[0] = rc == MDB_NOTFOUND
    if not rc:
        rc = mdb_cursor_open(txn[0], dbi, cursor)
    if rc:
        close_reader(cursor, txn, env)
    return rc


cdef inline object lmdb_failure(int rc, str what, str path):
    """The error to raise for LMDB's return code ``rc`` while doing ``what`` on ``path``.

    Goes through ``engine.errors.lmdb_error``, the one table that maps LMDB failures to
    this package's errors (py-lmdb's exceptions and these codes alike): corruption is a
    ``CorruptionError``, a full map a ``StorageFullError`` whose message says to raise
    ``map_size_bytes``, anything else a ``StorageError``; the message carries
    ``mdb_strerror``'s reason and names the file. Imported here, on the failure path only.
    """
    from engine.errors import lmdb_error
    reason = mdb_strerror(rc).decode("utf-8", "replace")
    return lmdb_error(rc, what=what, path=path, reason=reason)
