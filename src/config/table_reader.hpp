#pragma once
// TableReader reads one TOML table key by key with type checks, remembers
// which keys it read, and reports the rest as unknown. Every error names the
// file, the line and column, and the dotted key.

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <vector>

#include "config/workflow.hpp"

namespace tandem::detail {

/// "\"a\", \"b\" or \"c\"", for messages that list what a value may be.
std::string one_of(const std::vector<std::string>& names);

class TableReader {
 public:
  /// @param where the dotted name of the table, e.g. "task[2]"; empty at top.
  TableReader(const toml::table& table, std::string file, std::string where);

  std::optional<std::string> string(const std::string& key);
  std::optional<long long> integer(const std::string& key, long long min, long long max);
  std::optional<double> number(const std::string& key, double min, double max);
  std::optional<bool> boolean(const std::string& key);
  std::optional<std::vector<std::string>> string_array(const std::string& key);
  const toml::table* table(const std::string& key);
  const toml::array* array_of_tables(const std::string& key);
  /// The value of @p key as one of the names of enum E (base/enum_names.hpp);
  /// any other string fails with the names it may be.
  template <typename E>
  std::optional<E> choice(const std::string& key) {
    const auto v = string(key);
    if (!v) return std::nullopt;
    if (const auto e = parse_name<E>(*v)) return e;
    fail(key, "must be " + one_of(names_of<E>()) + ", not \"" + *v + "\"");
  }
  /// Any value, for keys whose type the caller checks itself.
  const toml::node* node(const std::string& key);

  /// Throws for the first key that no call above asked for.
  void reject_unknown(const std::vector<std::string>& known) const;

  /// A config_error at @p node (or at the table) for @p key.
  [[noreturn]] void fail(const std::string& key, const std::string& why,
                         const toml::node* at = nullptr) const;

  std::string dotted(const std::string& key) const;
  SourcePos pos(const std::string& key) const;
  SourcePos table_pos() const;
  const std::string& file() const { return file_; }

 private:
  const toml::node* lookup(const std::string& key);

  const toml::table& table_;
  std::string file_;
  std::string where_;
  std::vector<std::string> seen_;
};

/// The position of a node in its file.
SourcePos pos_of(const toml::node& node);

/// The closest of @p candidates to @p word, or "" when none is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace tandem::detail
