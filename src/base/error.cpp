#include "tandem/error.hpp"

#include <fmt/format.h>

#include "base/raise.hpp"
#include "tandem/version.hpp"

namespace tandem {

namespace {
std::string located(const std::string& file, int line, int column, const std::string& key,
                    const std::string& what) {
  std::string where = file;
  if (line > 0) where += fmt::format(":{}:{}", line, column);
  if (!key.empty()) where += fmt::format(": {}", key);
  return fmt::format("{}: {}", where, what);
}
}  // namespace

config_error::config_error(std::string file, int line, int column, std::string key,
                           const std::string& what)
    : error(located(file, line, column, key, what), status::config),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      reason_(what) {}

namespace detail {
namespace {
std::string g_origin;  // set once, at start-up, before any thread that raises
}  // namespace

void set_error_origin(std::string origin) {
  g_origin = std::move(origin);
}

std::string with_origin(const std::string& message) {
  return g_origin.empty() ? message : fmt::format("{}: {}", g_origin, message);
}
}  // namespace detail

const char* version() noexcept {
  return TANDEM_VERSION_STRING;
}

}  // namespace tandem
