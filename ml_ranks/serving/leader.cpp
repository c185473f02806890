// A replica's leader: the request path. The leader keeps one FIFO of checked requests; a batch
// is the front request plus the compatible ones right behind it, up to
// max_batch rows, run as soon as it is full, the oldest has waited
// max_delay_us, or nothing else is queued (max_delay_us = 0, the default:
// batch what has piled up while the model was busy, never wait for more).
// A batch that fails is run again request by request, so that one bad
// request fails alone.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/communicator.hpp>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/clock.hpp"
#include "base/digest.hpp"
#include "base/mpi_check.hpp"
#include "base/mpi_wait.hpp"
#include "base/raise.hpp"
#include "base/rank_record.hpp"
#include "base/send_queue.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "ml_ranks/serving/batching.hpp"
#include "ml_ranks/serving/leader.hpp"
#include "ml_ranks/serving/make_backend.hpp"
#include "ml_ranks/serving/recorder.hpp"
#include "protocol/service_messages.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"
#include "transport/buffer_pool.hpp"
#include "transport/direct_endpoint.hpp"
#include "transport/shm.hpp"
#include "transport/staging.hpp"
#include "transport/wire.hpp"

namespace mpi = boost::mpi;

namespace tandem::detail {

wire::Encoded receive_matched(MPI_Message& msg, MPI_Status& status) {
  int n = 0;
  MPI_Get_count(&status, MPI_BYTE, &n);
  wire::Encoded in;
  in.buffer = BufferPool::instance().acquire(std::max(n, 1));
  in.size = static_cast<std::size_t>(n);
  TANDEM_MPI_CHECK(MPI_Mrecv(in.buffer.get(), n, MPI_BYTE, &msg, MPI_STATUS_IGNORE));
  return in;
}

namespace {

using clock = std::chrono::steady_clock;

// steady_clock is CLOCK_MONOTONIC, the trace's clock: the leader's own
// time stamps go into the trace without reading the clock again.
std::int64_t ns(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

// Provenance: the digest of the file a version was loaded from, taken as
// it loads, so that summary.json says which bytes computed the replies.
std::string model_digest(const std::string& path) {
  if (path.empty()) return {};
  try {
    return sha256_file(path);
  } catch (const std::exception& e) {
    spdlog::warn("no SHA-256 for model file {}: {}", path, e.what());
    return {};
  }
}

Leader::Leader(const Job& job, VersionSet versions, std::string failure)
    : job_(job),
      me_(job.me()),
      spec_(job.wf.services[me_.service]),
      versions_(std::move(versions)),
      failure_(std::move(failure)),
      control_(job.control, mpi::comm_attach),
      ready_at_(clock::now()),
      elastic_(me_.elastic_slot >= 0) {
  MPI_Comm_size(job.replica, &replica_size_);
  // A replay answers each request from its own recording: no batches.
  max_batch_ = spec_.backend == BackendKind::replay ? 0 : spec_.max_batch;
  live_.started_us = now_us();
  if (spec_.record && failure_.empty()) {
    recorder_ = std::make_unique<Recorder>(
        fmt::format("{}/services/{}/replica-{}.h5", job.run_dir, spec_.name, me_.replica),
        /*swmr=*/!spec_.inputs.empty() && !spec_.outputs.empty());
  }
  for (const int v : versions_.held()) {
    const LoadedVersion* loaded = versions_.find(v);
    VersionStat& stat = version_stats_[v];
    stat.version = v;
    stat.path = loaded->path;
    stat.sha256 = model_digest(loaded->path);
    stat.load_s = loaded->load_s;
    version_order_.push_back(v);
  }
  note_served();
}

void Leader::send(const Origin& client, Outgoing message) {
  if (client.slot >= 0) {
    direct_->reply({client.slot, client.generation, client.rank, client.pid}, std::move(message));
    return;
  }
  auto [o, request] = sends_.add(std::move(message));
  TANDEM_MPI_CHECK(MPI_Isend(o.message.buffer.get(), static_cast<int>(o.message.size), MPI_BYTE,
                             client.rank, tags::kReply, job_.data, &request));
}

void Leader::open_direct_path() {
  if (job_.mode != Mode::pilot) return;  // no executable tasks to use it
  // An elastic replica leaves while the run goes on: its clients fence it
  // over MPI, so executables reach it through their worker's proxy.
  if (elastic_) return;
  try {
    direct_ = std::make_unique<direct::Endpoint>(me_.service, me_.replica);
    if (!failure_.empty()) direct_->set_state(direct::kDraining);
  } catch (const std::exception& e) {
    spdlog::warn(
        "service '{}' replica {}: no direct path for executable tasks ({}); they go "
        "through their worker",
        spec_.name, me_.replica, e.what());
  }
}

void Leader::take_direct() {
  direct_->take([this](const direct::From& f, wire::Encoded&& in) {
    admit({f.client_rank, f.slot, f.generation, f.pid}, in);
  });
}

// Requests written after the tasks were told we stop get an error, not
// silence; then the endpoint goes.
void Leader::close_direct_path() {
  if (!direct_) return;
  direct_->set_state(direct::kClosed);
  direct_->take([this](const direct::From& f, wire::Encoded&& in) {
    wire::Decoded d;
    std::string why;
    const std::uint64_t id = wire::decode(in.buffer, in.size, d, why) ? d.header.request_id : 0;
    reply_error({f.client_rank, f.slot, f.generation, f.pid}, id,
                "the replica stopped before it took the request");
  });
  direct_->flush();
  direct_.reset();
}

// Replies travel as their requests did: in our shared memory for a client on
// this node (when large enough), in an HDF5 file when the request came in
// one, else inline.
void Leader::reply(const QueuedRequest& r, const TensorList& outputs, int version) {
  const std::size_t bytes = total_bytes(outputs);
  Transport t = Transport::inline_mpi;
  if (r.slot >= 0) {
    // The direct path's rings carry small messages only: larger outputs
    // go in shared memory whatever the service's transport.
    if (static_cast<long long>(bytes) >= job_.wf.job.staging.shm_threshold) t = Transport::shm;
  } else if (r.via_hdf5) {
    t = Transport::hdf5;
  } else if ((r.flags & wire::kReplyShmOk) && spec_.transport != Transport::inline_mpi &&
             static_cast<long long>(bytes) >= job_.wf.job.staging.shm_threshold) {
    t = Transport::shm;
  }
  const std::string h5 = t == Transport::hdf5
                             ? fmt::format("{}/reply-{}-{}-{}-{}.h5", job_.staging_dir(),
                                           spec_.name, me_.replica, r.client, r.id)
                             : std::string();
  try {
    Outgoing o = stage(wire::kReplyOk, r.id, me_.service, outputs, {}, t, h5,
                       r.slot >= 0 ? wire::kReplyShmOk : 0, r.client_pid);
    wire::set_model_version(o.message, version);
    // Sent after its deadline: the client discards it (ClientImpl::
    // receive_replies), judging by the same stamp when it shares our clock.
    const std::int64_t sent_us = wire::stamp_sent(o.message);
    if (r.deadline_wall_us > 0 ? sent_us > r.deadline_wall_us : clock::now() > r.deadline) {
      ++stats_.late;
    }
    send(origin_of(r), std::move(o));
    VersionStat& stat = version_stats_[version];
    ++stat.requests;
    stat.rows += r.rows;
    const auto now = clock::now();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - r.received).count();
    live_.latency_sum_us += us;
    ++live_.latency[LiveStats::latency_bucket(us)];
    trace::record_at(ns(now), trace::kRequestReply, static_cast<std::int64_t>(r.id), version,
                     r.client, static_cast<std::int16_t>(me_.service));
  } catch (const std::exception& e) {
    reply_error(origin_of(r), r.id, fmt::format("cannot send the outputs: {}", e.what()));
  }
}

// About once a second while requests come in: the counters, for the
// coordinator's progress line and metrics file. One message in flight at a
// time; none while idle.
void Leader::send_live_stats() {
  if (live_send_ != MPI_REQUEST_NULL) {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&live_send_, &done, MPI_STATUS_IGNORE));
    if (!done) return;
  }
  const std::int64_t changes =
      stats_.requests + stats_.errors + stats_.late + live_.latency_sum_us + versions_.served() +
      static_cast<std::int64_t>(queue_.size()) +
      std::accumulate(std::begin(live_.latency), std::end(live_.latency), std::int64_t{0});
  if (changes == live_sent_changes_) return;
  live_.service = me_.service;
  live_.replica = me_.replica;
  live_.requests = stats_.requests;
  live_.errors = stats_.errors;
  live_.expired = stats_.expired;
  live_.late = stats_.late;
  live_.batches = stats_.batches;
  live_.rows = stats_.rows;
  live_.model_version = versions_.served();
  live_.queued = static_cast<std::int64_t>(queue_.size());
  live_.busy_us = static_cast<std::int64_t>(stats_.compute_s * 1e6);
  live_in_flight_ = live_;
  live_sent_changes_ = changes;
  TANDEM_MPI_CHECK(MPI_Isend(&live_in_flight_, sizeof(LiveStats) / sizeof(std::int64_t),
                             MPI_INT64_T, Job::kCoordinator, tags::kReplicaStats, job_.control,
                             &live_send_));
}

