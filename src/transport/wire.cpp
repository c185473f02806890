#include "transport/wire.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include <fmt/format.h>

#include "base/access.hpp"
#include "base/clock.hpp"
#include "tandem/error.hpp"
#include "transport/buffer_pool.hpp"

namespace tandem::detail::wire {

namespace {
constexpr std::size_t align64(std::size_t n) {
  return (n + 63) & ~std::size_t{63};
}

// This process's pid, for every header. getpid() is a system call (glibc
// no longer caches it), and a system call costs about a microsecond on a
// virtual machine: two per request were a fifth of the echo round trip.
// A forked child must not keep its parent's, hence the fork handler.
std::atomic<std::uint32_t> g_pid{0};

std::uint32_t my_pid() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { g_pid.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  std::uint32_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = static_cast<std::uint32_t>(::getpid());
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}
}  // namespace

Encoded encode(Kind kind, std::uint64_t request_id, int service, const TensorList& tensors,
               const std::string& text, const std::vector<Staged>* staged, std::uint32_t flags) {
  auto is_staged = [&](std::size_t i) {
    return staged && (*staged)[i].transport != Transport::inline_mpi;
  };
  std::size_t meta = sizeof(Header) + tensors.size() * sizeof(TensorDesc) + text.size();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (is_staged(i)) meta += (*staged)[i].location.size();
  }
  for (const auto& t : tensors) {
    if (t.tensor.shape().size() > kMaxDims) {
      throw argument_error(fmt::format("tensor '{}' has {} dimensions; at most {} are supported",
                                       t.name, t.tensor.shape().size(), kMaxDims));
    }
    if (t.name.size() > 65535) throw argument_error("a tensor name is longer than 65535 bytes");
    meta += t.name.size();
  }
  std::size_t total = align64(meta);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!is_staged(i)) total += align64(tensors[i].tensor.nbytes());
  }
  Encoded out;
  out.buffer = BufferPool::instance().acquire(total);
  out.size = total;
  std::byte* base = out.buffer.get();
  Header h;
  h.kind = kind;
  h.n_tensors = static_cast<std::uint16_t>(tensors.size());
  h.request_id = request_id;
  h.service = service;
  h.text_len = static_cast<std::uint32_t>(text.size());
  h.flags = flags;
  h.sender_pid = my_pid();
  std::memcpy(base, &h, sizeof h);
  std::byte* p = base + sizeof h;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    TensorDesc d;
    if (is_staged(i)) {
      d.transport = (*staged)[i].transport;
      d.location_len = static_cast<std::uint16_t>((*staged)[i].location.size());
      d.offset = (*staged)[i].offset;
    }
    d.dtype = static_cast<std::uint8_t>(t.tensor.dtype());
    d.ndim = static_cast<std::uint8_t>(t.tensor.shape().size());
    d.name_len = static_cast<std::uint16_t>(t.name.size());
    d.nbytes = t.tensor.nbytes();
    for (std::size_t i = 0; i < t.tensor.shape().size(); ++i) d.dims[i] = t.tensor.shape()[i];
    std::memcpy(p, &d, sizeof d);
    p += sizeof d;
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::memcpy(p, tensors[i].name.data(), tensors[i].name.size());
    p += tensors[i].name.size();
    if (is_staged(i)) {
      std::memcpy(p, (*staged)[i].location.data(), (*staged)[i].location.size());
      p += (*staged)[i].location.size();
    }
  }
  std::memcpy(p, text.data(), text.size());
  std::size_t offset = align64(meta);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (is_staged(i)) continue;
    const Tensor& t = tensors[i].tensor;
    if (t.nbytes() > 0) std::memcpy(base + offset, t.data(), t.nbytes());
    offset += align64(t.nbytes());
  }
  return out;
}

void set_model_version(const Encoded& m, std::int32_t version) {
  std::memcpy(m.buffer.get() + offsetof(Header, model_version), &version, sizeof version);
}

void set_asked_transport(const Encoded& m, Transport t) {
  const std::uint32_t v = t == Transport::automatic ? 0 : 1u + static_cast<std::uint32_t>(t);
  std::memcpy(m.buffer.get() + offsetof(Header, asked_transport), &v, sizeof v);
}

