#include "client/collective_parts.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tandem::detail {

std::size_t row_bytes_of(DType dtype, const std::vector<std::int64_t>& row_shape) {
  std::size_t n = dtype_size(dtype);
  for (const std::int64_t d : row_shape) n *= static_cast<std::size_t>(d);
  return n;
}

// Why this rank's inputs cannot go in a collective call to @p spec, or "".
std::string check_inputs(const ServiceSpec& spec, const TensorList& inputs) {
  if (inputs.empty()) return "no inputs";
  const std::int64_t rows = inputs[0].tensor.shape().empty() ? -1 : inputs[0].tensor.shape()[0];
  for (const NamedTensor& in : inputs) {
    const auto& shape = in.tensor.shape();
    if (shape.empty()) {
      return fmt::format("input '{}' has no batch dimension (a scalar); give it shape [rows, ...]",
                         in.name);
    }
    if (shape[0] != rows) {
      return fmt::format("input '{}' has {} rows and input '{}' {}; every input needs the same",
                         in.name, shape[0], inputs[0].name, rows);
    }
  }
  if (spec.inputs.empty()) return "";
  for (const NamedTensor& in : inputs) {
    const auto it = std::find_if(spec.inputs.begin(), spec.inputs.end(),
                                 [&](const TensorSpec& t) { return t.name == in.name; });
    if (it == spec.inputs.end()) {
      return fmt::format("input '{}' is not in service '{}''s signature", in.name, spec.name);
    }
    const auto want = static_cast<DType>(it->dtype);
    if (in.tensor.dtype() != want) {
      return fmt::format("input '{}' is {}, the signature says {}", in.name,
                         dtype_name(in.tensor.dtype()), dtype_name(want));
    }
    const auto& shape = in.tensor.shape();
    bool fits = shape.size() == it->shape.size();
    for (std::size_t d = 1; fits && d < shape.size(); ++d) {
      fits = it->shape[d] < 0 || it->shape[d] == shape[d];
    }
    if (!fits) {
      return fmt::format("input '{}' has shape {}, the signature says [{}]", in.name,
                         in.tensor.describe(), fmt::join(it->shape, ", "));
    }
  }
  for (const TensorSpec& t : spec.inputs) {
    if (std::none_of(inputs.begin(), inputs.end(),
                     [&](const NamedTensor& in) { return in.name == t.name; })) {
      return fmt::format("input '{}' of the signature is missing", t.name);
    }
  }
  return "";
}

// A digest of what must match across ranks: names, dtypes, non-batch shape.
std::int64_t layout_digest(const TensorList& inputs) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&](std::uint64_t v) {
    h ^= v;
    h *= 1099511628211ULL;
  };
  for (const NamedTensor& in : inputs) {
    for (const char c : in.name) mix(static_cast<unsigned char>(c));
    mix(static_cast<std::uint64_t>(in.tensor.dtype()) + 1000);
    const auto& shape = in.tensor.shape();
    for (std::size_t d = 1; d < shape.size(); ++d) mix(static_cast<std::uint64_t>(shape[d]) + 7);
    mix(0xffff);
  }
  return static_cast<std::int64_t>(h >> 1);  // positive, so that its negation fits
}

// The outputs' description, from the leader to its node: the error, or
// each output's name, dtype and shape less the batch dimension.
std::string describe_outputs(const std::string& error, const TensorList& outputs) {
  std::string d = error.empty() ? "ok\n" : "error\n" + error;
  if (!error.empty()) return d;
  for (const NamedTensor& o : outputs) {
    d += fmt::format("{}\n{}\n", o.name, static_cast<int>(o.tensor.dtype()));
    const auto& shape = o.tensor.shape();
    std::vector<std::int64_t> rest(shape.begin() + (shape.empty() ? 0 : 1), shape.end());
    d += fmt::format("{}\n", fmt::join(rest, " "));
  }
  return d;
}

// Reads describe_outputs' text; returns the error, or "" and the layouts.
std::string read_outputs(const std::string& text, std::vector<OutputLayout>& outs) {
  std::size_t at = text.find('\n');
  const std::string head = text.substr(0, at);
  if (head == "error") return text.substr(at + 1);
  auto line = [&] {
    const std::size_t start = at + 1;
    at = text.find('\n', start);
    return text.substr(start, at - start);
  };
  while (at + 1 < text.size()) {
    OutputLayout o;
    o.name = line();
    o.dtype = static_cast<DType>(std::stoi(line()));
    const std::string dims = line();
    std::size_t p = 0;
    while (p < dims.size()) {
      std::size_t end = dims.find(' ', p);
      if (end == std::string::npos) end = dims.size();
      o.row_shape.push_back(std::stoll(dims.substr(p, end - p)));
      p = end + 1;
    }
    o.row_bytes = row_bytes_of(o.dtype, o.row_shape);
    outs.push_back(std::move(o));
  }
  return "";
}

}  // namespace tandem::detail
