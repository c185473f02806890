// Requests go straight from the client to a replica leader on the data
// communicator; the coordinator only tells clients which replicas are READY.
// Choice of replica: READY ones on this rank's node first, then the one with
// the fewest of this client's requests outstanding, ties in turn.

#include "client/client_impl.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/communicator.hpp>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/clock.hpp"
#include "base/mpi_check.hpp"
#include "tandem/client.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"
#include "transport/buffer_pool.hpp"

namespace mpi = boost::mpi;

namespace tandem::detail {

namespace {

// What went wrong before, then @p last (once: a fallback that could not
// take the request has already said it).
std::string then(const std::string& before, const std::string& last) {
  if (before.empty()) return last;
  if (before.find(last) != std::string::npos) return before;
  return before + "; then " + last;
}

// Reply files are the client's to remove once read.
void remove_reply_files(const wire::Decoded& d) {
  for (const auto& s : d.staged) {
    if (s.transport == Transport::hdf5)
      ::unlink(s.location.substr(0, s.location.find('\n')).c_str());
  }
}

}  // namespace

ClientImpl::ClientImpl(const Job& job) : job_(job), wf_(job.wf), plan_(job.plan) {
  table_.states.resize(wf_.services.size());
  table_.reasons.resize(wf_.services.size());
  table_.drain_ids.resize(wf_.services.size());
  for (const ReplicaPlacement& r : plan_.replicas) {
    // An elastic service's extra replicas start as workers.
    table_.states[r.service].push_back(
        static_cast<int>(r.elastic ? ServiceState::STOPPED : ServiceState::STARTING));
    table_.reasons[r.service].emplace_back();
    table_.drain_ids[r.service].push_back(0);
  }
  outstanding_.assign(plan_.replicas.size(), 0);
  next_.assign(wf_.services.size(), 0);
}

ClientImpl::~ClientImpl() = default;

int ClientImpl::service_index(const std::string& name) const {
  const int s = wf_.find_service(name);
  if (s >= 0) return s;
  std::vector<std::string> names;
  for (const auto& spec : wf_.services) names.push_back(spec.name);
  throw service_error(
      name, names.empty() ? fmt::format("unknown service '{}': this job has no services", name)
                          : fmt::format("unknown service '{}': this job has {}", name,
                                        fmt::join(names, ", ")));
}

bool ClientImpl::progress() {
  const bool routed = receive_routing();
  const bool replied = receive_replies(nullptr);
  check_deadlines();
  return replied || routed;
}

void ClientImpl::scale(int service, int replicas) {
  const ServiceSpec& spec = wf_.services[service];
  if (!spec.elastic()) {
    throw service_error(spec.name, fmt::format("service '{}' has a fixed count of replicas ({}): "
                                               "scale needs replicas = {{ min, max }}",
                                               spec.name, spec.replicas));
  }
  if (replicas < spec.replicas || replicas > spec.replicas_max) {
    throw service_error(spec.name,
                        fmt::format("service '{}' may have {} to {} replicas, not {}", spec.name,
                                    spec.replicas, spec.replicas_max, replicas));
  }
  if (job_.mode != Mode::pilot) {
    throw service_error(spec.name, "scale needs the pilot's coordinator (tandem run)");
  }
  const std::int32_t message[2] = {service, replicas};
  TANDEM_MPI_CHECK(
      MPI_Send(message, 2, MPI_INT32_T, Job::kCoordinator, tags::kScale, job_.control));
}

bool ClientImpl::refresh_routing() {
  if (trace::clock_ns() - routing_read_ns_ < kRoutingIntervalNs) return false;
  return receive_routing();
}

bool ClientImpl::receive_routing() {
  routing_read_ns_ = trace::clock_ns();
  bool any = false;
  mpi::communicator control(job_.control, mpi::comm_attach);
  RoutingTable before;
  while (control.iprobe(Job::kCoordinator, tags::kRouting)) {
    RoutingTable t;
    control.recv(Job::kCoordinator, tags::kRouting, t);
    if (t.version > table_.version) {
      if (before.states.empty()) before = table_;
      table_ = std::move(t);
    }
    any = true;
  }
  if (!before.states.empty()) fence_drains(before);
  return any;
}

// An elastic replica that leaves its service waits for a fence from every
// client that might still send to it; MPI keeps a client's messages to it
// in order, so the fence comes after the client's last request. Only a
// drain still under way in the newest table is fenced: one that ended
// while this rank was serving did not wait for it.
void ClientImpl::fence_drains(const RoutingTable& before) {
  for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
    const ReplicaPlacement& r = plan_.replicas[i];
    if (!r.elastic) continue;
    const auto s = static_cast<std::size_t>(r.service);
    const auto k = static_cast<std::size_t>(r.replica);
    const int id = table_.drain_ids[s][k];
    if (table_.states[s][k] != static_cast<int>(ServiceState::DRAINING) || id == 0) continue;
    if (before.drain_ids.size() > s && before.drain_ids[s][k] == id &&
        before.states[s][k] == static_cast<int>(ServiceState::DRAINING)) {
      continue;  // fenced when this drain first showed
    }
    const wire::Encoded fence =
        wire::encode(wire::kFence, static_cast<std::uint64_t>(id), r.service, {});
    TANDEM_MPI_CHECK(MPI_Send(fence.buffer.get(), static_cast<int>(fence.size), MPI_BYTE,
                              r.ranks[0], tags::kRequest, job_.data));
  }
}

