# cython: language_level=3
# The C functions one native module lends another. Each lender exports a PyCapsule holding
# the function's address under the name below; a borrower fetches it once at import
# (``PyCapsule_GetPointer`` checks the name) and then calls it as plain C, with no
# Python-level call in between. Cython's own cross-module ``cimport`` cannot serve here: it
# would import the lender by its .pxd's name ("keycodec"), not the extension's
# ("engine._keycodec").

from libc.stdint cimport uint8_t

cdef extern from "capsules.h":
    const char *STORAGE_KEY_CAPSULE "TK_STORAGE_KEY_CAPSULE"
    const char *DECODE_ITEM_CAPSULE "TK_DECODE_ITEM_CAPSULE"

# engine._keycodec: ``storage_key(mode, pk_value, pk_type, sk_value, sk_type)``.
ctypedef bytes (*storage_key_fn)(int mode, object pk_value, object pk_type,
                                 object sk_value, object sk_type)

# engine._itemcodec: check and decode the ``n`` stored bytes at ``p`` read under the storage
# key of ``key_len`` bytes at ``key`` (NULL: not known); ``projection`` is None or a
# set / frozenset / dict of top-level attribute names. Raises CorruptionError naming the key.
ctypedef object (*decode_item_fn)(const uint8_t *p, size_t n, object projection,
                                  const uint8_t *key, size_t key_len)
