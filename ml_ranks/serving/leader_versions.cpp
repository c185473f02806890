// The model lifecycle on a replica's leader: load_model and unload_model
// from clients, and the versions found in `model_dir`.
//
// A load runs on every rank of the replica at once, each on a thread of its
// own, while the ranks go on serving the old version. The leader also checks
// the new version against the signature. Only when every rank has loaded it
// does the leader switch, between two batches: a batch carries the version
// it runs in its header, so the other ranks follow without a message of
// their own. If any rank fails, every rank drops the new version and the old
// one goes on serving: all or none.

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/mpi_check.hpp"
#include "ml_ranks/serving/leader.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"

namespace tandem::detail {

namespace {

// The last failed loads go into the final report, not all of them (a
// directory that keeps a broken file is retried only when it changes).
constexpr std::size_t kKeptErrors = 20;

}  // namespace

double Leader::since_ready() const {
  return std::chrono::duration<double>(clock::now() - ready_at_).count();
}

void Leader::admit_model_op(const Origin& from, const wire::Decoded& d) {
  ModelOp op;
  op.kind = static_cast<wire::Kind>(d.header.kind);
  op.from = from;
  op.id = d.header.request_id;
  const char* what = op.kind == wire::kLoadModel ? "load_model" : "unload_model";
  auto refuse = [&](const std::string& why) { answer_op(op, fmt::format("{}: {}", what, why)); };
  if (!failure_.empty()) return refuse("the replica FAILED: " + failure_);
  if (draining_) return refuse("the replica is stopping: the run is ending");
  if (spec_.backend != BackendKind::torchscript) {
    return refuse(fmt::format("model versions are for torchscript services; this is a {} service",
                              name_of(spec_.backend)));
  }
  try {
    const auto j = nlohmann::json::parse(d.text);
    op.version = j.at("version").get<int>();
    if (op.kind == wire::kLoadModel) op.path = j.at("path").get<std::string>();
  } catch (const std::exception& e) {
    return refuse(fmt::format("the operation could not be read: {}", e.what()));
  }
  if (op.version < 1) return refuse(fmt::format("versions are numbers >= 1, not {}", op.version));
  ops_.push_back(std::move(op));
}

void Leader::step_lifecycle() {
  if (loading_) {
    Loading& l = *loading_;
    if (!l.my_outcome && l.mine->done())
      l.my_outcome = std::make_unique<LoadOutcome>(l.mine->take());
    while (l.members_reported < replica_size_ - 1) {
      int flag = 0;
      MPI_Status status;
      TANDEM_MPI_CHECK(
          MPI_Iprobe(MPI_ANY_SOURCE, tags::kReplicaLoaded, job_.replica, &flag, &status));
      if (!flag) break;
      int n = 0;
      MPI_Get_count(&status, MPI_CHAR, &n);
      std::string text(static_cast<std::size_t>(n), '\0');
      TANDEM_MPI_CHECK(MPI_Recv(text.data(), n, MPI_CHAR, status.MPI_SOURCE, tags::kReplicaLoaded,
                                job_.replica, MPI_STATUS_IGNORE));
      l.member_errors[status.MPI_SOURCE] = std::move(text);
      ++l.members_reported;
    }
    if (l.my_outcome && l.members_reported == replica_size_ - 1) finish_load();
    return;
  }
  if (ops_.empty()) return;
  ModelOp op = std::move(ops_.front());
  ops_.pop_front();
  if (op.kind == wire::kUnloadModel) {
    unload(op);
    return;
  }
  if (const LoadedVersion* held = versions_.find(op.version)) {
    if (held->path == op.path) {
      answer_op(op, {});  // loaded already: nothing to do
    } else {
      // Versions are immutable: a different file is a new version.
      answer_op(op, fmt::format("load_model: version {} is loaded already, from '{}'; give the new "
                                "file '{}' a new version number (or unload version {} first)",
                                op.version, held->path, op.path, op.version));
    }
    return;
  }
  if (spec_.swap == SwapMode::pause && spec_.pinned_version > 0 &&
      op.version != spec_.pinned_version && !op.restore) {
    // A paused swap holds one version: one the policy would not serve
    // would leave nothing served.
    answer_op(op, fmt::format("load_model: with swap = \"pause\" a replica holds one version, "
                              "and version_policy = {} would not serve version {}",
                              spec_.pinned_version, op.version));
    return;
  }
  start_load(std::move(op));
}

void Leader::start_load(ModelOp op) {
  if (spec_.swap == SwapMode::pause && !op.restore) {
    // Two versions do not fit: the old one goes first, and requests wait
    // (queued, not refused) until the new one is in.
    paused_at_ = clock::now();
    unloaded_for_pause_.clear();
    for (const int v : versions_.held()) {
      unloaded_for_pause_.emplace_back(v, versions_.find(v)->path);
      drop_everywhere(v);
    }
    note_served();
  }
  loading_ = std::make_unique<Loading>();
  loading_->started = clock::now();
  loading_->member_errors.resize(static_cast<std::size_t>(replica_size_));
  const BackendContext context{job_.run_dir, me_.replica, 0, me_.service};
  // Behind serving only while there is something to serve: a paused swap
  // (or a restore) has requests waiting for the load itself.
  const bool behind_serving =
      job_.idle == IdleMode::shared && spec_.swap == SwapMode::beside && !op.restore;
  loading_->mine = std::make_unique<BackgroundLoad>(spec_, context, op.version, op.path,
                                                    /*probe=*/true, behind_serving);
  tell_members(wire::kLoadModel, nlohmann::json{{"path", op.path}, {"version", op.version}}.dump());
  loading_->op = std::move(op);
}

void Leader::finish_load() {
  std::unique_ptr<Loading> done = std::move(loading_);
  const ModelOp& op = done->op;
  const double load_s = std::chrono::duration<double>(clock::now() - done->started).count();
  std::vector<std::string> errors;
  if (!done->my_outcome->error.empty()) {
    errors.push_back(replica_size_ > 1 ? "rank 0: " + done->my_outcome->error
                                       : done->my_outcome->error);
  }
  for (int m = 1; m < replica_size_; ++m) {
    if (!done->member_errors[m].empty()) {
      errors.push_back(fmt::format("rank {}: {}", m, done->member_errors[m]));
    }
  }
  if (!errors.empty()) {
    // All or none: the ranks that did load it drop it again.
    tell_members(wire::kUnloadModel, nlohmann::json{{"version", op.version}}.dump());
    const std::string why = fmt::format("load_model: cannot load model version {}: {}", op.version,
                                        fmt::join(errors, "; "));
    if (stats_.version_errors.size() >= kKeptErrors) {
      stats_.version_errors.erase(stats_.version_errors.begin());
    }
    stats_.version_errors.push_back(why);
    if (op.from_dir) dir_failures_[op.version] = {op.mtime_ns, op.size};
    if (op.restore && versions_.empty()) {
      // swap = "pause" and what served before will not load again either:
      // nothing is left to serve, and the queued requests hear why.
      answer_op(op, why);
      fail(fmt::format("after a failed swap the old model version could not be loaded again: {}",
                       why));
      return;
    }
    if (versions_.empty() && !unloaded_for_pause_.empty()) {
      // swap = "pause": what served before comes back.
      for (const auto& [v, path] : unloaded_for_pause_) {
        ModelOp restore;
        restore.version = v;
        restore.path = path;
        restore.restore = true;
        ops_.push_front(std::move(restore));
      }
      unloaded_for_pause_.clear();
    }
    answer_op(op, why);
    return;
  }
  LoadedVersion loaded = std::move(done->my_outcome->loaded);
  loaded.from_dir = op.from_dir;
  loaded.load_s = load_s;
  versions_.add(std::move(loaded));
  for (const int gone : op.replaces) {
    if (versions_.holds(gone)) drop_everywhere(gone);
  }
  for (const int extra :
       versions_.beyond(spec_.swap == SwapMode::pause ? 1 : spec_.keep_versions)) {
    drop_everywhere(extra);
  }
  VersionStat& stat = version_stats_[op.version];
  stat.version = op.version;
  stat.path = op.path;
  stat.sha256 = model_digest(op.path);
  stat.loaded_at_s = since_ready();
  stat.load_s = load_s;
  if (spec_.swap == SwapMode::pause && !op.restore) {
    stat.pause_s = std::chrono::duration<double>(clock::now() - paused_at_).count();
  }
  if (std::find(version_order_.begin(), version_order_.end(), op.version) == version_order_.end()) {
    version_order_.push_back(op.version);
  }
  unloaded_for_pause_.clear();
  spdlog::info("service '{}' replica {}: model version {} loaded in {:.3f} s on {} rank(s) ('{}')",
               spec_.name, me_.replica, op.version, load_s, replica_size_, op.path);
  note_served();
  answer_op(op, {});
}

void Leader::unload(const ModelOp& op) {
  if (!versions_.holds(op.version)) {
    answer_op(op,
              fmt::format("unload_model: model version {} is not loaded (this replica holds {})",
                          op.version, fmt::join(versions_.held(), ", ")));
    return;
  }
  if (op.version == versions_.served()) {
    if (spec_.pinned_version > 0) {
      answer_op(op, fmt::format("unload_model: version {} is the one version_policy pins; it "
                                "cannot be unloaded",
                                op.version));
      return;
    }
    if (versions_.held().size() == 1) {
      answer_op(op, fmt::format("unload_model: version {} is the only version loaded, and the "
                                "replica would have nothing to serve; load another first",
                                op.version));
      return;
    }
  }
  drop_everywhere(op.version);
  note_served();
  answer_op(op, {});
}

void Leader::drop_everywhere(int version) {
  versions_.remove(version);
  tell_members(wire::kUnloadModel, nlohmann::json{{"version", version}}.dump());
}

void Leader::tell_members(wire::Kind kind, const std::string& text) {
  if (replica_size_ == 1) return;
  const wire::Encoded m = wire::encode(kind, 0, me_.service, {}, text);
  for (int r = 1; r < replica_size_; ++r) {
    TANDEM_MPI_CHECK(MPI_Send(m.buffer.get(), static_cast<int>(m.size), MPI_BYTE, r,
                              tags::kReplicaWork, job_.replica));
  }
}

// The client's answer: the version served now and those held, or why not.
void Leader::answer_op(const ModelOp& op, const std::string& error) {
  if (op.from.rank < 0) {
    // The directory watcher (or a restore): the log is where it is seen.
    if (!error.empty()) {
      spdlog::error("service '{}' replica {} (model_dir '{}'): {}", spec_.name, me_.replica,
                    spec_.model_dir, error);
    }
    return;
  }
  Outgoing o;
  if (!error.empty()) {
    o.message =
        wire::encode(wire::kReplyError, op.id, me_.service, {},
                     fmt::format("service '{}' (replica {}): {}", spec_.name, me_.replica, error));
  } else {
    const nlohmann::json answer = {
        {"replica", me_.replica}, {"serving", versions_.served()}, {"loaded", versions_.held()}};
    o.message = wire::encode(wire::kReplyOk, op.id, me_.service, {}, answer.dump());
    wire::set_model_version(o.message, versions_.served());
  }
  send(op.from, std::move(o));
}

void Leader::note_served() {
  const int serving = versions_.served();
  if (serving == last_served_) return;
  const double t = since_ready();
  if (last_served_ > 0) version_stats_[last_served_].served_until_s = t;
  if (serving > 0) {
    VersionStat& stat = version_stats_[serving];
    stat.served_from_s = t;
    stat.served_until_s = -1;
    stat.served_from_unix_s =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    trace::record(trace::kModelSwitch, serving, static_cast<std::int64_t>(stat.load_s * 1e9),
                  me_.replica, static_cast<std::int16_t>(me_.service));
    if (last_served_ > 0) {
      spdlog::info("service '{}' replica {}: switched from model version {} to {}", spec_.name,
                   me_.replica, last_served_, serving);
    }
  }
  last_served_ = serving;
}

// Triton's repository layout: <dir>/<N>/model.pt. The version the policy
// wants is loaded (once per file: a broken one is tried again only when it
// changes), and versions whose directories went are unloaded.
void Leader::watch_model_dir() {
  if (loading_ || !ops_.empty()) return;  // one thing at a time
  const std::vector<DirVersion> found = list_model_dir(spec_.model_dir);
  auto on_disk = [&](int v) {
    return std::any_of(found.begin(), found.end(),
                       [v](const DirVersion& d) { return d.version == v; });
  };
  const DirVersion* want = nullptr;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    if (spec_.pinned_version == 0 || it->version == spec_.pinned_version) {
      want = &*it;
      break;
    }
  }
  if (want && !versions_.holds(want->version)) {
    auto failed = dir_failures_.find(want->version);
    if (failed == dir_failures_.end() ||
        failed->second != std::make_pair(want->mtime_ns, want->size)) {
      ModelOp op;
      op.version = want->version;
      op.path = want->path;
      op.from_dir = true;
      op.mtime_ns = want->mtime_ns;
      op.size = want->size;
      for (const int v : versions_.held()) {
        if (versions_.find(v)->from_dir && !on_disk(v)) op.replaces.push_back(v);
      }
      ops_.push_back(std::move(op));
      return;
    }
  }
  // Versions whose directories went are unloaded; if none would be left,
  // the served one stays (a replica must serve something) until another
  // version appears.
  const std::vector<int> held = versions_.held();
  std::vector<int> vanished;
  for (const int v : held) {
    if (versions_.find(v)->from_dir && !on_disk(v)) vanished.push_back(v);
  }
  const bool none_left = vanished.size() == held.size();
  for (const int v : vanished) {
    const bool keep = v == versions_.served() && (none_left || spec_.pinned_version > 0);
    if (keep) {
      if (!warned_dir_empty_) {
        spdlog::warn(
            "service '{}' replica {}: the directory of model version {} is gone from "
            "'{}', but no other version can take its place; it goes on serving",
            spec_.name, me_.replica, v, spec_.model_dir);
        warned_dir_empty_ = true;
      }
      continue;
    }
    ModelOp op;
    op.kind = wire::kUnloadModel;
    op.version = v;
    op.from_dir = true;
    ops_.push_back(std::move(op));
  }
}

}  // namespace tandem::detail
