#include "tandem/error.hpp"

#include <fmt/format.h>

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
    : error(located(file, line, column, key, what)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      reason_(what) {}

const char* version() noexcept {
  return TANDEM_VERSION_STRING;
}

}  // namespace tandem
