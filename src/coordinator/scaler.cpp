#include "coordinator/scaler.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"
#include "protocol/tags.hpp"
#include "trace/trace.hpp"

namespace tandem::detail {

namespace {

// How often the signals are read, and the least window they cover.
constexpr auto kWindow = std::chrono::milliseconds(200);
// A service with no request for this long (or its dwell, if longer) is idle.
constexpr double kIdleS = 1.0;
// How often tick() looks at all.
constexpr auto kTickEvery = std::chrono::milliseconds(5);
// When tasks wait for workers, a replica goes back to them only if the
// others would then be at most this busy with its share: a gap under the
// grow signal, so that the split does not swing.
constexpr double kShrinkBusy = 0.85;

const char* reason_name(int reason) {
  static constexpr const char* kNames[] = {"queue", "idle", "tasks", "manual", "rule", "end"};
  return reason >= 0 && reason < 6 ? kNames[reason] : "?";
}

// The p95 of a window's latency histogram (LiveStats buckets: [2^b,
// 2^(b+1)) us), in ms, at the bucket's geometric middle; 0 when empty.
double p95_ms(const LiveStats& now, const LiveStats& base) {
  std::int64_t total = 0;
  std::int64_t counts[kLatencyBuckets];
  for (int b = 0; b < kLatencyBuckets; ++b) {
    counts[b] = std::max<std::int64_t>(0, now.latency[b] - base.latency[b]);
    total += counts[b];
  }
  if (total == 0) return 0;
  std::int64_t seen = 0;
  for (int b = 0; b < kLatencyBuckets; ++b) {
    seen += counts[b];
    if (static_cast<double>(seen) >= 0.95 * static_cast<double>(total))
      return std::pow(2.0, b + 0.5) / 1e3;
  }
  return std::pow(2.0, kLatencyBuckets) / 1e3;
}

}  // namespace

Scaler::Scaler(const Workflow& wf, const Plan& plan, MPI_Comm control, ServiceMonitor& monitor,
               Host host)
    : wf_(wf), plan_(plan), control_(control), monitor_(monitor), host_(std::move(host)) {
  for (std::size_t i = 0; i < plan.replicas.size(); ++i) {
    const ReplicaPlacement& r = plan.replicas[i];
    if (!r.elastic) continue;
    Slot s;
    s.index = static_cast<int>(i);
    s.service = r.service;
    s.replica = r.replica;
    s.world_ranks = r.ranks;
    // Pilot ranks: the coordinator is 0, then the workers by world rank.
    for (int world : r.ranks) s.pilot_ranks.push_back(plan.ranks[world].role_index + 1);
    slots_.push_back(std::move(s));
  }
  for (int s = 0; s < static_cast<int>(wf.services.size()); ++s) {
    if (!wf.services[s].elastic()) continue;
    ServiceScale sv;
    sv.service = s;
    sv.window_start = t0_;
    sv.last_request = t0_;
    sv.last_move = t0_ - std::chrono::hours(1);
    sv.over_time.emplace_back(0.0, wf.services[s].replicas);
    services_.push_back(std::move(sv));
  }
  rule_done_.assign(wf.scale_rules.size(), false);
}

double Scaler::since_start(clock::time_point t) const {
  return std::chrono::duration<double>(t - t0_).count();
}

Scaler::Slot& Scaler::slot_at(int plan_index) {
  for (Slot& s : slots_) {
    if (s.index == plan_index) return s;
  }
  throw std::logic_error("no elastic slot at that plan index");
}

int Scaler::replicas(int service) const {
  int n = wf_.services[service].replicas;
  for (const Slot& s : slots_) {
    if (s.service == service && (s.state == SlotState::reserved || s.state == SlotState::loading ||
                                 s.state == SlotState::serving))
      ++n;
  }
  return n;
}

bool Scaler::draining(int service) const {
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
    return s.service == service && s.state == SlotState::draining;
  });
}

bool Scaler::busy(int service) const {
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
    return s.service == service &&
           (s.state == SlotState::reserved || s.state == SlotState::loading ||
            s.state == SlotState::draining);
  });
}

void Scaler::record_count(ServiceScale& sv) {
  sv.over_time.emplace_back(since_start(clock::now()), monitor_.ready_replicas(sv.service));
}

