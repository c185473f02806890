#pragma once
// What a rank does in the job. One enum for the layout plan (layout/plan.hpp),
// the logs and the rank's black box (base/rank_record.hpp), which stores it
// on disk: the values are fixed.

#include <cstdint>

#include "base/enum_names.hpp"

namespace tandem::detail {

enum class Role : std::int32_t { coordinator = 0, worker = 1, service = 2, idle = 3 };
template <>
struct EnumNames<Role> {
  static constexpr EnumName<Role> values[] = {{Role::coordinator, "coordinator"},
                                              {Role::worker, "worker"},
                                              {Role::service, "service"},
                                              {Role::idle, "idle"}};
};

}  // namespace tandem::detail
