#pragma once
// Errors that say where they were raised. An error raised on one rank is
// often read on another (a client's failed request, the combined start-up
// failure) or in a log of many ranks; "rank 3 service 'm' replica 0: ..."
// names the rank and what it does. ADIOS2's helper::Throw does the same.

#include <string>

namespace tandem::detail {

/// Sets what raise() puts before messages: "rank R LABEL", the same tag as
/// the rank's log lines (setup_logging calls it once the role is known).
void set_error_origin(std::string origin);

/// @p message after "rank R LABEL: " once set_error_origin was called on
/// this process; @p message alone before.
std::string with_origin(const std::string& message);

/// Throws E (a class of tandem's error family constructed from a message)
/// with @p message after this rank's origin.
template <class E>
[[noreturn]] void raise(const std::string& message) {
  throw E(with_origin(message));
}

}  // namespace tandem::detail