bool Scaler::read_scale_requests() {
  for (bool any = false;; any = true) {
    int flag = 0;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, tags::kScale, control_, &flag, &status));
    if (!flag) return any;
    std::int32_t message[2] = {0, 0};
    TANDEM_MPI_CHECK(MPI_Recv(message, 2, MPI_INT32_T, status.MPI_SOURCE, tags::kScale, control_,
                              MPI_STATUS_IGNORE));
    for (ServiceScale& sv : services_) {
      if (sv.service != message[0]) continue;
      sv.target = message[1];
      sv.target_reason = trace::kScaleManual;
      spdlog::info("service '{}': rank {} asks for {} replica(s)", wf_.services[sv.service].name,
                   status.MPI_SOURCE, message[1]);
    }
  }
}

bool Scaler::apply_rules() {
  bool fired = false;
  for (std::size_t i = 0; i < wf_.scale_rules.size(); ++i) {
    const ScaleRule& rule = wf_.scale_rules[i];
    if (rule_done_[i] || !host_.task_ended(rule.task)) continue;
    rule_done_[i] = true;
    fired = true;
    for (ServiceScale& sv : services_) {
      if (sv.service != rule.service) continue;
      sv.target = rule.replicas;
      sv.target_reason = trace::kScaleRule;
      spdlog::info("service '{}': task '{}' has ended, so {} replica(s) ([[scale]])",
                   wf_.services[sv.service].name, rule.after, rule.replicas);
    }
  }
  return fired;
}

bool Scaler::before_dispatch() {
  if (std::find(rule_done_.begin(), rule_done_.end(), false) == rule_done_.end()) return false;
  if (!apply_rules()) return false;
  next_tick_ = {};  // decide and lend now, not at the next tick
  tick();
  return true;
}

bool Scaler::take_events() {
  const std::vector<ServiceMonitor::ElasticEvent> events = monitor_.take_elastic_events();
  for (const ServiceMonitor::ElasticEvent& e : events) {
    Slot& slot = slot_at(e.slot);
    ServiceScale* sv = nullptr;
    for (ServiceScale& s : services_) {
      if (s.service == slot.service) sv = &s;
    }
    const auto now = clock::now();
    const std::string& name = wf_.services[slot.service].name;
    if (e.state == ServiceState::READY) {
      slot.state = SlotState::serving;
      Move m;
      m.at_s = since_start(slot.decided);
      m.replica = slot.replica;
      m.grow = true;
      m.reason = slot.reason;
      m.wait_s = std::chrono::duration<double>(slot.served - slot.decided).count();
      m.ready_s = std::chrono::duration<double>(now - slot.decided).count();
      m.load_s = e.load_s;
      m.ranks = slot.world_ranks;
      sv->moving_s += m.ready_s;
      spdlog::info(
          "service '{}' grew to replica {} on rank(s) {} ({}): {:.3f} s from decision to "
          "READY, {:.3f} s of it loading",
          name, slot.replica, fmt::join(slot.world_ranks, ","), reason_name(slot.reason), m.ready_s,
          m.load_s);
      sv->moves.push_back(std::move(m));
      monitor_.count_move(slot.service, true);
      record_count(*sv);
    } else if (e.state == ServiceState::FAILED) {
      slot.state = SlotState::failed;
      Move m;
      m.at_s = since_start(slot.decided);
      m.replica = slot.replica;
      m.reason = slot.reason;
      m.ranks = slot.world_ranks;
      m.failure = e.reason;
      spdlog::error(
          "service '{}' could not grow into replica {} on rank(s) {}, which stay "
          "workers: {}",
          name, slot.replica, fmt::join(slot.world_ranks, ","), e.reason);
      sv->moves.push_back(std::move(m));
    } else {
      // STOPPED: the replica has answered everything and left; its
      // workers' rejoins finish the move.
      slot.drain_id = 0;
      record_count(*sv);
      finish_shrink(slot);
    }
  }
  return !events.empty();
}

void Scaler::rejoined(int pilot_rank) {
  for (Slot& slot : slots_) {
    if (std::find(slot.pilot_ranks.begin(), slot.pilot_ranks.end(), pilot_rank) ==
        slot.pilot_ranks.end()) {
      continue;
    }
    host_.lend(pilot_rank, false);
    slot.away = std::max(0, slot.away - 1);
    finish_shrink(slot);
    return;
  }
}

// A shrink is done once the replica has left (its final report) and its
// workers are back (their rejoins), which come on different channels.
void Scaler::finish_shrink(Slot& slot) {
  if (slot.away > 0 || slot.state != SlotState::draining || slot.drain_id != 0) return;
  slot.state = SlotState::parked;
  for (ServiceScale& sv : services_) {
    if (sv.service != slot.service) continue;
    Move m;
    m.at_s = since_start(slot.decided);
    m.replica = slot.replica;
    m.grow = false;
    m.reason = slot.reason;
    m.ready_s = std::chrono::duration<double>(clock::now() - slot.decided).count();
    m.ranks = slot.world_ranks;
    sv.moving_s += m.ready_s;
    spdlog::info(
        "service '{}' shrank: replica {} on rank(s) {} is back to tasks ({}) after "
        "{:.3f} s",
        wf_.services[sv.service].name, slot.replica, fmt::join(slot.world_ranks, ","),
        reason_name(slot.reason), m.ready_s);
    sv.moves.push_back(std::move(m));
    monitor_.count_move(slot.service, false);
  }
}

