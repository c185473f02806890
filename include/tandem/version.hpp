#pragma once
/// @file version.hpp
/// Tandem's version.

#define TANDEM_VERSION_MAJOR 0
#define TANDEM_VERSION_MINOR 1
#define TANDEM_VERSION_PATCH 0

namespace tandem {
/// The version as "MAJOR.MINOR.PATCH".
const char* version() noexcept;
}  // namespace tandem
