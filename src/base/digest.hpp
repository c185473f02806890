#pragma once
// Content digests, for provenance: which model file produced a number.

#include <string>

namespace tandem::detail {

/// The SHA-256 of the file at @p path, as 64 lowercase hex digits.
/// @throws tandem::io_error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace tandem::detail
