#include "ml_ranks/serving/batching.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/access.hpp"
#include "transport/buffer_pool.hpp"

namespace tandem::detail {

namespace {

std::string shape_text(const std::vector<long long>& s) {
  std::vector<std::string> parts;
  parts.reserve(s.size());
  for (long long d : s) parts.push_back(d == -1 ? "-1" : std::to_string(d));
  return "[" + fmt::format("{}", fmt::join(parts, ", ")) + "]";
}

std::string names_of(const TensorList& list) {
  std::vector<std::string> names;
  for (const auto& t : list) names.push_back("'" + t.name + "'");
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

void mix(std::uint64_t& h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
}

}  // namespace

bool check_request(const ServiceSpec& spec, TensorList& inputs, std::int64_t& rows,
                   std::uint64_t& key, std::string& why) {
  // One unnamed input (a bare array from Python, NULL names from C) is the
  // service's only input, as the MPI client names it (client_impl.cpp):
  // requests on the direct path come unnamed.
  if (inputs.size() == 1 && inputs[0].name.empty() && spec.inputs.size() <= 1) {
    inputs[0].name = spec.inputs.empty() ? std::string("input") : spec.inputs[0].name;
  }
  if (!spec.inputs.empty()) {
    std::vector<std::string> wanted;
    for (const auto& s : spec.inputs) wanted.push_back("'" + s.name + "'");
    if (inputs.size() != spec.inputs.size()) {
      why =
          fmt::format("the request has {} input(s) ({}) but the service takes {} ({})",
                      inputs.size(), names_of(inputs), spec.inputs.size(), fmt::join(wanted, ", "));
      return false;
    }
    TensorList ordered;
    ordered.reserve(inputs.size());
    for (const TensorSpec& s : spec.inputs) {
      auto it = std::find_if(inputs.begin(), inputs.end(),
                             [&](const NamedTensor& t) { return t.name == s.name; });
      if (it == inputs.end()) {
        why = fmt::format("the request has no input '{}' (it has {}; the service takes {})", s.name,
                          names_of(inputs), fmt::join(wanted, ", "));
        return false;
      }
      const Tensor& t = it->tensor;
      if (static_cast<int>(t.dtype()) != s.dtype) {
        why = fmt::format("input '{}' is {} but the service takes {}", s.name,
                          dtype_name(t.dtype()), dtype_name(static_cast<DType>(s.dtype)));
        return false;
      }
      bool shape_ok = t.shape().size() == s.shape.size();
      for (std::size_t d = 0; shape_ok && d < s.shape.size(); ++d) {
        shape_ok = s.shape[d] == -1 || s.shape[d] == t.shape()[d];
      }
      if (!shape_ok) {
        why = fmt::format("input '{}' has shape {} but the service takes {}", s.name,
                          t.describe().substr(t.describe().find('[')), shape_text(s.shape));
        return false;
      }
      ordered.push_back(std::move(*it));
    }
    inputs = std::move(ordered);
  }
  rows = -1;
  key = 1469598103934665603ULL;
  for (const auto& in : inputs) {
    const auto& shape = in.tensor.shape();
    if (shape.empty()) {
      // A scalar cannot be batched: give the request a key of its own.
      rows = 1;
      mix(key, reinterpret_cast<std::uintptr_t>(in.tensor.data()));
      continue;
    }
    if (rows >= 0 && shape[0] != rows) {
      why = fmt::format("the inputs disagree on the batch dimension: '{}' has {} rows, '{}' has {}",
                        inputs[0].name, rows, in.name, shape[0]);
      return false;
    }
    rows = shape[0];
    mix(key, static_cast<std::uint64_t>(in.tensor.dtype()));
    for (std::size_t d = 1; d < shape.size(); ++d) mix(key, static_cast<std::uint64_t>(shape[d]));
    mix(key, std::hash<std::string>{}(in.name));
  }
  if (rows < 0) rows = 1;
  return true;
}

std::vector<QueuedRequest> take_batch(std::deque<QueuedRequest>& queue, int max_batch) {
  std::vector<QueuedRequest> batch;
  if (queue.empty()) return batch;
  std::int64_t rows = queue.front().rows;
  const std::uint64_t key = queue.front().key;
  batch.push_back(std::move(queue.front()));
  queue.pop_front();
  while (!queue.empty() && queue.front().key == key && rows + queue.front().rows <= max_batch) {
    rows += queue.front().rows;
    batch.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  return batch;
}

bool batch_due(const std::deque<QueuedRequest>& queue, int max_batch, int max_delay_us,
               bool draining, std::chrono::steady_clock::time_point now) {
  if (queue.empty()) return false;
  if (draining || max_delay_us == 0) return true;
  if (now - queue.front().received >= std::chrono::microseconds(max_delay_us)) return true;
  std::int64_t rows = 0;
  for (const auto& r : queue) {
    if (r.key != queue.front().key) return true;  // the batch cannot grow further
    rows += r.rows;
    if (rows >= max_batch) return true;
  }
  return false;
}

TensorList concatenate(const std::vector<QueuedRequest>& batch) {
  if (batch.size() == 1) return batch.front().inputs;
  std::int64_t rows = 0;
  for (const auto& r : batch) rows += r.rows;
  TensorList out;
  const TensorList& first = batch.front().inputs;
  for (std::size_t i = 0; i < first.size(); ++i) {
    const Tensor& proto = first[i].tensor;
    std::vector<std::int64_t> shape = proto.shape();
    shape[0] = rows;
    std::size_t row_bytes = dtype_size(proto.dtype());
    for (std::size_t d = 1; d < shape.size(); ++d) row_bytes *= static_cast<std::size_t>(shape[d]);
    const std::size_t bytes = static_cast<std::size_t>(rows) * row_bytes;
    auto buffer = BufferPool::instance().acquire(std::max<std::size_t>(bytes, 1));
    std::byte* p = buffer.get();
    for (const auto& r : batch) {
      const Tensor& t = r.inputs[i].tensor;
      std::memcpy(p, t.data(), t.nbytes());
      p += t.nbytes();
    }
    out.push_back({first[i].name, Access::adopt(proto.dtype(), std::move(shape), buffer.get(),
                                                std::shared_ptr<void>(buffer, buffer.get()))});
  }
  return out;
}

TensorList slice_rows(const TensorList& tensors, std::int64_t first, std::int64_t rows) {
  TensorList out;
  for (const auto& t : tensors) {
    std::vector<std::int64_t> shape = t.tensor.shape();
    std::size_t row_bytes = dtype_size(t.tensor.dtype());
    for (std::size_t d = 1; d < shape.size(); ++d) row_bytes *= static_cast<std::size_t>(shape[d]);
    shape[0] = rows;
    out.push_back(
        {t.name, Tensor::view(t.tensor.dtype(), std::move(shape),
                              static_cast<const std::byte*>(t.tensor.data()) + first * row_bytes)});
  }
  return out;
}

}  // namespace tandem::detail