void set_deadline(const Encoded& m, std::int64_t deadline_us) {
  // The send time goes with it: a replica on another node measures the
  // time left from the request's arrival.
  const std::int64_t sent = deadline_us > 0 ? now_us() : 0;
  std::memcpy(m.buffer.get() + offsetof(Header, deadline_us), &deadline_us, sizeof deadline_us);
  std::memcpy(m.buffer.get() + offsetof(Header, t_sent_us), &sent, sizeof sent);
}

std::int64_t stamp_sent(const Encoded& m) {
  const std::int64_t sent = now_us();
  std::memcpy(m.buffer.get() + offsetof(Header, t_sent_us), &sent, sizeof sent);
  return sent;
}

bool decode(const std::shared_ptr<std::byte>& buffer, std::size_t size, Decoded& out,
            std::string& why) {
  const std::byte* base = buffer.get();
  if (size < sizeof(Header)) {
    why = fmt::format("message of {} bytes is shorter than a header", size);
    return false;
  }
  std::memcpy(&out.header, base, sizeof(Header));
  const Header& h = out.header;
  if (h.magic != kMagic) {
    why = "message does not start with Tandem's magic number";
    return false;
  }
  std::size_t meta = sizeof(Header) + std::size_t{h.n_tensors} * sizeof(TensorDesc) + h.text_len;
  if (meta > size) {
    why = "message is shorter than its tensor descriptors say";
    return false;
  }
  std::vector<TensorDesc> descs(h.n_tensors);
  const std::byte* p = base + sizeof(Header);
  for (auto& d : descs) {
    std::memcpy(&d, p, sizeof d);
    p += sizeof d;
    meta += d.name_len + (d.transport != Transport::inline_mpi ? d.location_len : 0);
  }
  if (meta > size) {
    why = "message is shorter than its tensor names say";
    return false;
  }
  out.tensors.clear();
  out.tensors.reserve(h.n_tensors);
  out.staged.assign(h.n_tensors, Staged{});
  std::vector<std::string> names;
  for (std::size_t i = 0; i < descs.size(); ++i) {
    const TensorDesc& d = descs[i];
    names.emplace_back(reinterpret_cast<const char*>(p), d.name_len);
    p += d.name_len;
    if (d.transport != Transport::inline_mpi) {
      if (d.transport > Transport::hdf5) {
        why = fmt::format("tensor '{}' names an unknown transport {}", names.back(),
                          static_cast<int>(d.transport));
        return false;
      }
      out.staged[i].transport = d.transport;
      out.staged[i].location.assign(reinterpret_cast<const char*>(p), d.location_len);
      out.staged[i].offset = d.offset;
      p += d.location_len;
    }
  }
  out.text.assign(reinterpret_cast<const char*>(p), h.text_len);
  std::size_t offset = align64(meta);
  for (std::size_t i = 0; i < descs.size(); ++i) {
    const TensorDesc& d = descs[i];
    if (d.dtype > static_cast<std::uint8_t>(DType::BYTES) || d.ndim > kMaxDims) {
      why = fmt::format("tensor '{}' has an unknown dtype or too many dimensions", names[i]);
      return false;
    }
    std::vector<std::int64_t> shape(d.dims, d.dims + d.ndim);
    std::int64_t numel = 1;
    for (std::int64_t dim : shape) {
      if (dim < 0) {
        why = fmt::format("tensor '{}' has a negative dimension", names[i]);
        return false;
      }
      numel *= dim;
    }
    const auto dtype = static_cast<DType>(d.dtype);
    if (static_cast<std::uint64_t>(numel) * dtype_size(dtype) != d.nbytes) {
      why = fmt::format("tensor '{}': {} bytes do not match its shape", names[i], d.nbytes);
      return false;
    }
    if (d.transport != Transport::inline_mpi) {
      // The bytes are elsewhere; staging.cpp resolves them.
      out.tensors.push_back(
          {names[i], Tensor::view(dtype, std::move(shape), static_cast<void*>(nullptr))});
      continue;
    }
    if (offset + d.nbytes > size) {
      why = fmt::format("tensor '{}' runs past the end of the message", names[i]);
      return false;
    }
    out.tensors.push_back(
        {names[i], Access::adopt(dtype, std::move(shape), const_cast<std::byte*>(base) + offset,
                                 std::shared_ptr<void>(buffer, buffer.get()))});
    offset += align64(d.nbytes);
  }
  return true;
}

}  // namespace tandem::detail::wire
