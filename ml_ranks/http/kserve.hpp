#pragma once
// The KServe v2 inference protocol's bodies: tensors to a request (JSON
// data, or the binary-data extension where the JSON header is followed by
// the raw bytes and its length travels in Inference-Header-Content-Length),
// and a response back to tensors, checking everything a server could get
// wrong. Used by process services and by the bridge.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "tandem/tensor.hpp"

namespace tandem::detail::kserve {

/// A POST /v2/models/{m}/infer body with the data as JSON arrays.
/// @throws tandem::error for dtypes JSON cannot carry (FP16, BF16, BYTES).
std::string json_request(const TensorList& inputs, const std::vector<std::string>& outputs,
                         const std::string& id);

/// The same with the binary-data extension; @p header_length receives the
/// JSON header's size for Inference-Header-Content-Length. Outputs are asked
/// for as binary too.
std::string binary_request(const TensorList& inputs, const std::vector<std::string>& outputs,
                           const std::string& id, std::size_t& header_length);

/// Parses an inference response: JSON alone, or a JSON header of
/// @p header_length bytes followed by binary outputs. Returns false with
/// @p why saying what is wrong with it.
bool parse_response(const std::string& body, std::optional<std::size_t> header_length,
                    TensorList& outputs, std::string& why);

}  // namespace tandem::detail::kserve