bool Scaler::advance_reserved() {
  bool any = false;
  for (Slot& slot : slots_) {
    if (slot.state != SlotState::reserved) continue;
    const bool ready = std::all_of(slot.pilot_ranks.begin(), slot.pilot_ranks.end(),
                                   [&](int w) { return host_.idle_and_asking(w); });
    if (!ready) continue;
    for (int w : slot.pilot_ranks) host_.serve(w, slot.index);
    slot.state = SlotState::loading;
    slot.served = clock::now();
    slot.away = static_cast<int>(slot.pilot_ranks.size());
    any = true;
  }
  return any;
}

void Scaler::grow(ServiceScale& sv, int reason) {
  for (Slot& slot : slots_) {
    if (slot.service != sv.service || slot.state != SlotState::parked) continue;
    slot.state = SlotState::reserved;
    slot.decided = clock::now();
    slot.reason = reason;
    for (int w : slot.pilot_ranks) host_.lend(w, true);
    sv.last_move = slot.decided;
    trace::record(trace::kScale, replicas(sv.service), monitor_.ready_replicas(sv.service),
                  sv.service, static_cast<std::int16_t>(reason));
    return;
  }
}

void Scaler::shrink(ServiceScale& sv, int reason) {
  Slot* chosen = nullptr;
  for (Slot& slot : slots_) {
    if (slot.service == sv.service && slot.state == SlotState::serving &&
        (!chosen || slot.replica > chosen->replica)) {
      chosen = &slot;
    }
  }
  if (!chosen) return;
  // Whoever may still send to it fences it: the workers doing tasks now.
  // Those serving elastic replicas come back with a newer routing table
  // (kResume) and never see this one READY.
  std::vector<int> fence;
  if (reason != trace::kScaleEnd) {
    for (int r : plan_.client_ranks()) {
      const bool serving = std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
        return (s.state == SlotState::loading || s.state == SlotState::serving ||
                s.state == SlotState::draining) &&
               std::find(s.world_ranks.begin(), s.world_ranks.end(), r) != s.world_ranks.end();
      });
      if (!serving) fence.push_back(r);
    }
  }
  chosen->state = SlotState::draining;
  chosen->decided = clock::now();
  chosen->reason = reason;
  chosen->drain_id = next_drain_id_++;
  sv.last_move = chosen->decided;
  trace::record(trace::kScale, replicas(sv.service), monitor_.ready_replicas(sv.service),
                sv.service, static_cast<std::int16_t>(reason));
  monitor_.begin_drain(chosen->index, chosen->drain_id, fence);
}

