#include "ml_ranks/serving/model_versions.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "ml_ranks/serving/make_backend.hpp"

namespace fs = std::filesystem;

namespace tandem::detail {

namespace {

constexpr int kLoaderNice = 10;
constexpr int kWarmUpRuns = 3;  // CFS weight 110 against the serving thread's 1024

std::string shape_text(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// One row of zeros in the shape the signature declares (any size: 1).
TensorList probe_inputs(const ServiceSpec& service) {
  TensorList inputs;
  for (const TensorSpec& s : service.inputs) {
    std::vector<std::int64_t> shape;
    for (const long long d : s.shape) shape.push_back(d < 0 ? 1 : d);
    if (shape.empty()) shape.push_back(1);
    inputs.push_back({s.name, Tensor::zeros(static_cast<DType>(s.dtype), shape)});
  }
  return inputs;
}

// Tests of the all-or-none switch make one rank's load of one version
// fail: TANDEM_TEST_FAIL_LOAD="RANK:VERSION" (the rank within the replica).
bool injected_failure(const BackendContext& context, int version) {
  const char* spec = std::getenv("TANDEM_TEST_FAIL_LOAD");
  int rank = -1;
  int bad_version = -1;
  return spec && std::sscanf(spec, "%d:%d", &rank, &bad_version) == 2 &&
         rank == context.replica_rank && bad_version == version;
}

}  // namespace

std::string check_outputs(const ServiceSpec& service, const TensorList& outputs) {
  if (service.outputs.empty()) return {};
  if (outputs.size() != service.outputs.size()) {
    return fmt::format("it returns {} output(s) but the service's signature has {}", outputs.size(),
                       service.outputs.size());
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const TensorSpec& s = service.outputs[i];
    const Tensor& t = outputs[i].tensor;
    if (static_cast<int>(t.dtype()) != s.dtype) {
      return fmt::format("output '{}' is {} but the signature says {}", s.name,
                         dtype_name(t.dtype()), dtype_name(static_cast<DType>(s.dtype)));
    }
    bool shape_ok = t.shape().size() == s.shape.size();
    // Dimension 0 is the batch: one row in, one row out.
    for (std::size_t d = 0; shape_ok && d < s.shape.size(); ++d) {
      shape_ok = d == 0 ? t.shape()[0] == 1 : (s.shape[d] == -1 || s.shape[d] == t.shape()[d]);
    }
    if (!shape_ok) {
      std::vector<std::int64_t> declared(s.shape.begin(), s.shape.end());
      return fmt::format("output '{}' has shape {} for one row but the signature says {}", s.name,
                         shape_text(t.shape()), shape_text(declared));
    }
  }
  return {};
}

LoadOutcome load_version(const ServiceSpec& service, const BackendContext& context, int version,
                         const std::string& path, bool probe) {
  LoadOutcome out;
  out.loaded.version = version;
  out.loaded.path = path;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      out.error = fmt::format("version {}: model file '{}' does not exist", version, path);
      return out;
    }
    if (injected_failure(context, version)) {
      out.error =
          fmt::format("version {}: '{}': injected failure (TANDEM_TEST_FAIL_LOAD)", version, path);
      return out;
    }
    out.loaded.spec = std::make_unique<ServiceSpec>(service);
    out.loaded.spec->model = path;
    out.loaded.backend = make_backend(*out.loaded.spec, context);
    if (probe && !service.inputs.empty()) {
      std::string why;
      try {
        const TensorList probe = probe_inputs(service);
        why = check_outputs(service, out.loaded.backend->infer(probe));
        // TorchScript profiles a method's first runs and optimizes it on
        // the next: done here, on the loading thread, not in the first
        // batches the new version serves (measured: a 40 ms stall).
        for (int run = 0; why.empty() && run < kWarmUpRuns; ++run) out.loaded.backend->infer(probe);
      } catch (const std::exception& e) {
        why = fmt::format("it fails on one row of zeros shaped as the signature: {}", e.what());
      }
      if (!why.empty()) {
        out.loaded.backend.reset();
        out.error = fmt::format("version {}: '{}' does not fit the service's signature: {}",
                                version, path, why);
        return out;
      }
    }
  } catch (const std::exception& e) {
    out.loaded.backend.reset();
    out.error = fmt::format("version {}: {}", version, e.what());
    return out;
  }
  out.loaded.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

BackgroundLoad::BackgroundLoad(const ServiceSpec& service, const BackendContext& context,
                               int version, const std::string& path, bool probe,
                               bool behind_serving)
    : version_(version),
      future_(
          std::async(std::launch::async, [&service, context, version, path, probe, behind_serving] {
            // Serving comes first. Where the node's ranks share its cores, a
            // loading thread at any normal priority takes whole time slices
            // from the serving thread: on one core, requests waited up to 6 ms
            // during a 64 MiB load at nice 10 and no longer than in steady state
            // at SCHED_IDLE, which loaded 10x slower (docs/performance.md).
            // With a core per rank the load gets a tenth of a contended core.
            if (behind_serving) {
              sched_param none{};
              ::sched_setscheduler(0, SCHED_IDLE, &none);
            } else {
              ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kLoaderNice);
            }
            return load_version(service, context, version, path, probe);
          })) {}

bool BackgroundLoad::done() const {
  return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

LoadOutcome BackgroundLoad::take() {
  return future_.get();
}

std::vector<DirVersion> list_model_dir(const std::string& dir) {
  std::vector<DirVersion> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.size() > 9 || name.find_first_not_of("0123456789") != name.npos) {
      continue;  // not a version: Triton's layout has only numbers here
    }
    const int version = std::atoi(name.c_str());
    if (version < 1) continue;
    const std::string file = (entry.path() / "model.pt").string();
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    found.push_back(
        {version, file,
         static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
         static_cast<std::int64_t>(st.st_size)});
  }
  std::sort(found.begin(), found.end(),
            [](const DirVersion& a, const DirVersion& b) { return a.version < b.version; });
  return found;
}

void VersionSet::add(LoadedVersion v) {
  const int n = v.version;
  versions_[n] = std::move(v);
}

bool VersionSet::remove(int version) {
  return versions_.erase(version) > 0;
}

Backend* VersionSet::backend(int version) const {
  const LoadedVersion* v = find(version);
  return v ? v->backend.get() : nullptr;
}

const LoadedVersion* VersionSet::find(int version) const {
  auto it = versions_.find(version);
  return it == versions_.end() ? nullptr : &it->second;
}

int VersionSet::served() const {
  if (pinned_ > 0) return holds(pinned_) ? pinned_ : 0;
  return versions_.empty() ? 0 : versions_.rbegin()->first;
}

std::vector<int> VersionSet::held() const {
  std::vector<int> out;
  for (const auto& [n, v] : versions_) out.push_back(n);
  return out;
}

std::vector<int> VersionSet::beyond(int keep) const {
  const int serving = served();
  int kept = serving > 0 ? 1 : 0;
  std::vector<int> drop;
  for (auto it = versions_.rbegin(); it != versions_.rend(); ++it) {
    if (it->first == serving) continue;
    if (kept < keep) {
      ++kept;
    } else {
      drop.push_back(it->first);
    }
  }
  return drop;
}

bool VersionSet::would_serve(int version) const {
  if (pinned_ > 0) return version == pinned_;
  return versions_.empty() || version >= versions_.rbegin()->first;
}

}  // namespace tandem::detail
