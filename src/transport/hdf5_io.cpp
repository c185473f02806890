#include "transport/hdf5_io.hpp"

#include <fmt/format.h>

#include "hdf5/file.hpp"
#include "tandem/error.hpp"

namespace tandem::detail::hdf5 {

void write(const std::string& path, const TensorList& tensors, std::uint64_t request_id) {
  h5::File file = h5::File::create(path);
  for (const auto& t : tensors) {
    const auto& shape = t.tensor.shape();
    const h5::Id type = h5::stored_type(t.tensor.dtype());
    h5::Dataset set = file.create_dataset("/" + t.name, type, {shape.begin(), shape.end()});
    if (t.tensor.nbytes() > 0) set.write(type, t.tensor.data());
    set.set_attribute("tandem_dtype", std::string(dtype_name(t.tensor.dtype())));
    set.set_attribute("request_id", static_cast<std::int64_t>(request_id));
  }
  file.flush();
  file.close();
}

bool read(const std::string& path, const std::string& dataset, DType dtype,
          const std::vector<std::int64_t>& shape, Tensor& out, std::string& why) {
  try {
    const h5::File file = h5::File::open(path);
    if (!file.has(dataset)) {
      why = fmt::format("HDF5 file {} has no dataset {}", path, dataset);
      return false;
    }
    const h5::Dataset set = file.open_dataset(dataset);
    const auto dims = set.shape();
    const std::vector<std::int64_t> have(dims.begin(), dims.end());
    if (have != shape) {
      why = fmt::format("dataset {} in {} has shape [{}] but the request says [{}]", dataset, path,
                        fmt::join(have, ", "), fmt::join(shape, ", "));
      return false;
    }
    const std::string tag = set.string_attribute("tandem_dtype");
    if (!h5::holds(set.type().id(), dtype) || (!tag.empty() && tag != dtype_name(dtype))) {
      why = fmt::format("dataset {} in {} does not hold {} values{}", dataset, path,
                        dtype_name(dtype), tag.empty() ? "" : fmt::format(" (it holds {})", tag));
      return false;
    }
    Tensor t = Tensor::zeros(dtype, shape);
    if (t.nbytes() > 0) set.read(h5::stored_type(dtype), t.data());
    out = std::move(t);
    return true;
  } catch (const io_error& e) {
    why = e.what();
    return false;
  }
}

}  // namespace tandem::detail::hdf5
