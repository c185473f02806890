#pragma once
// The states of a task instance and how one attempt ended: shared by the
// scheduler, the workers' reports, command tasks and the journal.

#include <cstdint>

#include "base/enum_names.hpp"

namespace tandem::detail {

/// NEW until handed out (SCHEDULED), RUNNING once a worker started it, then
/// DONE, FAILED or CANCELED.
enum class TaskState : std::uint8_t { NEW, SCHEDULED, RUNNING, DONE, FAILED, CANCELED };
constexpr int kTaskStateCount = 6;

template <>
struct EnumNames<TaskState> {
  static constexpr EnumName<TaskState> values[] = {
      {TaskState::NEW, "NEW"},         {TaskState::SCHEDULED, "SCHEDULED"},
      {TaskState::RUNNING, "RUNNING"}, {TaskState::DONE, "DONE"},
      {TaskState::FAILED, "FAILED"},   {TaskState::CANCELED, "CANCELED"}};
};

inline bool is_final(TaskState s) {
  return s == TaskState::DONE || s == TaskState::FAILED || s == TaskState::CANCELED;
}

/// How one attempt on one rank ended, as a worker reports it.
enum class Outcome : std::uint8_t { done, failed, canceled };
template <>
struct EnumNames<Outcome> {
  static constexpr EnumName<Outcome> values[] = {
      {Outcome::done, "done"}, {Outcome::failed, "failed"}, {Outcome::canceled, "canceled"}};
};

}  // namespace tandem::detail
