#pragma once
// Elastic services (`replicas = { min, max }`): the coordinator's side.
// Each replica past `min` has its workers fixed by the plan (its "slot");
// the Scaler decides when a slot's workers become a replica and when they
// go back to tasks, and carries the move out through its Host (the
// coordinator's workers) and the ServiceMonitor (the replicas).
//
// A move, as docs/architecture.md ("Elastic services") tells it:
//   grow:   parked -> reserved (no new tasks for its workers) -> loading
//           (kServe sent once all are idle) -> serving (READY)
//   shrink: serving -> draining (kServiceDrain: answer everything, wait for
//           every client's fence) -> parked (the final report, and each
//           worker's rejoin)
// Grows may go together (each waits for its workers' tasks to end); a
// shrink goes alone; at least scale_dwell_s between two decisions.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/workflow.hpp"
#include "coordinator/service_monitor.hpp"
#include "layout/plan.hpp"
#include "protocol/service_messages.hpp"

namespace tandem::detail {

class Scaler {
 public:
  /// What the Scaler needs of the coordinator's workers, by pilot rank.
  struct Host {
    /// Whether the worker asks for work with nothing queued or running.
    std::function<bool(int)> idle_and_asking;
    /// Keeps the worker from tasks (true) or gives it back (false).
    std::function<void(int, bool)> lend;
    /// Sends [kServe, slot], which answers the worker's request for work.
    std::function<void(int, int)> serve;
    /// Whether tasks are ready with no worker free for them.
    std::function<bool()> tasks_waiting;
    /// Whether every instance of a task has ended.
    std::function<bool(int)> task_ended;
    /// Reads workers' messages (their rejoins) while finish() waits.
    std::function<bool()> receive;
  };

  Scaler(const Workflow& wf, const Plan& plan, MPI_Comm control, ServiceMonitor& monitor,
         Host host);

  bool active() const { return !slots_.empty(); }
  /// Reads scale requests and the replicas' news, then decides and moves.
  /// True if anything happened.
  bool tick();
  /// Just before tasks are handed out: a [[scale]] rule whose task has
  /// ended takes effect now, so that the workers it moves are not given
  /// the tasks that end released. True if one did.
  bool before_dispatch();
  /// A worker is back from serving: it may take tasks again.
  void rejoined(int pilot_rank);
  /// The run is over: every replica past min goes back to its workers.
  void finish(const BackoffSpec& backoff);
  /// summary.json's "elastic": per service, the moves and the time spent.
  nlohmann::json summary() const;
  /// Replicas of @p service that serve or are on their way (reserved too).
  int replicas(int service) const;

 private:
  using clock = std::chrono::steady_clock;
  enum class SlotState { parked, reserved, loading, serving, draining, failed };
  struct Slot {
    int index = 0;  // in Plan::replicas
    int service = 0;
    int replica = 0;
    std::vector<int> pilot_ranks;  // its workers
    std::vector<int> world_ranks;
    SlotState state = SlotState::parked;
    int away = 0;  // workers not back from its last turn
    clock::time_point decided{};
    clock::time_point served{};  // when kServe went
    int reason = 0;
    int drain_id = 0;
  };
  struct Move {
    double at_s = 0;  // since the run started
    int replica = 0;
    bool grow = true;
    int reason = 0;
    double wait_s = 0;   // grow: for the workers to go idle
    double ready_s = 0;  // grow: decision to READY; shrink: decision to the workers' return
    double load_s = 0;   // grow: the model's load
    std::vector<int> ranks;
    std::string failure;  // grow: why the load failed
  };
  struct ServiceScale {
    int service = 0;
    int target = -1;  // a manual or rule target; -1: decided by the signals
    int target_reason = 0;
    clock::time_point last_move{};
    clock::time_point window_start{};
    LiveStats window_base;  // the counters when the window began
    clock::time_point last_request{};
    std::vector<Move> moves;
    std::vector<std::pair<double, int>> over_time;  // (s, replicas serving)
    double moving_s = 0;
  };

  // Each true if anything came or moved.
  bool read_scale_requests();
  bool apply_rules();  // true if a rule took effect
  bool take_events();
  bool advance_reserved();
  void decide(ServiceScale& sv);
  bool busy(int service) const;      // a move of the service under way
  bool draining(int service) const;  // a shrink of the service under way
  void grow(ServiceScale& sv, int reason);
  void shrink(ServiceScale& sv, int reason);
  Slot& slot_at(int plan_index);
  void finish_shrink(Slot& slot);
  void record_count(ServiceScale& sv);
  double since_start(clock::time_point t) const;

  const Workflow& wf_;
  const Plan& plan_;
  MPI_Comm control_;
  ServiceMonitor& monitor_;
  Host host_;
  std::vector<Slot> slots_;
  std::vector<ServiceScale> services_;  // the elastic ones
  std::vector<bool> rule_done_;
  int next_drain_id_ = 1;
  clock::time_point t0_ = clock::now();
  clock::time_point next_rules_{};
  clock::time_point next_tick_{};
};

}  // namespace tandem::detail
