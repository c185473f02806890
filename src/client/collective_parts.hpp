#pragma once
// The pure parts of collective inference (client/collective.cpp): checking
// a rank's inputs against the signature, the digest the ranks compare, and
// the outputs' description that the node's leader posts.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail {

constexpr std::size_t kAlign = 64;  // each tensor's region starts on a cache line

inline std::size_t aligned(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

/// The bytes of one row of a tensor of @p dtype whose rows are @p row_shape.
std::size_t row_bytes_of(DType dtype, const std::vector<std::int64_t>& row_shape);

/// Why this rank's inputs cannot go in a collective call to @p spec, or "".
std::string check_inputs(const ServiceSpec& spec, const TensorList& inputs);

/// A digest of what must match across ranks: names, dtypes, non-batch
/// shapes (positive).
std::int64_t layout_digest(const TensorList& inputs);

/// The outputs' description that the leader posts: the error, or each
/// output's name, dtype and shape less the batch dimension.
std::string describe_outputs(const std::string& error, const TensorList& outputs);

/// One output's place in the output window.
struct OutputLayout {
  std::string name;
  DType dtype = DType::FP32;
  std::vector<std::int64_t> row_shape;
  std::size_t row_bytes = 0;
  std::size_t offset = 0;
};

/// Reads describe_outputs' text: the error, or "" and the outputs.
std::string read_outputs(const std::string& text, std::vector<OutputLayout>& outs);

}  // namespace tandem::detail