bool ClientImpl::receive_replies(const PendingInfer* until) {
  bool any = false;
  while (!(until && until->done)) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, tags::kReply, job_.data, &flag, &msg, &status));
    if (!flag) break;
    any = true;
    int n = 0;
    MPI_Get_count(&status, MPI_BYTE, &n);
    auto buffer = BufferPool::instance().acquire(std::max(n, 1));
    TANDEM_MPI_CHECK(MPI_Mrecv(buffer.get(), n, MPI_BYTE, &msg, MPI_STATUS_IGNORE));
    wire::Decoded d;
    std::string why;
    if (!wire::decode(buffer, static_cast<std::size_t>(n), d, why)) {
      spdlog::error("dropped an unreadable reply from rank {}: {}", status.MPI_SOURCE, why);
      continue;
    }
    auto it = pending_.find(d.header.request_id);
    if (it == pending_.end()) {
      spdlog::error("dropped a reply to unknown request {} from rank {}", d.header.request_id,
                    status.MPI_SOURCE);
      continue;
    }
    const std::shared_ptr<PendingInfer> keep = it->second;
    PendingInfer& p = *keep;
    pending_.erase(it);
    --outstanding_[p.replica];
    if (p.deadline != std::chrono::steady_clock::time_point::max() && !p.abandoned) {
      --with_deadline_;
    }
    // The reply proves the request arrived and was used, so its send is
    // complete and its staged inputs can be handed back.
    if (p.send != MPI_REQUEST_NULL) MPI_Wait(&p.send, MPI_STATUS_IGNORE);
    finish(p.outgoing);
    // A late reply is never delivered as if it were on time: counted, and
    // its staged outputs go back to the replica unread.
    const auto drop_late = [&] {
      ++late_replies_;
      if (resolve(d, /*hand_back_when_dropped=*/true, why)) d.tensors.clear();
      remove_reply_files(d);
      trace::record(trace::kClientDeadline, static_cast<std::int64_t>(p.id), 1, p.service);
    };
    if (p.abandoned) {  // its caller stopped waiting at the deadline
      drop_late();
      continue;
    }
    if (d.header.kind == wire::kReplyOk && sent_late(p, d.header.t_sent_us)) {
      // Answered after the deadline, and the caller had not looked yet.
      drop_late();
      const std::string late = deadline_text(p, /*answered_late=*/true);
      if (fall_back(keep, late.c_str())) continue;
      p.done = true;
      p.deadline_missed = true;
      p.error = then(p.first_error, late);
      trace::record(trace::kReplyReceive, static_cast<std::int64_t>(p.id), 0, p.service);
      continue;
    }
    std::string error;
    if (d.header.kind == wire::kReplyOk && d.tensors.empty() && !d.text.empty()) {
      p.answer = std::move(d.text);  // a JSON call's answer
    } else if (d.header.kind == wire::kReplyOk) {
      const bool pass = p.pass_through && !d.staged.empty() &&
                        std::all_of(d.staged.begin(), d.staged.end(), [](const wire::Staged& s) {
                          return s.transport == Transport::shm;
                        });
      if (resolve(d, /*hand_back_when_dropped=*/!pass, why)) {
        if (pass) p.staged_outputs = d.staged;
        p.outputs = std::move(d.tensors);
      } else {
        error = fmt::format("service '{}': the reply could not be read: {}",
                            wf_.services[p.service].name, why);
      }
      remove_reply_files(d);
    } else {
      error = d.text.empty() ? "the service answered with an error" : d.text;
      // A deadline that cannot be met or a replica that cannot serve: the
      // service's fallback, if it has one, answers instead.
      if ((d.header.flags & (wire::kDeadline | wire::kServiceError)) != 0 &&
          fall_back(keep, error.c_str())) {
        continue;
      }
      p.deadline_missed = (d.header.flags & wire::kDeadline) != 0;
    }
    p.done = true;
    p.model_version = d.header.model_version;
    if (error.empty()) {
      p.answered_by = p.service;
    } else {
      p.error = then(p.first_error, error);
    }
    if (!p.model_op) {
      trace::record(trace::kReplyReceive, static_cast<std::int64_t>(p.id),
                    p.error.empty() ? std::max(p.model_version, 1) : 0, p.service);
    }
  }
  return any;
}