void Leader::reply_error(const Origin& client, std::uint64_t id, const std::string& why,
                         std::uint32_t flags) {
  ++stats_.errors;
  Outgoing o;
  o.message = wire::encode(
      wire::kReplyError, id, me_.service, {},
      fmt::format("service '{}' (replica {}): {}", spec_.name, me_.replica, why), nullptr, flags);
  send(client, std::move(o));
  trace::record(trace::kRequestReply, static_cast<std::int64_t>(id), 0, client.rank,
                static_cast<std::int16_t>(me_.service));
}

void Leader::receive_requests(bool drain) {
  for (bool first = true; drain || first; first = false) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, tags::kRequest, job_.data, &flag, &msg, &status));
    if (!flag) return;
    wire::Encoded in = receive_matched(msg, status);
    admit({status.MPI_SOURCE}, in);
  }
}

void Leader::admit(const Origin& from, const wire::Encoded& in) {
  wire::Decoded d;
  std::string why;
  const bool readable = wire::decode(in.buffer, in.size, d, why);
  if (readable && (d.header.kind == wire::kLoadModel || d.header.kind == wire::kUnloadModel)) {
    admit_model_op(from, d);  // not a request: not counted as one
    return;
  }
  if (readable && d.header.kind == wire::kFence) {
    // A fence may come before the coordinator's word (the routing table
    // that makes clients fence goes out first): kept until it comes. One
    // of an earlier drain of this replica is stale and never counts.
    const int id = static_cast<int>(d.header.request_id);
    if (draining_) {
      if (id == drain_id_) std::erase(fences_missing_, from.rank);
    } else {
      early_fences_.emplace_back(from.rank, id);
    }
    return;
  }
  ++stats_.requests;
  if (!readable) {
    ++stats_.errors;
    if (from.slot >= 0) {
      // A task on the direct path hears of it, as it would from the proxy.
      reply_error(from, 0, "the replica could not read the request: " + why);
      return;
    }
    // Without a readable header there is no id to answer to.
    spdlog::error("service '{}': dropped a malformed request from rank {}: {}", spec_.name,
                  from.rank, why);
    return;
  }
  const int client = from.rank;
  const auto arrived = clock::now();
  trace::record_at(
      ns(arrived), trace::kRequestQueue, static_cast<std::int64_t>(d.header.request_id),
      static_cast<std::int64_t>(in.size), client, static_cast<std::int16_t>(me_.service));
  if (!failure_.empty()) {
    reply_error(from, d.header.request_id, "the replica FAILED: " + failure_, wire::kServiceError);
    return;
  }
  if (d.header.service != me_.service) {
    reply_error(
        from, d.header.request_id,
        fmt::format("request meant for service #{} reached this replica", d.header.service));
    return;
  }
  if (d.header.kind == wire::kCall) {
    forward_call(from, d.header.request_id, d.text);
    return;
  }
  if (d.header.kind != wire::kRequest) {
    reply_error(from, d.header.request_id,
                fmt::format("a replica does not take messages of kind {}", d.header.kind));
    return;
  }
  if (!resolve(d, /*hand_back_when_dropped=*/false, why)) {
    reply_error(from, d.header.request_id, why);
    return;
  }
  QueuedRequest r;
  r.client = client;
  r.id = d.header.request_id;
  r.flags = d.header.flags;
  r.client_pid = from.slot >= 0 ? from.pid : d.header.sender_pid;
  r.slot = from.slot;
  r.slot_generation = from.generation;
  for (const auto& s : d.staged) r.via_hdf5 |= s.transport == Transport::hdf5;
  r.inputs = std::move(d.tensors);
  r.received = arrived;
  if (!check_request(spec_, r.inputs, r.rows, r.key, why)) {
    reply_error(from, r.id, why);
    return;
  }
  // A request for a version of its own: that version, which must be held;
  // it batches only with requests for the same version.
  if (d.header.model_version > 0) {
    r.version = d.header.model_version;
    if (!versions_.holds(r.version)) {
      reply_error(from, r.id,
                  fmt::format("model version {} is not loaded (this replica holds {})", r.version,
                              fmt::join(versions_.held(), ", ")));
      return;
    }
    r.key ^= static_cast<std::uint64_t>(r.version) * 0x9E3779B97F4A7C15ULL;
  }
  if (d.header.deadline_us > 0) {
    // On this node the client's clock is ours; from another node only the
    // time left when it was sent counts, from now.
    const bool same_node = (r.flags & wire::kReplyShmOk) != 0 || r.slot >= 0;
    const std::int64_t left_us =
        same_node ? d.header.deadline_us - now_us() : d.header.deadline_us - d.header.t_sent_us;
    r.deadline = arrived + std::chrono::microseconds(left_us);
    if (same_node) r.deadline_wall_us = d.header.deadline_us;
    if (shed_at_admission(r)) return;
    ++queued_with_deadline_;
  }
  queue_.push_back(std::move(r));
}

