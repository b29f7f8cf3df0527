/* The names of the PyCapsules through which one native module lends a C function to
   another (see capi.pxd); PyCapsule_GetPointer checks them, so lender and borrower must
   agree on each string. */
#ifndef TESSERA_CAPSULES_H
#define TESSERA_CAPSULES_H

#define TK_STORAGE_KEY_CAPSULE "engine._keycodec._C_STORAGE_KEY"
#define TK_DECODE_ITEM_CAPSULE "engine._itemcodec._C_DECODE_ITEM"

#endif