bool ClientImpl::may_answer(int service) const {
  const ServiceState s = aggregate(service);
  return s == ServiceState::READY || s == ServiceState::STARTING;
}

bool ClientImpl::fall_back(const std::shared_ptr<PendingInfer>& p, const char* why) {
  const int from = p->service;
  const int fallback = wf_.services[from].fallback_service;
  if (fallback < 0 || p->model_op || !p->answer.empty()) return false;
  p->first_error = then(p->first_error, why);
  std::shared_ptr<PendingInfer> next;
  try {
    next = send(fallback, p->fallback_inputs, std::nullopt, nullptr, 0, /*may_wait=*/false);
  } catch (const std::exception& e) {
    p->first_error += fmt::format("; the fallback service '{}' could not take it: {}",
                                  wf_.services[fallback].name, e.what());
    return false;
  }
  // @p p becomes the fallback's request, so that whoever holds it (a
  // handle, the proxy) waits on as before.
  pending_.erase(next->id);
  p->id = next->id;
  p->service = next->service;
  p->replica = next->replica;
  p->send = next->send;
  p->outgoing = std::move(next->outgoing);
  p->pass_through = next->pass_through;
  p->deadline = next->deadline;
  p->deadline_ms = next->deadline_ms;
  p->deadline_wall_us = next->deadline_wall_us;
  p->fallback_inputs = std::move(next->fallback_inputs);
  if (!next->first_error.empty()) p->first_error += "; then " + next->first_error;
  p->done = false;
  p->abandoned = false;
  p->deadline_missed = false;
  pending_.emplace(p->id, p);
  trace::record(trace::kFallback, static_cast<std::int64_t>(p->id),
                static_cast<std::int64_t>(p->first_id), from,
                static_cast<std::int16_t>(p->service));
  return true;
}

std::string ClientImpl::deadline_text(const PendingInfer& p, bool answered_late) const {
  if (answered_late) {
    return fmt::format(
        "deadline exceeded: service '{}' (replica {}) answered after the {:g} ms deadline; the "
        "late answer was discarded",
        wf_.services[p.service].name, plan_.replicas[p.replica].replica, p.deadline_ms);
  }
  return fmt::format(
      "deadline exceeded: service '{}' did not answer within {:g} ms (replica {} still holds "
      "the request; its reply will be discarded)",
      wf_.services[p.service].name, p.deadline_ms, plan_.replicas[p.replica].replica);
}

// A reply to a request with a deadline came after it: by the replica's
// stamp when it shares our clock (the replica counts it late by the same
// stamp), else by when we read it.
bool ClientImpl::sent_late(const PendingInfer& p, std::int64_t sent_us) const {
  if (p.deadline == std::chrono::steady_clock::time_point::max()) return false;
  if (p.deadline_wall_us > 0 && sent_us > 0) return sent_us > p.deadline_wall_us;
  return std::chrono::steady_clock::now() > p.deadline;
}