bool Leader::shed_at_admission(const QueuedRequest& r) {
  const auto now = r.received;
  if (now >= r.deadline) {
    expire(r, "its deadline had passed when it arrived", now);
    return true;
  }
  if (batch_s_ <= 0) return false;  // no batch measured yet: nothing to go by
  // The batches ahead of it, as if every queued request could share one.
  std::int64_t rows = r.rows;
  for (const auto& q : queue_) rows += q.rows;
  const std::int64_t per_batch = std::max(max_batch_, 1);
  const std::int64_t batches = (rows + per_batch - 1) / per_batch;
  const double wait_s = static_cast<double>(batches) * batch_s_;
  const double left_s = std::chrono::duration<double>(r.deadline - now).count();
  if (wait_s + std::chrono::duration<double>(r.reply_margin()).count() <= left_s) return false;
  expire(r,
         fmt::format("{} request(s) are queued ahead, about {:.1f} ms of work, and it had "
                     "{:.1f} ms left",
                     queue_.size(), wait_s * 1e3, left_s * 1e3),
         now);
  return true;
}

// Before each batch: a request whose time is up, or that could not be
// answered before it even if its batch started now, goes unanswered by the
// model.
void Leader::drop_expired(clock::time_point now) {
  if (queued_with_deadline_ == 0) return;
  const auto batch =
      std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(batch_s_));
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (!it->has_deadline() || now + batch + it->reply_margin() <= it->deadline) {
      ++it;
      continue;
    }
    expire(
        *it,
        now > it->deadline
            ? fmt::format("its deadline passed {:.1f} ms ago while it waited in the queue",
                          std::chrono::duration<double, std::milli>(now - it->deadline).count())
            : fmt::format("a batch takes about {:.1f} ms and it had {:.1f} ms left", batch_s_ * 1e3,
                          std::chrono::duration<double, std::milli>(it->deadline - now).count()),
        now);
    --queued_with_deadline_;
    it = queue_.erase(it);
  }
}

