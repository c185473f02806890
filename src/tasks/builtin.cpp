// Function tasks that every Tandem program has, for trying a layout out and
// for measuring the runtime's own overhead: tandem.null does nothing,
// tandem.sleep sleeps `seconds`, tandem.fail throws `message`.

#include <chrono>
#include <thread>

#include "tandem/error.hpp"
#include "tandem/task.hpp"

namespace {

void builtin_null(tandem::TaskContext&) {}

void builtin_sleep(tandem::TaskContext& ctx) {
  std::this_thread::sleep_for(std::chrono::duration<double>(ctx.arg_double("seconds", 0.1)));
}

void builtin_fail(tandem::TaskContext& ctx) {
  throw tandem::task_error(ctx.arg_string("message", "tandem.fail always fails"));
}

}  // namespace

TANDEM_REGISTER_TASK("tandem.null", builtin_null);
TANDEM_REGISTER_TASK("tandem.sleep", builtin_sleep);
TANDEM_REGISTER_TASK("tandem.fail", builtin_fail);
