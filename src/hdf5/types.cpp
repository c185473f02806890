#include "hdf5/types.hpp"

#include <hdf5.h>

namespace tandem::detail::h5 {

Id stored_type(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
    case DType::UINT8:
    case DType::BYTES:
      return H5T_STD_U8LE;
    case DType::UINT16:
    case DType::FP16:  // no half types in HDF5 1.10: stored as their bits
    case DType::BF16:
      return H5T_STD_U16LE;
    case DType::UINT32:
      return H5T_STD_U32LE;
    case DType::UINT64:
      return H5T_STD_U64LE;
    case DType::INT8:
      return H5T_STD_I8LE;
    case DType::INT16:
      return H5T_STD_I16LE;
    case DType::INT32:
      return H5T_STD_I32LE;
    case DType::INT64:
      return H5T_STD_I64LE;
    case DType::FP32:
      return H5T_IEEE_F32LE;
    case DType::FP64:
      return H5T_IEEE_F64LE;
  }
  return H5T_STD_U8LE;
}

bool holds(Id type, DType dtype) {
  Access access;
  const hid_t want = stored_type(dtype);
  return H5Tget_class(type) == H5Tget_class(want) && H5Tget_size(type) == dtype_size(dtype) &&
         (H5Tget_class(type) != H5T_INTEGER || H5Tget_sign(type) == H5Tget_sign(want));
}

Compound::Compound(std::size_t size) {
  Access access;
  handle_ = Handle(H5Tcreate(H5T_COMPOUND, size), H5Tclose);
}

void Compound::add(const char* name, std::size_t offset, Int type) {
  Access access;
  const hid_t t = type == Int::i32   ? H5T_NATIVE_INT32
                  : type == Int::i64 ? H5T_NATIVE_INT64
                                     : H5T_NATIVE_UINT64;
  H5Tinsert(handle_.id(), name, offset, t);
}

Compound Compound::packed() const {
  Access access;
  Handle copy(H5Tcopy(handle_.id()), H5Tclose);
  H5Tpack(copy.id());
  return Compound(std::move(copy));
}

}  // namespace tandem::detail::h5
