#pragma once
// One way to name the values of an enum, for every enum that has names in a
// workflow file, a log line, the journal or summary.json: a table of
// (value, name) pairs beside the enum, and three functions that read it.
// Names are parsed once (config/parse.cpp turns "remote" into
// BackendKind::remote); past parsing the code compares enums, never strings.
//
//   template <> struct EnumNames<Role> {
//     static constexpr EnumName<Role> values[] = {{Role::coordinator, "coordinator"}, ...};
//   };
//   name_of(Role::worker)          // "worker"
//   parse_name<Role>("worker")     // Role::worker; std::nullopt for an unknown name
//   names_of<Role>()               // {"coordinator", "worker", ...}, in table order

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::detail {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

/// Specialised beside each named enum with `static constexpr EnumName<E> values[]`.
template <typename E>
struct EnumNames;

/// The name of @p value; "?" for a value the table lacks (a bug, or bytes
/// from a message that is not ours).
template <typename E>
constexpr std::string_view name_of(E value) noexcept {
  for (const EnumName<E>& n : EnumNames<E>::values) {
    if (n.value == value) return n.name;
  }
  return "?";
}

/// The value called @p name, or nothing.
template <typename E>
constexpr std::optional<E> parse_name(std::string_view name) noexcept {
  for (const EnumName<E>& n : EnumNames<E>::values) {
    if (n.name == name) return n.value;
  }
  return std::nullopt;
}

/// Every name, in table order (for error messages and hints).
template <typename E>
std::vector<std::string> names_of() {
  std::vector<std::string> out;
  for (const EnumName<E>& n : EnumNames<E>::values) out.emplace_back(n.name);
  return out;
}

}  // namespace tandem::detail