void Scaler::decide(ServiceScale& sv) {
  const ServiceSpec& spec = wf_.services[sv.service];
  const auto now = clock::now();
  if (sv.target >= 0) {
    // As asked (client.scale, [[scale]]), at once: no window of figures
    // and no dwell to wait for. Several grows may be under way together
    // (each waits for its worker to finish its task), a shrink only alone.
    const int n = replicas(sv.service);
    if (n < sv.target && !draining(sv.service)) {
      for (int k = n; k < sv.target; ++k) grow(sv, sv.target_reason);
    }
    if (n > sv.target && !busy(sv.service)) shrink(sv, sv.target_reason);
    return;
  }
  if (now - sv.window_start < kWindow) return;
  const LiveStats live = monitor_.live(sv.service);
  const double p95 = p95_ms(live, sv.window_base);
  const std::int64_t requests = live.requests - sv.window_base.requests;
  // How busy the serving replicas were: compute time over the window's.
  const double window_s = std::chrono::duration<double>(now - sv.window_start).count();
  const double load = static_cast<double>(live.busy_us - sv.window_base.busy_us) / 1e6 /
                      (window_s * std::max(1, monitor_.ready_replicas(sv.service)));
  sv.window_base = live;
  sv.window_start = now;
  if (requests > 0) sv.last_request = now;
  spdlog::debug(
      "service '{}': {} requests, p95 {:.3f} ms, {} queued, {:.0f}% busy in the last window",
      spec.name, requests, p95, live.queued, load * 100);
  const auto dwell = std::chrono::duration<double>(spec.scale_dwell_s);
  if (now - sv.last_move < dwell) return;
  const int n = replicas(sv.service);
  const int serving = std::max(1, monitor_.ready_replicas(sv.service));
  const bool overloaded =
      (requests >= 4 && p95 > spec.target_queue_ms) || live.queued > 4LL * spec.max_batch * serving;
  if (overloaded) {
    if (n >= spec.replicas_max || draining(sv.service)) return;
    // As many as the delay says, at once: a replica's worker may be in the
    // middle of a task, and growing one at a time would wait for each.
    const double factor = std::max(p95 / spec.target_queue_ms, 1.0);
    const int wanted =
        std::clamp(static_cast<int>(std::ceil(serving * factor)), n + 1, spec.replicas_max);
    for (int k = n; k < wanted; ++k) grow(sv, trace::kScaleQueue);
    return;
  }
  if (busy(sv.service)) return;  // a shrink waits for the moves under way
  if (n <= spec.replicas) return;
  const double idle_s = std::chrono::duration<double>(now - sv.last_request).count();
  if (idle_s > std::max(kIdleS, spec.scale_dwell_s)) {
    shrink(sv, trace::kScaleIdle);
  } else if (host_.tasks_waiting() && serving > 1 && load * serving / (serving - 1) < kShrinkBusy &&
             p95 < spec.target_queue_ms && live.queued == 0) {
    shrink(sv, trace::kScaleTasks);
  }
}

bool Scaler::tick() {
  // Not every turn of the coordinator's loop: each empty probe of the
  // control channel costs a yield, and a move is not that urgent.
  const auto now = clock::now();
  if (now < next_tick_) return false;
  next_tick_ = now + kTickEvery;
  bool any = read_scale_requests();
  if (now >= next_rules_ && !wf_.scale_rules.empty()) {
    apply_rules();
    next_rules_ = now + std::chrono::milliseconds(50);
  }
  if (take_events()) any = true;
  if (advance_reserved()) any = true;
  for (ServiceScale& sv : services_) decide(sv);
  return any;
}

void Scaler::finish(const BackoffSpec& backoff) {
  for (Slot& slot : slots_) {
    if (slot.state != SlotState::reserved) continue;
    for (int w : slot.pilot_ranks) host_.lend(w, false);
    slot.state = SlotState::parked;
  }
  Backoff wait(backoff);
  for (;;) {
    bool worked = host_.receive();
    if (monitor_.poll()) worked = true;
    take_events();
    bool all_back = true;
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::serving) {
        for (ServiceScale& sv : services_) {
          if (sv.service == slot.service) shrink(sv, trace::kScaleEnd);
        }
      }
      if (slot.state != SlotState::parked && slot.state != SlotState::failed) all_back = false;
      if (slot.away > 0) all_back = false;
    }
    if (all_back) return;
    if (worked) {
      wait.reset();
    } else {
      wait.pause();
    }
  }
}

nlohmann::json Scaler::summary() const {
  nlohmann::json out = nlohmann::json::object();
  for (const ServiceScale& sv : services_) {
    const ServiceSpec& spec = wf_.services[sv.service];
    nlohmann::json list = nlohmann::json::array();
    nlohmann::json failed = nlohmann::json::array();
    for (const Move& m : sv.moves) {
      nlohmann::json j = {{"at_s", m.at_s},
                          {"replica", m.replica},
                          {"ranks", m.ranks},
                          {"reason", reason_name(m.reason)}};
      if (!m.failure.empty()) {
        j["reason_failed"] = m.failure;
        failed.push_back(j);
        continue;
      }
      j["direction"] = m.grow ? "grow" : "shrink";
      j["seconds"] = m.ready_s;
      if (m.grow) {
        j["wait_s"] = m.wait_s;
        j["load_s"] = m.load_s;
      }
      list.push_back(j);
    }
    nlohmann::json over_time = nlohmann::json::array();
    for (const auto& [t, n] : sv.over_time) over_time.push_back({t, n});
    out[spec.name] = {{"min", spec.replicas},
                      {"max", spec.replicas_max},
                      {"target_queue_ms", spec.target_queue_ms},
                      {"scale_dwell_s", spec.scale_dwell_s},
                      {"grows", monitor_.moves(sv.service, true)},
                      {"shrinks", monitor_.moves(sv.service, false)},
                      {"moving_s", sv.moving_s},
                      {"moves", list},
                      {"failed_loads", failed},
                      {"replicas_over_time", over_time}};
  }
  return out;
}

}  // namespace tandem::detail