void Leader::expire(const QueuedRequest& r, const std::string& why, clock::time_point now) {
  ++stats_.expired;
  trace::record_at(ns(now), trace::kRequestExpired, static_cast<std::int64_t>(r.id),
                   std::chrono::duration_cast<std::chrono::microseconds>(now - r.deadline).count(),
                   r.client, static_cast<std::int16_t>(me_.service));
  reply_error(origin_of(r), r.id, "deadline exceeded: " + why + "; it was not computed",
              wire::kDeadline);
}

// Lets the backend check its health; one that can no longer serve makes
// the replica FAILED, and from then on every request gets that reason.
void Leader::check_backend() {
  Backend* backend = failure_.empty() ? versions_.served_backend() : nullptr;
  if (!backend) return;
  backend->tick();
  std::string why = backend->failure();
  if (why.empty()) return;
  fail(why);
}

void Leader::fail(const std::string& why) {
  failure_ = why;
  ReplicaReport failed;
  failed.service = me_.service;
  failed.replica = me_.replica;
  failed.state = static_cast<int>(ServiceState::FAILED);
  failed.reason = why;
  control_.send(Job::kCoordinator, tags::kReplicaReport, failed);
  if (direct_) direct_->set_state(direct::kDraining);  // tasks hear of it through their worker
  // What is queued cannot be served any more.
  queued_with_deadline_ = 0;
  while (!queue_.empty()) {
    reply_error(origin_of(queue_.front()), queue_.front().id, "the replica FAILED: " + why,
                wire::kServiceError);
    queue_.pop_front();
  }
}

