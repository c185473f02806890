// backend = "replay": a service answered from another run's recording
// (`record = true`), so that a coupled simulation runs again bit for bit
// without the model, libtorch or a GPU. The recording's requests are read
// whole at start-up; a request is answered with the outputs recorded for
// the same input bytes, found by a hash of them and then compared byte for
// byte. Inputs that come again are answered in the order they were
// recorded (the last recorded answer once those run out). Inputs never
// recorded are an error that says where they first differ from the nearest
// recorded request: differences are never hidden.

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/raise.hpp"
#include "hdf5/file.hpp"
#include "hdf5/types.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

namespace fs = std::filesystem;

// One recorded request.
struct Recorded {
  TensorList inputs;  // sorted by name
  TensorList outputs;
  std::string where;  // "replica-0.h5, request 12"
};

std::size_t row_bytes(const Tensor& t) {
  std::size_t n = dtype_size(t.dtype());
  for (std::size_t d = 1; d < t.shape().size(); ++d) n *= static_cast<std::size_t>(t.shape()[d]);
  return n;
}

// A whole recorded dataset, in memory, with the dtype it was recorded as.
Tensor read_dataset(const h5::File& file, const std::string& name) {
  h5::Dataset set = file.open_dataset(name);
  const std::string dtype_text = set.string_attribute("dtype");
  const auto dtype = dtype_from_name(dtype_text);
  if (!dtype) {
    raise<model_error>(
        fmt::format("{}: dataset {} does not say its dtype; record it again with this "
                    "version of Tandem",
                    file.path(), name));
  }
  std::vector<std::int64_t> shape;
  for (const auto d : set.shape()) shape.push_back(static_cast<std::int64_t>(d));
  Tensor t = Tensor::zeros(*dtype, shape);
  if (t.nbytes() > 0) set.read(h5::stored_type(*dtype), t.data());
  return t;
}

// Rows [first, first + rows) of @p t, as a view (the recording stays loaded).
Tensor rows_of(const Tensor& t, std::int64_t first, std::int64_t rows) {
  std::vector<std::int64_t> shape = t.shape();
  shape[0] = rows;
  return Tensor::view(
      t.dtype(), std::move(shape),
      static_cast<const std::byte*>(t.data()) + static_cast<std::size_t>(first) * row_bytes(t));
}

std::uint64_t hash_inputs(const TensorList& sorted) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto mix = [&h](std::uint64_t v) { h = (h ^ v) * 0x100000001b3ULL; };
  for (const auto& t : sorted) {
    mix(std::hash<std::string>{}(t.name));
    mix(static_cast<std::uint64_t>(t.tensor.dtype()));
    for (const auto d : t.tensor.shape()) mix(static_cast<std::uint64_t>(d));
    mix(std::hash<std::string_view>{}(
        std::string_view(static_cast<const char*>(t.tensor.data()), t.tensor.nbytes())));
  }
  return h;
}

