#pragma once
// The model versions a replica rank holds, which one it serves, and loading
// a new one on a thread of its own while the rank goes on serving. Free of
// MPI: the leader and the replica's other ranks (replica.cpp) say over MPI
// what to load and when a load is agreed on.

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "ml_ranks/backends/backend.hpp"

namespace tandem::detail {

/// One loaded version. The spec is the service's with `model` set to the
/// version's file; the backend keeps a reference to it.
struct LoadedVersion {
  int version = 0;
  std::string path;
  std::unique_ptr<ServiceSpec> spec;
  std::unique_ptr<Backend> backend;
  double load_s = 0;
  bool from_dir = false;  // found in model_dir: unloaded when its directory goes
};

/// What a load came to: the version, or why it cannot serve.
struct LoadOutcome {
  LoadedVersion loaded;  // backend null on failure
  std::string error;     // names the file and the cause
};

/// Loads @p path as @p version of @p service and checks it against the
/// service's signature with a one-row probe of zeros (inputs, outputs,
/// dtypes, shapes). @p probe false skips the check (the replica's other
/// ranks: the leader checks the same file). Never throws.
LoadOutcome load_version(const ServiceSpec& service, const BackendContext& context, int version,
                         const std::string& path, bool probe);

/// Checks one output list against the signature; empty when it matches.
std::string check_outputs(const ServiceSpec& service, const TensorList& outputs);

/// A load running on its own thread. With @p behind_serving (the node's
/// ranks share its cores) the thread runs only when the cores have nothing
/// else to run (SCHED_IDLE): the load takes longer, requests do not wait
/// for it. Otherwise at nice 10.
class BackgroundLoad {
 public:
  BackgroundLoad(const ServiceSpec& service, const BackendContext& context, int version,
                 const std::string& path, bool probe, bool behind_serving);
  int version() const { return version_; }
  /// True once the load has finished (never blocks).
  bool done() const;
  /// The outcome; call once, after done().
  LoadOutcome take();

 private:
  int version_;
  std::future<LoadOutcome> future_;
};

/// The versions in a model directory laid out as <dir>/<N>/model.pt, each
/// with its file's modification time and size (to tell a rewritten file).
struct DirVersion {
  int version = 0;
  std::string path;
  std::int64_t mtime_ns = 0;
  std::int64_t size = 0;
};
std::vector<DirVersion> list_model_dir(const std::string& dir);

/// The versions a rank holds and the one the policy serves.
class VersionSet {
 public:
  explicit VersionSet(int pinned_version) : pinned_(pinned_version) {}

  /// Takes @p v (replacing the same version if held).
  void add(LoadedVersion v);
  /// Drops @p version; false if it was not held.
  bool remove(int version);
  bool holds(int version) const { return versions_.count(version) > 0; }
  Backend* backend(int version) const;
  const LoadedVersion* find(int version) const;
  /// The version requests without a version of their own get: the newest
  /// held ("latest"), or the pinned one if held; 0 when none is.
  int served() const;
  Backend* served_backend() const { return backend(served()); }
  bool empty() const { return versions_.empty(); }
  std::vector<int> held() const;
  /// The versions to unload once a switch is done: all but the served one
  /// and the newest others, @p keep in all.
  std::vector<int> beyond(int keep) const;
  /// Whether the policy would serve @p version once it is loaded.
  bool would_serve(int version) const;

 private:
  int pinned_ = 0;
  std::map<int, LoadedVersion> versions_;
};

}  // namespace tandem::detail