void Leader::check_stop() {
  if (draining_) return;
  if (elastic_) {
    // The coordinator shrinks the service: leave once every client that
    // might still send here has fenced (ClientImpl::fence_drains).
    int flag = 0;
    MPI_Status status;
    TANDEM_MPI_CHECK(
        MPI_Iprobe(Job::kCoordinator, tags::kServiceDrain, job_.control, &flag, &status));
    if (flag) {
      int n = 0;
      MPI_Get_count(&status, MPI_INT32_T, &n);
      std::vector<std::int32_t> message(static_cast<std::size_t>(n));
      TANDEM_MPI_CHECK(MPI_Recv(message.data(), n, MPI_INT32_T, Job::kCoordinator,
                                tags::kServiceDrain, job_.control, MPI_STATUS_IGNORE));
      drain_id_ = message.empty() ? 0 : message[0];
      if (n > 1) fences_missing_.assign(message.begin() + 1, message.end());
      for (const auto& [rank, id] : early_fences_) {
        if (id == drain_id_) std::erase(fences_missing_, rank);
      }
      early_fences_.clear();
    }
  }
  if (!draining_ && drain_id_ == 0 && control_.iprobe(Job::kCoordinator, tags::kServiceStop)) {
    int unused = 0;
    control_.recv(Job::kCoordinator, tags::kServiceStop, unused);
    drain_id_ = -1;  // the end of the run: nobody will send again
  }
  if (drain_id_ != 0) {
    draining_ = true;
    if (direct_) direct_->set_state(direct::kDraining);
    ReplicaReport draining;
    draining.service = me_.service;
    draining.replica = me_.replica;
    draining.state =
        static_cast<int>(failure_.empty() ? ServiceState::DRAINING : ServiceState::FAILED);
    draining.reason = failure_;
    control_.send(Job::kCoordinator, tags::kReplicaReport, draining);
  }
}

// Runs @p inputs (rows along dimension 0) over the replica's ranks: each
// rank gets an equal share of the rows, the leader the first one.
TensorList Leader::compute(const TensorList& inputs, std::int64_t rows, int version) {
  Backend* backend = versions_.backend(version);
  if (!backend) {
    raise<model_error>(fmt::format("model version {} is not loaded (this replica holds {})",
                                   version, fmt::join(versions_.held(), ", ")));
  }
  if (replica_size_ == 1 || rows < 2) return backend->infer(inputs);
  const std::int64_t share = (rows + replica_size_ - 1) / replica_size_;
  const std::uint64_t batch_id = ++batch_counter_;
  std::vector<int> helpers;
  std::vector<wire::Encoded> outgoing;
  std::vector<MPI_Request> requests;
  for (int m = 1; m < replica_size_; ++m) {
    const std::int64_t first = m * share;
    if (first >= rows) break;
    const std::int64_t n = std::min(share, rows - first);
    outgoing.push_back(
        wire::encode(wire::kRequest, batch_id, me_.service, slice_rows(inputs, first, n)));
    wire::set_model_version(outgoing.back(), version);  // every rank runs the same version
    requests.emplace_back();
    TANDEM_MPI_CHECK(MPI_Isend(outgoing.back().buffer.get(), static_cast<int>(outgoing.back().size),
                               MPI_BYTE, m, tags::kReplicaWork, job_.replica, &requests.back()));
    helpers.push_back(m);
  }
  std::string failure;
  TensorList mine;
  try {
    mine = backend->infer(slice_rows(inputs, 0, std::min(share, rows)));
  } catch (const std::exception& e) {
    failure = e.what();
  }
  std::vector<TensorList> parts{mine};
  std::vector<wire::Decoded> keep(helpers.size());
  for (std::size_t i = 0; i < helpers.size(); ++i) {
    MPI_Message msg;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Mprobe(helpers[i], tags::kReplicaResult, job_.replica, &msg, &status));
    wire::Encoded in = receive_matched(msg, status);
    std::string why;
    if (!wire::decode(in.buffer, in.size, keep[i], why)) {
      failure = fmt::format("replica rank {} sent an unreadable result: {}", helpers[i], why);
    } else if (keep[i].header.kind == wire::kReplyError && failure.empty()) {
      failure = fmt::format("replica rank {}: {}", helpers[i], keep[i].text);
    }
    parts.push_back(keep[i].tensors);
  }
  MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
  if (!failure.empty()) throw model_error(failure);
  // Stitch the parts back together in row order.
  std::vector<QueuedRequest> pieces(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    pieces[i].inputs = parts[i];
    pieces[i].rows =
        parts[i].empty() || parts[i][0].tensor.shape().empty() ? 1 : parts[i][0].tensor.shape()[0];
  }
  return concatenate(pieces);
}