void ClientImpl::check_deadlines() {
  if (with_deadline_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  // The request path polls often: the requests in flight are looked
  // through only once the earliest deadline among them has come.
  if (now < next_deadline_) return;
  const auto due_now = [&] {
    std::vector<std::shared_ptr<PendingInfer>> due;
    next_deadline_ = std::chrono::steady_clock::time_point::max();
    for (const auto& [id, p] : pending_) {
      if (p->done || p->abandoned) continue;
      if (p->deadline <= now) {
        due.push_back(p);
      } else {
        next_deadline_ = std::min(next_deadline_, p->deadline);
      }
    }
    return due;
  };
  std::vector<std::shared_ptr<PendingInfer>> due = due_now();
  if (due.empty()) return;
  // A reply that is here already counts as on time: the replica sent it
  // before the deadline.
  if (receive_replies(nullptr)) due = due_now();
  for (const auto& p : due) {
    // The request stays known under its id, so that its reply, when it
    // comes, is recognised, counted and dropped.
    auto stale = std::make_shared<PendingInfer>();
    stale->id = p->id;
    stale->service = p->service;
    stale->replica = p->replica;
    stale->abandoned = true;
    stale->send = p->send;
    stale->outgoing = std::move(p->outgoing);
    p->send = MPI_REQUEST_NULL;
    pending_[p->id] = stale;
    --with_deadline_;
    trace::record(trace::kClientDeadline, static_cast<std::int64_t>(p->id), 0, p->service);
    const std::string why = deadline_text(*p);
    if (fall_back(p, why.c_str())) continue;
    p->done = true;
    p->deadline_missed = true;
    p->error = then(p->first_error, why);
    trace::record(trace::kReplyReceive, static_cast<std::int64_t>(p->id), 0, p->service);
  }
}

// Requests and calls go to a READY service. One that is still STARTING (or,
// with per_node placement, whose replica on this node still is) is
// waited for, as a newcomer expects (a model takes a second to load; the
// first request of a job should not fail for it), up to the client's
// ready_timeout or the service's start_timeout. A FAILED or ending service
// fails at once: waiting would not help.
void ClientImpl::require_ready(int service, bool may_wait) {
  const std::string& name = wf_.services[service].name;
  const ServiceState s = aggregate(service);
  if (s == ServiceState::READY && (!may_wait || !local_replica_starting(service))) return;
  if (loading(service)) {
    if (may_wait) {
      wait_ready(service, ready_timeout(service));
      return;
    }
    if (s == ServiceState::STARTING) {
      throw service_error(name, fmt::format("service '{}' is not READY yet (STARTING: its model "
                                            "is loading)",
                                            name));
    }
    return;  // per_node, not waiting: a READY replica elsewhere will do
  }
  if (s == ServiceState::FAILED) {
    throw service_error(name,
                        fmt::format("service '{}' FAILED: {}", name, failure_reason(service)));
  }
  throw service_error(name, fmt::format("service '{}' is {}: the run is ending", name, name_of(s)));
}

bool ClientImpl::loading(int service) const {
  const ServiceState s = aggregate(service);
  return s == ServiceState::STARTING ||
         (s == ServiceState::READY && local_replica_starting(service));
}

std::string ClientImpl::not_ready_in_time(int service, double timeout_s) const {
  return fmt::format(
      "service '{}' was not READY within {:g} s (still STARTING: its model is "
      "loading); a request waits up to the client's ready_timeout, else the "
      "service's start_timeout",
      wf_.services[service].name, timeout_s);
}

ServiceState ClientImpl::aggregate(int service) const {
  const auto& states = table_.states[service];
  bool any_starting = false;
  bool any_draining = false;
  bool any_stopped = false;
  for (int s : states) {
    const auto st = static_cast<ServiceState>(s);
    if (st == ServiceState::READY) return ServiceState::READY;
    any_starting |= st == ServiceState::STARTING;
    any_draining |= st == ServiceState::DRAINING;
    any_stopped |= st == ServiceState::STOPPED;
  }
  if (any_starting) return ServiceState::STARTING;
  if (any_draining) return ServiceState::DRAINING;
  if (any_stopped) return ServiceState::STOPPED;
  return ServiceState::FAILED;
}

std::string ClientImpl::failure_reason(int service) const {
  std::vector<std::string> parts;
  const auto& reasons = table_.reasons[service];
  for (std::size_t r = 0; r < reasons.size(); ++r) {
    if (!reasons[r].empty()) parts.push_back(fmt::format("replica {}: {}", r, reasons[r]));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

ServiceState ClientImpl::state(int service) {
  progress();
  return aggregate(service);
}

bool ClientImpl::local_replica_starting(int service) const {
  if (wf_.services[service].placement != Placement::per_node) return false;
  const auto replicas = plan_.replicas_of(service);
  const auto& states = table_.states[service];
  bool starting = false;
  for (std::size_t r = 0; r < replicas.size(); ++r) {
    if (replicas[r]->node != job_.me().node) continue;
    const auto st = static_cast<ServiceState>(states[r]);
    if (st == ServiceState::READY) return false;
    starting |= st == ServiceState::STARTING;
  }
  return starting;
}

void ClientImpl::wait_ready(int service, double timeout_s) {
  const std::string& name = wf_.services[service].name;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  Backoff backoff(wf_.job.backoff);
  for (;;) {
    progress();
    const ServiceState s = aggregate(service);
    // With per_node placement the user asked for this node's replica: a
    // READY replica elsewhere does not end the wait while the local one is
    // still loading (it would pull this node's requests across the network
    // for the rest of the run). Past the deadline, any READY replica will do.
    if (s == ServiceState::READY) {
      if (!local_replica_starting(service) || std::chrono::steady_clock::now() > deadline) return;
      backoff.pause();
      continue;
    }
    if (s == ServiceState::FAILED) {
      throw service_error(name,
                          fmt::format("service '{}' FAILED: {}", name, failure_reason(service)));
    }
    if (s != ServiceState::STARTING) {
      throw service_error(name,
                          fmt::format("service '{}' is {}: the run is ending", name, name_of(s)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw service_error(name, not_ready_in_time(service, timeout_s));
    }
    backoff.pause();
  }
}

int choose_replica(const Plan& plan, const RoutingTable& table, const std::vector<int>& outstanding,
                   int my_node, int service, int& next) {
  const auto replicas = plan.replicas_of(service);
  const int first_index = static_cast<int>(replicas.front() - plan.replicas.data());
  const int n = static_cast<int>(replicas.size());
  int best = -1;
  auto better = [&](int a, int b) {  // is replica a (plan index) better than b?
    if (b < 0) return true;
    const bool a_local = plan.replicas[a].node == my_node;
    const bool b_local = plan.replicas[b].node == my_node;
    if (a_local != b_local) return a_local;
    return outstanding[a] < outstanding[b];
  };
  for (int k = 0; k < n; ++k) {
    const int r = (next + k) % n;
    if (table.states[service][r] != static_cast<int>(ServiceState::READY)) continue;
    if (better(first_index + r, best)) best = first_index + r;
  }
  if (best >= 0) next = (best - first_index + 1) % n;
  return best;
}

Transport ClientImpl::choose_transport(int service, int replica, std::size_t bytes) const {
  const StagingSpec& st = wf_.job.staging;
  const Transport pref = wf_.services[service].transport;
  const bool local = plan_.replicas[replica].node == job_.me().node;
  if (pref == Transport::shm) return local ? Transport::shm : Transport::inline_mpi;
  if (pref != Transport::automatic) return pref;
  if (local && static_cast<long long>(bytes) >= st.shm_threshold) return Transport::shm;
  if (!local && st.hdf5_threshold > 0 && static_cast<long long>(bytes) >= st.hdf5_threshold) {
    return Transport::hdf5;
  }
  return Transport::inline_mpi;
}

std::shared_ptr<PendingInfer> ClientImpl::send(int service, const TensorList& given,
                                               std::optional<Transport> asked,
                                               const std::vector<wire::Staged>* staged, int version,
                                               bool may_wait, std::int64_t deadline_us) {
  const std::int64_t t_called = trace::g_enabled ? trace::clock_ns() : 0;
  refresh_routing();  // replies are drained by whoever waits for them
  const std::string& name = wf_.services[service].name;
  // One unnamed input (a bare array from Python, NULL names from C) is the
  // service's only input; named here, so that staging files name it too.
  // A service without a declared signature calls it "input".
  TensorList renamed;
  const auto& signature = wf_.services[service].inputs;
  if (given.size() == 1 && given[0].name.empty() && signature.size() <= 1) {
    renamed = {{signature.empty() ? std::string("input") : signature[0].name, given[0].tensor}};
  }
  const TensorList& inputs = renamed.empty() ? given : renamed;
  const ServiceSpec& spec = wf_.services[service];
  if (spec.fallback_service < 0) {
    require_ready(service, may_wait);
  } else {
    // A service that FAILED, or has no replica left (also after waiting
    // for it to start), sends its requests to its fallback.
    if (may_answer(service)) {
      try {
        require_ready(service, may_wait);
      } catch (const service_error&) {
        if (may_answer(service)) throw;  // still STARTING after the wait
      }
    }
    if (!may_answer(service)) {
      const ServiceState st = aggregate(service);
      const std::string reason = failure_reason(service);
      auto p = send(spec.fallback_service, inputs, std::nullopt, nullptr, 0, may_wait);
      p->first_error = then(fmt::format("service '{}' is {}{}", name, name_of(st),
                                        reason.empty() ? "" : ": " + reason),
                            p->first_error);
      trace::record(trace::kFallback, static_cast<std::int64_t>(p->id), 0, service,
                    static_cast<std::int16_t>(p->service));
      return p;
    }
  }
  const int replica =
      choose_replica(plan_, table_, outstanding_, job_.me().node, service, next_[service]);
  const std::size_t bytes = total_bytes(inputs);
  Transport transport = asked ? *asked : choose_transport(service, replica, bytes);
  const bool local = plan_.replicas[replica].node == job_.me().node;
  if (transport == Transport::shm && !local) {
    // Shared memory is node-local. Chosen by size it falls back to the MPI
    // message; asked for by name it is the caller's mistake, said plainly.
    if (asked) {
      throw request_error(
          name, fmt::format("service '{}': shared memory was asked for, but its nearest replica "
                            "({}) is on node {} and this rank on node {}, and shared memory "
                            "does not cross nodes; use Transport::automatic, inline_mpi or hdf5",
                            name, replica, plan_.replicas[replica].node, job_.me().node));
    }
    transport = Transport::inline_mpi;
  }
  auto p = std::make_shared<PendingInfer>();
  p->id = next_id_++;
  p->first_id = p->id;
  p->service = service;
  p->replica = replica;
  // A copy only where a fallback may need it: the caller's inputs may be
  // gone by then.
  if (spec.fallback_service >= 0) {
    for (const auto& t : inputs) p->fallback_inputs.push_back({t.name, t.tensor.clone()});
  }
  trace::record_at(t_called, trace::kRequestSend, static_cast<std::int64_t>(p->id),
                   static_cast<std::int64_t>(bytes), service, static_cast<std::int16_t>(replica));
  const std::string h5 =
      transport == Transport::hdf5
          ? fmt::format("{}/request-{}-{}.h5", job_.staging_dir(), job_.rank, p->id)
          : std::string();
  const bool in_shm = staged && staged->size() == inputs.size() &&
                      std::all_of(staged->begin(), staged->end(), [](const wire::Staged& s) {
                        return s.transport == Transport::shm;
                      });
  try {
    if (in_shm && local && transport == Transport::shm) {
      // The bytes cross shared memory once: the replica reads them where
      // the task put them.
      p->outgoing.message =
          wire::encode(wire::kRequest, p->id, service, inputs, {}, staged, wire::kReplyShmOk);
      p->pass_through = true;
    } else {
      p->outgoing = stage(wire::kRequest, p->id, service, inputs, {}, transport, h5,
                          local ? wire::kReplyShmOk : 0);
    }
  } catch (const tandem::error& e) {
    throw request_error(name, fmt::format("service '{}': {}", name, e.what()));
  }
  if (version != 0) wire::set_model_version(p->outgoing.message, version);
  if (deadline_us == 0 && spec.deadline_ms > 0) {
    deadline_us = now_us() + static_cast<std::int64_t>(spec.deadline_ms * 1000);
  }
  if (deadline_us > 0) {
    wire::set_deadline(p->outgoing.message, deadline_us);
    const std::int64_t left_us = deadline_us - now_us();
    p->deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(left_us);
    p->deadline_ms = static_cast<double>(left_us) / 1e3;
    next_deadline_ = std::min(next_deadline_, p->deadline);
    if (local) p->deadline_wall_us = deadline_us;
    ++with_deadline_;
  }
  const int leader = plan_.replicas[replica].ranks[0];
  const wire::Encoded& m = p->outgoing.message;
  TANDEM_MPI_CHECK(MPI_Isend(m.buffer.get(), static_cast<int>(m.size), MPI_BYTE, leader,
                             tags::kRequest, job_.data, &p->send));
  ++outstanding_[replica];
  pending_.emplace(p->id, p);
  return p;
}

std::shared_ptr<PendingInfer> ClientImpl::send_call(int service, const std::string& path,
                                                    const std::string& body, bool may_wait) {
  refresh_routing();
  require_ready(service, may_wait);
  const int replica =
      choose_replica(plan_, table_, outstanding_, job_.me().node, service, next_[service]);
  auto p = std::make_shared<PendingInfer>();
  p->id = next_id_++;
  p->service = service;
  p->replica = replica;
  trace::record(trace::kRequestSend, static_cast<std::int64_t>(p->id),
                static_cast<std::int64_t>(body.size()), service,
                static_cast<std::int16_t>(replica));
  p->outgoing.message = wire::encode(wire::kCall, p->id, service, {}, path + "\n" + body);
  const wire::Encoded& m = p->outgoing.message;
  TANDEM_MPI_CHECK(MPI_Isend(m.buffer.get(), static_cast<int>(m.size), MPI_BYTE,
                             plan_.replicas[replica].ranks[0], tags::kRequest, job_.data,
                             &p->send));
  ++outstanding_[replica];
  pending_.emplace(p->id, p);
  return p;
}

std::shared_ptr<PendingModelOp> ClientImpl::send_model_op(wire::Kind kind, int service,
                                                          const std::string& path, int version) {
  refresh_routing();
  const std::string& name = wf_.services[service].name;
  auto op = std::make_shared<PendingModelOp>();
  op->service = service;
  op->version = version;
  op->what = kind == wire::kLoadModel ? "load_model" : "unload_model";
  nlohmann::json text = {{"version", version}};
  if (kind == wire::kLoadModel) text["path"] = path;
  const std::string body = text.dump();
  const auto replicas = plan_.replicas_of(service);
  for (std::size_t r = 0; r < replicas.size(); ++r) {
    // A replica that is still loading takes the operation once it serves.
    const auto st = static_cast<ServiceState>(table_.states[service][r]);
    // An elastic replica that is a worker now loads what model_dir holds
    // when it next serves.
    if (replicas[r]->elastic && st != ServiceState::READY) continue;
    if (st != ServiceState::READY && st != ServiceState::STARTING) {
      const std::string& reason = table_.reasons[service][r];
      op->refused.push_back(fmt::format("service '{}' (replica {}): {}: the replica is {}{}", name,
                                        r, op->what, name_of(st),
                                        reason.empty() ? "" : ": " + reason));
      continue;
    }
    auto p = std::make_shared<PendingInfer>();
    p->id = next_id_++;
    p->service = service;
    p->replica = static_cast<int>(replicas[r] - plan_.replicas.data());
    p->model_op = true;
    p->outgoing.message = wire::encode(kind, p->id, service, {}, body);
    const wire::Encoded& m = p->outgoing.message;
    TANDEM_MPI_CHECK(MPI_Isend(m.buffer.get(), static_cast<int>(m.size), MPI_BYTE,
                               replicas[r]->ranks[0], tags::kRequest, job_.data, &p->send));
    ++outstanding_[p->replica];
    pending_.emplace(p->id, p);
    op->replies.push_back(std::move(p));
  }
  return op;
}

bool PendingModelOp::done() const {
  return std::all_of(replies.begin(), replies.end(),
                     [](const std::shared_ptr<PendingInfer>& p) { return p->done; });
}

int PendingModelOp::result(std::string& error, const std::string& service_name) const {
  std::vector<std::string> errors = refused;
  int serving = 0;
  for (const auto& p : replies) {
    if (!p->error.empty()) {
      errors.push_back(p->error);
    } else if (serving == 0 || p->model_version < serving) {
      serving = p->model_version;  // replicas agree unless one failed; say the oldest
    }
  }
  if (replies.empty() && refused.empty()) {
    errors.push_back(fmt::format("service '{}' has no replicas", service_name));
  }
  error = errors.empty() ? std::string() : fmt::format("{}", fmt::join(errors, "; "));
  return serving;
}

void ClientImpl::wait(PendingInfer& p) {
  Backoff backoff(wf_.job.backoff);
  while (!p.done) {
    refresh_routing();
    check_deadlines();
    if (p.done) break;
    if (receive_replies(&p)) {
      backoff.reset();
    } else {
      backoff.pause();
    }
  }
}

void ClientImpl::wait_all() {
  wait_until(wf_.job.backoff, [&] {
    progress();
    return pending_.empty();
  });
}

}  // namespace tandem::detail

namespace tandem {

using detail::ClientImpl;

std::vector<std::string> Client::services() const {
  std::vector<std::string> names;
  for (const auto& s : impl_->workflow().services) names.push_back(s.name);
  return names;
}

std::string Client::state(const std::string& service) {
  return std::string(detail::name_of(impl_->state(impl_->service_index(service))));
}

void Client::wait_ready(const std::string& service, double timeout_s) {
  impl_->wait_ready(impl_->service_index(service), timeout_s);
}

void Client::scale(const std::string& service, int replicas) {
  impl_->scale(impl_->service_index(service), replicas);
}

void Client::set_ready_timeout(double timeout_s) {
  impl_->set_ready_timeout(timeout_s);
}

TensorList Client::infer(const std::string& service, const TensorList& inputs,
                         const InferOptions& options) {
  InferHandle h = infer_async(service, inputs, options);
  return h.wait();
}

Tensor Client::infer(const std::string& service, const Tensor& input) {
  TensorList out = infer(service, TensorList{{"", input}});  // named by send()
  if (out.size() != 1) {
    throw request_error(service, fmt::format("service '{}' returned {} outputs; use the "
                                             "TensorList form of infer()",
                                             service, out.size()));
  }
  return out[0].tensor;
}

InferResult Client::infer_versioned(const std::string& service, const TensorList& inputs,
                                    const InferOptions& options) {
  InferHandle h = infer_async(service, inputs, options);
  InferResult r;
  r.outputs = h.wait();
  r.model_version = h.model_version();
  r.source = h.source();
  return r;
}

InferHandle Client::infer_async(const std::string& service, const TensorList& inputs,
                                const InferOptions& options) {
  const int s = impl_->service_index(service);
  InferHandle h;
  h.client_ = impl_;
  std::optional<Transport> t;
  if (options.transport != Transport::automatic) t = options.transport;
  if (options.version < 0) {
    throw request_error(service, fmt::format("service '{}': model version {} is not a version "
                                             "(0: the one served; N >= 1: version N)",
                                             service, options.version));
  }
  if (!(options.deadline_ms >= 0) || options.deadline_ms > 3.6e9) {
    throw argument_error(
        fmt::format("service '{}': deadline_ms = {} is not a time in "
                    "milliseconds (0: the service's deadline_ms, if any)",
                    service, options.deadline_ms));
  }
  const std::int64_t deadline_us =
      options.deadline_ms > 0
          ? detail::now_us() + static_cast<std::int64_t>(options.deadline_ms * 1000)
          : 0;
  h.pending_ = impl_->send(s, inputs, t, nullptr, options.version, true, deadline_us);
  return h;
}

namespace {

int run_model_op(ClientImpl& impl, detail::wire::Kind kind, const std::string& service,
                 const std::string& path, int version) {
  const int s = impl.service_index(service);
  if (version < 1) {
    throw request_error(service, fmt::format("service '{}': model versions are numbers >= 1, "
                                             "not {}",
                                             service, version));
  }
  auto op = impl.send_model_op(kind, s, path, version);
  for (const auto& p : op->replies) impl.wait(*p);
  std::string error;
  const int serving = op->result(error, service);
  if (!error.empty()) throw request_error(service, error);
  return serving;
}

}  // namespace

int Client::load_model(const std::string& service, const std::string& path, int version) {
  std::error_code ec;
  const std::string absolute = std::filesystem::absolute(path, ec).string();
  return run_model_op(*impl_, detail::wire::kLoadModel, service, ec ? path : absolute, version);
}

int Client::unload_model(const std::string& service, int version) {
  return run_model_op(*impl_, detail::wire::kUnloadModel, service, {}, version);
}

std::string Client::call(const std::string& service, const std::string& json_body,
                         const std::string& path) {
  return call_async(service, json_body, path).wait();
}

CallHandle Client::call_async(const std::string& service, const std::string& json_body,
                              const std::string& path) {
  CallHandle h;
  h.client_ = impl_;
  h.pending_ = impl_->send_call(impl_->service_index(service), path, json_body);
  return h;
}

bool CallHandle::test() {
  if (!pending_) return false;
  if (!pending_->done) client_->progress();
  return pending_->done;
}

std::string CallHandle::wait() {
  if (!pending_) throw argument_error("CallHandle::wait on an empty handle");
  client_->wait(*pending_);
  if (!pending_->error.empty()) {
    throw request_error(client_->workflow().services[pending_->service].name, pending_->error);
  }
  return pending_->answer;
}

int InferHandle::model_version() const noexcept {
  return pending_ && pending_->done && pending_->error.empty() ? pending_->model_version : 0;
}

bool InferHandle::test() {
  if (!pending_) return false;
  if (!pending_->done) client_->progress();
  return pending_->done;
}

std::string InferHandle::source() const {
  if (!pending_ || !pending_->done || pending_->answered_by < 0) return {};
  return client_->workflow().services[pending_->answered_by].name;
}

TensorList InferHandle::wait() {
  if (!pending_) throw argument_error("InferHandle::wait on an empty handle");
  client_->wait(*pending_);
  if (!pending_->error.empty()) {
    const std::string& service = client_->workflow().services[pending_->service].name;
    if (pending_->deadline_missed) throw deadline_error(service, pending_->error);
    throw request_error(service, pending_->error);
  }
  return pending_->outputs;
}

}  // namespace tandem
