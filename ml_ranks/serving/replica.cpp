// A replica of a service: every rank loads the model, then the leader
// serves (leader.cpp, leader_versions.cpp) and the other ranks run their
// share of each batch (member.cpp).

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>

#include "base/raise.hpp"
#include "job/roles.hpp"
#include "ml_ranks/serving/leader.hpp"
#include "ml_ranks/serving/make_backend.hpp"
#include "ml_ranks/serving/member.hpp"
#include "ml_ranks/serving/model_versions.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"

namespace mpi = boost::mpi;

namespace tandem::detail {

namespace {

using clock = std::chrono::steady_clock;

// The version a replica starts with and its file: `model` as
// `model_version`, or the policy's choice in `model_dir`.
std::pair<int, std::string> first_version(const ServiceSpec& spec) {
  if (spec.model_dir.empty()) return {spec.model_version, spec.model};
  const std::vector<DirVersion> found = list_model_dir(spec.model_dir);
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    if (spec.pinned_version == 0 || it->version == spec.pinned_version) {
      return {it->version, it->path};
    }
  }
  raise<model_error>(fmt::format(
      "service '{}': model_dir '{}' has no {} (a version is <dir>/<N>/model.pt)", spec.name,
      spec.model_dir,
      spec.pinned_version ? fmt::format("version {}", spec.pinned_version) : "version"));
}

}  // namespace

void run_replica(const Job& job) {
  const RankPlacement& me = job.me();
  const ServiceSpec& spec = job.wf.services[me.service];
  // The replica's own GPUs, before anything initialises CUDA: its model
  // (and a model server it starts) sees them as cuda:0 and on, and no one
  // else's. A replica that asked for none sees none.
  if (job.plan.gpus_managed) {
    const std::string gpus = job.plan.gpu_ids(me.node, me.gpus);
    ::setenv("CUDA_VISIBLE_DEVICES", gpus.c_str(), 1);
    spdlog::info("service '{}' replica {}: GPU(s) {} (CUDA_VISIBLE_DEVICES), device {}", spec.name,
                 me.replica, gpus.empty() ? "none" : gpus, spec.device);
  }
  const BackendContext context{job.run_dir, me.replica, me.replica_rank, me.service};
  // Every rank of the replica loads its own copy of the model, all replicas
  // at once; the leader reports how long the slowest rank took.
  const auto t0 = clock::now();
  VersionSet versions(spec.pinned_version);
  std::string why;
  try {
    auto [version, path] = first_version(spec);
    LoadedVersion v;
    v.version = version;
    v.path = path;
    v.from_dir = !spec.model_dir.empty();
    v.spec = std::make_unique<ServiceSpec>(spec);
    if (!path.empty()) v.spec->model = path;
    v.backend = make_backend(*v.spec, context);
    v.load_s = std::chrono::duration<double>(clock::now() - t0).count();
    versions.add(std::move(v));
  } catch (const std::exception& e) {
    why = e.what();
  }
  double load_s = std::chrono::duration<double>(clock::now() - t0).count();
  if (!versions.empty())
    trace::record(trace::kPhase, trace::kPhaseModelLoaded, me.service, me.replica);
  mpi::communicator replica(job.replica, mpi::comm_attach);
  std::vector<std::string> reasons;
  mpi::gather(replica, why, reasons, 0);
  const double slowest = mpi::all_reduce(replica, load_s, mpi::maximum<double>());
  const int ok = mpi::all_reduce(replica, versions.empty() ? 0 : 1, mpi::minimum<int>());
  if (!ok) versions = VersionSet(spec.pinned_version);
  if (!ok && me.elastic_slot >= 0) {
    // A worker that could not load the model stays a worker; the
    // coordinator says why and does not ask it again.
    if (me.replica_rank == 0) {
      ReplicaReport failed;
      failed.service = me.service;
      failed.replica = me.replica;
      failed.state = static_cast<int>(ServiceState::FAILED);
      failed.final = true;
      failed.load_s = slowest;
      for (std::size_t r = 0; r < reasons.size() && failed.reason.empty(); ++r) {
        if (!reasons[r].empty())
          failed.reason = r == 0 ? reasons[r] : fmt::format("replica rank {}: {}", r, reasons[r]);
      }
      spdlog::error(
          "service '{}' replica {}: this worker could not load the model and stays a "
          "worker: {}",
          spec.name, me.replica, failed.reason);
      mpi::communicator control(job.control, mpi::comm_attach);
      control.send(Job::kCoordinator, tags::kReplicaReport, failed);
    }
    return;
  }

  if (me.replica_rank != 0) {
    serve_as_member(job, versions, context);
    return;
  }
  ReplicaReport report;
  report.service = me.service;
  report.replica = me.replica;
  report.load_s = slowest;
  std::string failure;
  if (ok) {
    report.state = static_cast<int>(ServiceState::READY);
    spdlog::info("service '{}' replica {} READY: {} loaded in {:.3f} s", spec.name, me.replica,
                 name_of(spec.backend), slowest);
  } else {
    report.state = static_cast<int>(ServiceState::FAILED);
    for (std::size_t r = 0; r < reasons.size(); ++r) {
      if (!reasons[r].empty()) {
        report.reason = r == 0 ? reasons[r] : fmt::format("replica rank {}: {}", r, reasons[r]);
        break;
      }
    }
    failure = report.reason;
    spdlog::error("service '{}' replica {} FAILED: {}", spec.name, me.replica, report.reason);
  }
  Leader leader(job, std::move(versions), failure);
  leader.serve(report);
}

}  // namespace tandem::detail
