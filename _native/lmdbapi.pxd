# cython: language_level=3
# The vendored LMDB's C API (_native/lmdb/lmdb.h), as far as the modules that link it
# use it: logicalsum.pyx (walk a closed environment) and rangecopy.pyx (fill a new one).
# Only for environments no other handle has open (see _native/lmdb/README.md).

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