void Leader::run_batch(std::vector<QueuedRequest>& batch) {
  std::int64_t rows = 0;
  for (const auto& r : batch) rows += r.rows;
  const std::int64_t batch_id = ++traced_batches_;
  for (const auto& r : batch) {
    trace::record(trace::kRequestBatch, static_cast<std::int64_t>(r.id), batch_id, r.client,
                  static_cast<std::int16_t>(me_.service));
  }
  // In the black box while it runs: a model that takes the rank down is
  // charged to the tasks whose requests were in the batch.
  // Requests on the direct path name their task's process too.
  int clients[rank_record::kClients];
  int pids[rank_record::kClients];
  int nclients = 0;
  for (const auto& r : batch) {
    const int pid = r.slot >= 0 ? static_cast<int>(r.client_pid) : 0;
    bool seen = false;
    for (int i = 0; i < nclients; ++i) seen |= clients[i] == r.client && pids[i] == pid;
    if (!seen && nclients < rank_record::kClients) {
      clients[nclients] = r.client;
      pids[nclients++] = pid;
    }
  }
  rank_record::set_batch(clients, pids, nclients);
  // The version is chosen once per batch: a switch happens between two
  // batches, never within one.
  const int version = batch.front().version > 0 ? batch.front().version : versions_.served();
  const auto t0 = clock::now();
  TensorList outputs;
  TensorList inputs;
  std::string failure;
  try {
    inputs = concatenate(batch);
    outputs = compute(inputs, rows, version);
    if (batch.size() > 1) {
      for (const auto& o : outputs) {
        if (o.tensor.shape().empty() || o.tensor.shape()[0] != rows) {
          raise<model_error>(
              fmt::format("the model returned '{}' as {} for a batch of {} rows; outputs "
                          "must keep the batch dimension",
                          o.name, o.tensor.describe(), rows));
        }
      }
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  rank_record::set_batch(nullptr, nullptr, 0);
  const auto t1 = clock::now();

  const double took_s = std::chrono::duration<double>(t1 - t0).count();
  stats_.compute_s += took_s;
  // A moving average of batch times, for deadlines; a failed batch says
  // nothing about the next.
  if (failure.empty()) batch_s_ = batch_s_ <= 0 ? took_s : 0.8 * batch_s_ + 0.2 * took_s;
  trace::record_at(ns(t0), trace::kBatchCompute, batch_id, ns(t1) - ns(t0),
                   static_cast<std::int32_t>(rows), static_cast<std::int16_t>(me_.service));
  ++stats_.batches;
  stats_.rows += rows;
  ++batch_sizes_[static_cast<int>(rows)];
  if (!failure.empty()) {
    if (batch.size() == 1) {
      reply_error(origin_of(batch[0]), batch[0].id, "the model failed: " + failure);
      return;
    }
    // Find the bad request(s): run each alone.
    for (auto& r : batch) {
      std::vector<QueuedRequest> one;
      one.push_back(std::move(r));
      run_batch(one);
    }
    return;
  }
  if (recorder_) {
    std::vector<std::int64_t> request_rows;
    request_rows.reserve(batch.size());
    for (const auto& r : batch) request_rows.push_back(r.rows);
    recorder_->submit(inputs, outputs, request_rows);
  }
  if (batch.size() == 1) {
    reply(batch[0], outputs, version);
    return;
  }
  std::int64_t first = 0;
  for (const auto& r : batch) {
    reply(r, slice_rows(outputs, first, r.rows), version);
    first += r.rows;
  }
}

// A JSON call goes straight to the backend (OpenAI-style endpoints); the
// answer's text travels back in the reply.
void Leader::forward_call(const Origin& client, std::uint64_t id, const std::string& text) {
  Backend* backend = versions_.served_backend();
  if (!backend || !backend->takes_calls()) {
    reply_error(client, id, "this service takes tensors through infer(), not JSON calls");
    return;
  }
  const auto newline = text.find('\n');
  const std::string path = newline == std::string::npos ? text : text.substr(0, newline);
  const std::string body = newline == std::string::npos ? std::string() : text.substr(newline + 1);
  ++stats_.batches;
  ++stats_.rows;
  backend->call(path, body, [this, client, id](std::string&& answer, const std::string& error) {
    if (!error.empty()) {
      reply_error(client, id, error);
      return;
    }
    Outgoing o;
    o.message = wire::encode(wire::kReplyOk, id, me_.service, {}, answer);
    send(client, std::move(o));
    trace::record(trace::kRequestReply, static_cast<std::int64_t>(id), 1, client.rank,
                  static_cast<std::int16_t>(me_.service));
  });
}

// For asynchronous backends (remote endpoints): every queued request goes
// out at once, unbatched; answers are sent as they come back.
bool Leader::forward_queued() {
  drop_expired(clock::now());
  queued_with_deadline_ = 0;  // every request left goes out now
  bool worked = false;
  while (!queue_.empty()) {
    QueuedRequest r = std::move(queue_.front());
    queue_.pop_front();
    ++stats_.batches;
    stats_.rows += r.rows;
    ++batch_sizes_[static_cast<int>(r.rows)];
    trace::record(trace::kRequestBatch, static_cast<std::int64_t>(r.id), ++traced_batches_,
                  r.client, static_cast<std::int16_t>(me_.service));
    QueuedRequest meta;  // what the reply needs; the inputs are copied out by submit
    meta.client = r.client;
    meta.id = r.id;
    meta.flags = r.flags;
    meta.via_hdf5 = r.via_hdf5;
    meta.client_pid = r.client_pid;
    meta.slot = r.slot;
    meta.slot_generation = r.slot_generation;
    meta.deadline = r.deadline;
    meta.deadline_wall_us = r.deadline_wall_us;
    const int version = versions_.served();
    versions_.served_backend()->submit(
        r.inputs, [this, meta, version](TensorList&& outputs, const std::string& error) {
          if (error.empty()) {
            reply(meta, outputs, version);
          } else {
            reply_error(origin_of(meta), meta.id, error);
          }
        });
    worked = true;
  }
  if (versions_.served_backend()->progress(worked ? 0 : 1) > 0) worked = true;
  sends_.progress();
  return worked;
}

void Leader::serve(const ReplicaReport& report) {
  if (report.state == static_cast<int>(ServiceState::FAILED)) failure_ = report.reason;
  control_.send(Job::kCoordinator, tags::kReplicaReport, report);
  // After the report: READY is not held up by it, and a task that comes
  // before the endpoint uses the proxy and looks again a second later.
  open_direct_path();
  Backoff backoff(job_.wf.job.backoff);
  auto next_sweep = clock::now() + std::chrono::seconds(10);
  auto next_stats = clock::now() + std::chrono::seconds(1);
  // The running counters, also between the batches of a queue that never
  // empties: the coordinator scales elastic services by them.
  const auto stats_due = [&](clock::time_point now) {
    if (now <= next_stats) return;
    send_live_stats();
    next_stats = now + (spec_.elastic() ? std::chrono::milliseconds(100) : std::chrono::seconds(1));
  };
  auto next_direct_sweep = clock::now();
  for (unsigned turn = 0;; ++turn) {
    receive_requests(/*drain=*/false);
    if (direct_ && direct_->rang()) take_direct();
    check_backend();
    if (loading_ || !ops_.empty()) step_lifecycle();
    // The coordinator's messages and the clocks every few turns: each
    // probe of the control channel that finds nothing costs a yield, and
    // a stop or the once-a-second counters can wait a few turns.
    if (turn % kHousekeepingEvery == 0) {
      const auto now = clock::now();
      stats_due(now);
      if (now > next_sweep) {
        // Request segments of clients that died go now, not at the next run.
        shm::remove_stale();
        next_sweep = now + std::chrono::seconds(10);
      }
      if (direct_ && now > next_direct_sweep) {
        // Slots of tasks that ended or died are free again.
        direct_->sweep();
        next_direct_sweep = now + std::chrono::milliseconds(100);
      }
      check_stop();
      if (!spec_.model_dir.empty() && failure_.empty() && now > next_dir_poll_) {
        watch_model_dir();
        next_dir_poll_ = now + std::chrono::duration_cast<clock::duration>(
                                   std::chrono::duration<double>(spec_.poll_interval_s));
      }
    }
    sends_.progress();
    if (direct_ && direct_->holding()) direct_->flush();
    bool worked = false;
    Backend* served = failure_.empty() ? versions_.served_backend() : nullptr;
    if (served && served->asynchronous()) {
      worked = forward_queued();
    } else {
      // Nothing served (swap = "pause" between two versions): requests wait.
      for (;;) {
        if (!serving()) break;
        const auto now = clock::now();
        drop_expired(now);
        if (!batch_due(queue_, max_batch_, spec_.max_delay_us, draining_, now)) break;
        std::vector<QueuedRequest> batch = take_batch(queue_, max_batch_);
        for (const auto& r : batch) queued_with_deadline_ -= r.has_deadline() ? 1 : 0;
        run_batch(batch);
        sends_.progress();
        worked = true;
        stats_due(clock::now());
        // Let requests that arrived meanwhile join the next batch.
        receive_requests(/*drain=*/true);
        if (direct_ && direct_->rang()) take_direct();
      }
    }
    // A replica that FAILED has answered everything queued; one paused for
    // a swap serves what is queued once the new version is in.
    if (draining_ && queue_.empty() && (!served || served->pending() == 0) &&
        fences_missing_.empty()) {
      break;
    }
    if (served && served->pending() > 0) continue;  // progress() waited on the network
    if (worked) {
      backoff.reset();
    } else if (direct_) {
      // A task's request ends the sleep at once.
      backoff.pause_with([this](long ns) { direct_->sleep(ns); });
    } else {
      backoff.pause();
    }
  }
  close_direct_path();
  if (loading_) {
    answer_op(loading_->op, "the replica stopped before the load finished");
    loading_.reset();  // waits for the loading thread
  }
  for (const ModelOp& op : ops_) answer_op(op, "the replica stopped before it took the operation");
  ops_.clear();
  // Everything queued is answered; make sure the answers have left.
  sends_.wait_all(job_.wf.job.backoff);
  // The last counters go before the final report, so that the
  // coordinator's last metrics are complete.
  if (live_send_ != MPI_REQUEST_NULL) wait_request(live_send_, job_.wf.job.backoff);
  send_live_stats();
  if (live_send_ != MPI_REQUEST_NULL) wait_request(live_send_, job_.wf.job.backoff);
  wire::Encoded stop = wire::encode(wire::kStopMember, 0, me_.service, {});
  for (int m = 1; m < replica_size_; ++m) {
    TANDEM_MPI_CHECK(MPI_Send(stop.buffer.get(), static_cast<int>(stop.size), MPI_BYTE, m,
                              tags::kReplicaWork, job_.replica));
  }
  stats_.service = me_.service;
  stats_.replica = me_.replica;
  stats_.state = static_cast<int>(failure_.empty() ? ServiceState::STOPPED : ServiceState::FAILED);
  stats_.final = true;
  stats_.load_s = report.load_s;
  stats_.reason = failure_;
  stats_.batch_sizes.assign(batch_sizes_.begin(), batch_sizes_.end());
  if (const int v = versions_.served(); v > 0) version_stats_[v].served_until_s = since_ready();
  for (const int v : version_order_) stats_.versions.push_back(version_stats_[v]);
  if (recorder_) {
    const RecorderStats r = recorder_->finish();
    stats_.recording_file = r.file;
    stats_.recorded_rows = r.rows;
    stats_.recording_dropped = r.dropped;
    stats_.recording_errors = r.errors;
    stats_.recording_error = r.last_error;
  }
  control_.send(Job::kCoordinator, tags::kReplicaReport, stats_);
}

}  // namespace tandem::detail
