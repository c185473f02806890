#include "config/table_reader.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

SourcePos pos_of(const toml::node& node) {
  const auto& src = node.source();
  return {static_cast<int>(src.begin.line), static_cast<int>(src.begin.column)};
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best_d <= std::max<std::size_t>(2, word.size() / 3) ? best : std::string();
}

TableReader::TableReader(const toml::table& table, std::string file, std::string where)
    : table_(table), file_(std::move(file)), where_(std::move(where)) {}

std::string TableReader::dotted(const std::string& key) const {
  if (where_.empty()) return key;
  if (key.empty()) return where_;
  return where_ + "." + key;
}

SourcePos TableReader::table_pos() const {
  return pos_of(table_);
}

SourcePos TableReader::pos(const std::string& key) const {
  if (const toml::node* n = table_.get(key)) return pos_of(*n);
  return table_pos();
}

void TableReader::fail(const std::string& key, const std::string& why, const toml::node* at) const {
  SourcePos p = at ? pos_of(*at) : pos(key);
  throw config_error(file_, p.line, p.column, dotted(key), why);
}

const toml::node* TableReader::lookup(const std::string& key) {
  seen_.push_back(key);
  return table_.get(key);
}

const toml::node* TableReader::node(const std::string& key) {
  return lookup(key);
}

std::optional<std::string> TableReader::string(const std::string& key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_string()) fail(key, fmt::format("must be a string, not {}", type_name(*n)), n);
  return n->as_string()->get();
}

std::optional<long long> TableReader::integer(const std::string& key, long long min,
                                              long long max) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_integer()) fail(key, fmt::format("must be an integer, not {}", type_name(*n)), n);
  const long long v = n->as_integer()->get();
  if (v < min || v > max)
    fail(key, fmt::format("must be between {} and {}, not {}", min, max, v), n);
  return v;
}

std::optional<double> TableReader::number(const std::string& key, double min, double max) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  double v = 0;
  if (n->is_integer()) {
    v = static_cast<double>(n->as_integer()->get());
  } else if (n->is_floating_point()) {
    v = n->as_floating_point()->get();
  } else {
    fail(key, fmt::format("must be a number, not {}", type_name(*n)), n);
  }
  if (!(v >= min && v <= max))
    fail(key, fmt::format("must be between {} and {}, not {}", min, max, v), n);
  return v;
}

std::optional<bool> TableReader::boolean(const std::string& key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_boolean()) fail(key, fmt::format("must be true or false, not {}", type_name(*n)), n);
  return n->as_boolean()->get();
}

std::optional<std::vector<std::string>> TableReader::string_array(const std::string& key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_array())
    fail(key, fmt::format("must be an array of strings, not {}", type_name(*n)), n);
  std::vector<std::string> out;
  const toml::array& arr = *n->as_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const toml::node& e = arr[i];
    if (!e.is_string()) {
      fail(key, fmt::format("element {} must be a string, not {}", i, type_name(e)), &e);
    }
    out.push_back(e.as_string()->get());
  }
  return out;
}

const toml::table* TableReader::table(const std::string& key) {
  const toml::node* n = lookup(key);
  if (!n) return nullptr;
  if (!n->is_table()) fail(key, fmt::format("must be a table, not {}", type_name(*n)), n);
  return n->as_table();
}

const toml::array* TableReader::array_of_tables(const std::string& key) {
  const toml::node* n = lookup(key);
  if (!n) return nullptr;
  if (!n->is_array_of_tables()) {
    fail(key, fmt::format("must be an array of tables ([[{}]]), not {}", key, type_name(*n)), n);
  }
  return n->as_array();
}

void TableReader::reject_unknown(const std::vector<std::string>& known) const {
  for (auto&& [k, v] : table_) {
    const std::string key(k.str());
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) continue;
    std::string hint = closest_match(key, known);
    std::string msg = hint.empty()
                          ? fmt::format("unknown key (known keys: {})", fmt::join(known, ", "))
                          : fmt::format("unknown key; did you mean '{}'?", hint);
    const auto& src = k.source();
    const int line = src.begin.line ? static_cast<int>(src.begin.line) : pos_of(v).line;
    const int col = src.begin.line ? static_cast<int>(src.begin.column) : pos_of(v).column;
    throw config_error(file_, line, col, dotted(key), msg);
  }
}

std::string one_of(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += "\"" + names[i] + "\"";
  }
  return out;
}

}  // namespace tandem::detail
