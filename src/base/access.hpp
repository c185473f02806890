#pragma once
// The library's way to the parts of public classes that users must not
// touch: the constructors that wrap Tandem's own state and the tensor that
// adopts a buffer Tandem owns. Each public class names detail::Access its
// friend, so these stay out of the API users see.

#include <memory>
#include <utility>
#include <vector>

#include "tandem/client.hpp"
#include "tandem/task.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail {

struct Access {
  /// The public client over a rank's ClientImpl.
  static Client make_client(std::shared_ptr<ClientImpl> impl) { return Client(std::move(impl)); }
  /// The context a function task gets for one attempt.
  static TaskContext make_context(const TaskContextData* data) noexcept {
    return TaskContext(data);
  }
  /// What a context shows (for the Python plugin, which builds its own).
  static const TaskContextData& data(const TaskContext& ctx) noexcept { return *ctx.data_; }
  /// A tensor over @p data that keeps @p owner alive.
  static Tensor adopt(DType dtype, std::vector<std::int64_t> shape, void* data,
                      std::shared_ptr<void> owner) {
    return Tensor::adopt(dtype, std::move(shape), data, std::move(owner));
  }
};

}  // namespace tandem::detail
