#include "transport/staging.hpp"

#include <unistd.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "base/access.hpp"
#include "tandem/error.hpp"
#include "transport/hdf5_io.hpp"

namespace tandem::detail {

namespace {
constexpr std::size_t align64(std::size_t n) {
  return (n + 63) & ~std::size_t{63};
}
}  // namespace

std::size_t total_bytes(const TensorList& tensors) {
  std::size_t n = 0;
  for (const auto& t : tensors) n += align64(t.tensor.nbytes());
  return n;
}

Outgoing stage(wire::Kind kind, std::uint64_t id, int service, const TensorList& tensors,
               const std::string& text, Transport transport, const std::string& hdf5_path,
               std::uint32_t flags, std::uint32_t holder_pid) {
  Outgoing out;
  if (transport == Transport::inline_mpi || tensors.empty()) {
    out.message = wire::encode(kind, id, service, tensors, text, nullptr, flags);
    return out;
  }
  std::vector<wire::Staged> staged(tensors.size());
  if (transport == Transport::shm) {
    out.segment = shm::OwnPool::instance().acquire(std::max<std::size_t>(total_bytes(tensors), 1));
    if (out.segment) {
      out.segment->header()->holder_pid.store(holder_pid, std::memory_order_release);
      std::size_t offset = 0;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = tensors[i].tensor;
        if (t.nbytes() > 0) std::memcpy(out.segment->data() + offset, t.data(), t.nbytes());
        staged[i] = {Transport::shm, out.segment->name, offset};
        offset += align64(t.nbytes());
      }
    }
  } else if (transport == Transport::hdf5) {
    hdf5::write(hdf5_path, tensors, id);
    out.files.push_back(hdf5_path);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      staged[i] = {Transport::hdf5, hdf5_path + "\n/" + tensors[i].name, 0};
    }
  }
  out.message = wire::encode(kind, id, service, tensors, text, &staged, flags);
  return out;
}

bool resolve(wire::Decoded& d, bool hand_back_when_dropped, std::string& why) {
  // One owner per segment, shared by all the tensors in it.
  std::shared_ptr<void> owner;
  for (std::size_t i = 0; i < d.tensors.size(); ++i) {
    const wire::Staged& s = d.staged[i];
    NamedTensor& t = d.tensors[i];
    if (s.transport == Transport::inline_mpi) continue;
    const DType dtype = t.tensor.dtype();
    const std::vector<std::int64_t> shape = t.tensor.shape();
    const std::size_t nbytes = t.tensor.nbytes();
    if (s.transport == Transport::shm) {
      const shm::Segment* seg = nullptr;
      try {
        seg = &shm::PeerMaps::instance().map(s.location);
      } catch (const std::exception& e) {
        why = fmt::format("tensor '{}': {}", t.name, e.what());
        return false;
      }
      if (s.offset > seg->capacity() || nbytes > seg->capacity() - s.offset) {
        why = fmt::format(
            "tensor '{}': its descriptor ({} bytes at offset {}) points outside "
            "shared memory {} of {} bytes",
            t.name, nbytes, s.offset, s.location, seg->capacity());
        return false;
      }
      if (!owner) {
        shm::Header* header = seg->header();
        owner =
            hand_back_when_dropped
                ? std::shared_ptr<void>(
                      header, [](shm::Header* h) { h->in_use.store(0, std::memory_order_release); })
                : std::shared_ptr<void>(header, [](shm::Header*) {});
      }
      t.tensor = Access::adopt(dtype, shape, seg->data() + s.offset, owner);
    } else {
      const auto newline = s.location.find('\n');
      if (newline == std::string::npos) {
        why = fmt::format("tensor '{}': malformed HDF5 location", t.name);
        return false;
      }
      Tensor read;
      if (!hdf5::read(s.location.substr(0, newline), s.location.substr(newline + 1), dtype, shape,
                      read, why)) {
        why = fmt::format("tensor '{}': {}", t.name, why);
        return false;
      }
      t.tensor = std::move(read);
    }
  }
  return true;
}

void finish(Outgoing& o) {
  shm::OwnPool::release(o.segment);
  o.segment = nullptr;
  for (const auto& f : o.files) ::unlink(f.c_str());
  o.files.clear();
  o.message = {};
}

}  // namespace tandem::detail