TensorList sorted_by_name(TensorList list) {
  std::sort(list.begin(), list.end(),
            [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  return list;
}

// Where @p a first differs from @p b: (input index, byte offset); the byte
// offset is -1 when the input's name, dtype or shape differs.
std::pair<std::size_t, std::int64_t> first_difference(const TensorList& a, const TensorList& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const Tensor& x = a[i].tensor;
    const Tensor& y = b[i].tensor;
    if (a[i].name != b[i].name || x.dtype() != y.dtype() || x.shape() != y.shape()) return {i, -1};
    const auto* p = static_cast<const unsigned char*>(x.data());
    const auto* q = static_cast<const unsigned char*>(y.data());
    for (std::size_t k = 0; k < x.nbytes(); ++k) {
      if (p[k] != q[k]) return {i, static_cast<std::int64_t>(k)};
    }
  }
  return {std::min(a.size(), b.size()), -1};
}

class ReplayBackend : public Backend {
 public:
  explicit ReplayBackend(const ServiceSpec& spec) : spec_(spec) {
    std::error_code ec;
    if (!fs::is_directory(spec.recording, ec)) {
      raise<model_error>(
          fmt::format("service '{}': recording {} is not a directory", spec.name, spec.recording));
    }
    const std::vector<std::string> files = recording_files(spec.recording);
    if (files.empty()) {
      raise<model_error>(
          fmt::format("service '{}': recording {} has no replica-N.h5 files (was "
                      "the service recorded with record = true?)",
                      spec.name, spec.recording));
    }
    for (const auto& f : files) load(f);
    // Requests with the same bytes form one group, in recorded order, so
    // that an input repeated a million times costs one comparison a lookup.
    for (std::size_t i = 0; i < recorded_.size(); ++i) {
      std::vector<Group>& bucket = by_hash_[hash_inputs(recorded_[i].inputs)];
      const auto same = std::find_if(bucket.begin(), bucket.end(), [&](const Group& g) {
        return equal(recorded_[g.members.front()].inputs, recorded_[i].inputs);
      });
      if (same == bucket.end()) {
        bucket.push_back({{i}, 0});
      } else {
        same->members.push_back(i);
      }
    }
  }

  // Each request alone: the leader sends replay services no batches.
  TensorList infer(const TensorList& inputs) override {
    const TensorList sorted = sorted_by_name(inputs);
    const auto it = by_hash_.find(hash_inputs(sorted));
    if (it != by_hash_.end()) {
      for (Group& g : it->second) {
        if (!equal(sorted, recorded_[g.members.front()].inputs)) continue;
        // The recorded answers to these bytes in turn, the last one again
        // once they run out.
        const std::size_t pick = g.members[std::min(g.used, g.members.size() - 1)];
        ++g.used;
        return recorded_[pick].outputs;
      }
    }
    raise<model_error>(divergence(sorted));
  }

 private:
  static bool equal(const TensorList& a, const TensorList& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].name != b[i].name || a[i].tensor.dtype() != b[i].tensor.dtype() ||
          a[i].tensor.shape() != b[i].tensor.shape() ||
          std::memcmp(a[i].tensor.data(), b[i].tensor.data(), a[i].tensor.nbytes()) != 0) {
        return false;
      }
    }
    return true;
  }

  void load(const std::string& path) {
    const h5::File file = h5::File::open(path);
    const std::string short_name = fs::path(path).filename().string();
    const std::vector<std::int64_t> per_request = file.read_ints("/requests/rows");
    if (per_request.empty() && !file.members("/inputs").empty()) {
      raise<model_error>(
          fmt::format("service '{}': {} does not say where each request's rows "
                      "are (/requests/rows); record it again with this version "
                      "of Tandem",
                      spec_.name, path));
    }
    TensorList inputs;
    TensorList outputs;
    for (const auto& name : file.members("/inputs")) {
      inputs.push_back({name, read_dataset(file, "/inputs/" + name)});
    }
    for (const auto& name : file.members("/outputs")) {
      outputs.push_back({name, read_dataset(file, "/outputs/" + name)});
    }
    keep_.push_back(inputs);
    keep_.push_back(outputs);
    std::int64_t first = 0;
    for (std::size_t k = 0; k < per_request.size(); ++k) {
      const std::int64_t rows = per_request[k];
      Recorded r;
      r.where = fmt::format("{}, request {}", short_name, k);
      for (const auto& t : inputs) r.inputs.push_back({t.name, rows_of(t.tensor, first, rows)});
      for (const auto& t : outputs) r.outputs.push_back({t.name, rows_of(t.tensor, first, rows)});
      r.inputs = sorted_by_name(std::move(r.inputs));
      recorded_.push_back(std::move(r));
      first += rows;
    }
  }

  // The error for inputs never recorded: where they first differ from the
  // recorded request that agrees with them longest.
  std::string divergence(const TensorList& sorted) const {
    const Recorded* nearest = nullptr;
    std::pair<std::size_t, std::int64_t> best{0, -2};
    for (const Recorded& r : recorded_) {
      const auto d = first_difference(sorted, r.inputs);
      if (!nearest || d > best) {
        nearest = &r;
        best = d;
      }
    }
    std::vector<std::string> shapes;
    for (const auto& t : sorted) shapes.push_back(t.name + " " + t.tensor.describe());
    std::string where;
    if (!nearest) {
      where = "the recording holds no requests";
    } else if (best.first >= sorted.size() || best.first >= nearest->inputs.size()) {
      where = fmt::format("the nearest recorded request ({}) has other inputs", nearest->where);
    } else if (best.second < 0) {
      where = fmt::format("the nearest recorded request ({}) has input '{}' as {}", nearest->where,
                          nearest->inputs[best.first].name,
                          nearest->inputs[best.first].tensor.describe());
    } else {
      where = fmt::format(
          "it first differs from the nearest recorded request ({}) in input '{}' "
          "at byte offset {}",
          nearest->where, sorted[best.first].name, best.second);
    }
    return fmt::format("replay of service '{}' from {}: these inputs ({}) were never recorded; {}",
                       spec_.name, spec_.recording, fmt::join(shapes, ", "), where);
  }

  const ServiceSpec& spec_;
  std::vector<Recorded> recorded_;
  std::vector<TensorList> keep_;  // the whole datasets the requests view
  // Recorded requests with equal input bytes, and how many answers of
  // theirs were given.
  struct Group {
    std::vector<std::size_t> members;  // indices into recorded_, in recorded order
    std::size_t used = 0;
  };
  std::unordered_map<std::uint64_t, std::vector<Group>> by_hash_;
};

}  // namespace

std::unique_ptr<Backend> make_replay_backend(const ServiceSpec& spec) {
  return std::make_unique<ReplayBackend>(spec);
}

}  // namespace tandem::detail
