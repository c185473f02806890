#pragma once
// A replica's leader: takes requests, runs batches over the replica's
// ranks, sends replies, and manages the model versions the replica holds.
// leader.cpp has the request path, leader_versions.cpp the model lifecycle;
// replica.cpp starts a replica, member.cpp runs its other ranks.

#include <mpi.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/mpi/communicator.hpp>

#include "base/send_queue.hpp"
#include "job/job.hpp"
#include "ml_ranks/serving/batching.hpp"
#include "ml_ranks/serving/model_versions.hpp"
#include "ml_ranks/serving/recorder.hpp"
#include "protocol/service_messages.hpp"
#include "transport/direct_endpoint.hpp"
#include "transport/staging.hpp"
#include "transport/wire.hpp"

namespace tandem::detail {

// Whom a reply goes to: a rank over MPI, or a task's slot on the direct
// path (then rank is the task's worker, for the trace and the black box).
// rank -1: nobody (the leader's own model-directory watcher).
struct Origin {
  int rank = -1;
  int slot = -1;  // -1: MPI
  std::uint32_t generation = 0;
  std::uint32_t pid = 0;
};

inline Origin origin_of(const QueuedRequest& r) {
  return {r.client, r.slot, r.slot_generation, r.client_pid};
}

/// The SHA-256 of a model file (empty, with a warning, when unreadable).
std::string model_digest(const std::string& path);

/// Receives one message that MPI_Improbe matched into a pooled buffer.
wire::Encoded receive_matched(MPI_Message& msg, MPI_Status& status);

class Leader {
 public:
  Leader(const Job& job, VersionSet versions, std::string failure);

  void serve(const ReplicaReport& report);

 private:
  using clock = std::chrono::steady_clock;
  static constexpr unsigned kHousekeepingEvery = 16;  // turns of serve()'s loop
  // Receives requests into queue_. With @p drain false it returns after
  // the first: probing again finds nothing when one client waits on one
  // request, and an empty probe costs a sched_yield when Open MPI yields.
  void receive_requests(bool drain);
  // Checks a request and queues it, or answers it with an error.
  void admit(const Origin& from, const wire::Encoded& in);
  // The direct path: executable tasks on this node write their requests
  // into our endpoint's rings (pilot mode only).
  void open_direct_path();
  void take_direct();
  void close_direct_path();
  void check_stop();
  void check_backend();
  void run_batch(std::vector<QueuedRequest>& batch);
  bool forward_queued();
  void forward_call(const Origin& client, std::uint64_t id, const std::string& text);
  TensorList compute(const TensorList& inputs, std::int64_t rows, int version);
  void reply(const QueuedRequest& r, const TensorList& outputs, int version);
  void reply_error(const Origin& client, std::uint64_t id, const std::string& why,
                   std::uint32_t flags = 0);
  // Deadlines (docs/when-things-go-wrong.md): a request that cannot be
  // answered in time is answered at once with a deadline error and never
  // computed, at admission when the work queued ahead of it is more than
  // its time left, and before each batch when its time is up.
  bool shed_at_admission(const QueuedRequest& r);
  void drop_expired(clock::time_point now);
  void expire(const QueuedRequest& r, const std::string& why, clock::time_point now);
  void send(const Origin& client, Outgoing message);
  void send_live_stats();
  void fail(const std::string& why);
  // Whether batches can run: a version is served (not FAILED, not paused).
  bool serving() const { return failure_.empty() && versions_.served_backend() != nullptr; }

  // The model lifecycle (leader_versions.cpp).
  struct ModelOp {
    wire::Kind kind = wire::kLoadModel;
    Origin from;  // rank -1: the model-directory watcher, nobody to answer
    std::uint64_t id = 0;
    int version = 0;
    std::string path;
    bool from_dir = false;
    std::vector<int> replaces;  // versions whose directories went: dropped once this one serves
    bool restore = false;       // swap = "pause": reloading what was unloaded for a failed load
    std::int64_t mtime_ns = 0;  // from_dir: the file as it was seen, to try it once
    std::int64_t size = 0;
  };
  // A load under way on every rank of the replica.
  struct Loading {
    ModelOp op;
    std::unique_ptr<BackgroundLoad> mine;
    std::unique_ptr<LoadOutcome> my_outcome;
    std::vector<std::string> member_errors;  // per member rank
    int members_reported = 0;
    clock::time_point started;
  };
  void admit_model_op(const Origin& from, const wire::Decoded& d);
  // Starts the next queued operation, or finishes the load under way.
  void step_lifecycle();
  void start_load(ModelOp op);
  void finish_load();
  void unload(const ModelOp& op);
  void drop_everywhere(int version);
  void tell_members(wire::Kind kind, const std::string& text);
  void answer_op(const ModelOp& op, const std::string& error);
  // Records a change of the served version (trace, log, statistics).
  void note_served();
  void watch_model_dir();
  double since_ready() const;

  const Job& job_;
  const RankPlacement& me_;  // job_.me()
  const ServiceSpec& spec_;
  VersionSet versions_;
  std::string failure_;  // non-empty: the replica FAILED
  boost::mpi::communicator control_;
  int replica_size_ = 1;
  std::deque<QueuedRequest> queue_;
  int queued_with_deadline_ = 0;  // requests in queue_ that have one
  double batch_s_ = 0;            // how long a batch takes, a moving average (0: none yet)
  int max_batch_ = 64;            // rows per batch; 0: each request alone (replay)
  SendQueue<Outgoing> sends_;     // a reply's shm segment in it is the client's to hand back
  bool draining_ = false;
  ReplicaReport stats_;
  std::map<int, long long> batch_sizes_;
  std::uint64_t batch_counter_ = 0;
  std::int64_t traced_batches_ = 0;  // batch ids in the trace
  LiveStats live_;                   // what the coordinator shows while the run goes on
  LiveStats live_in_flight_;         // the copy being sent
  MPI_Request live_send_ = MPI_REQUEST_NULL;
  std::int64_t live_sent_changes_ = -1;
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<direct::Endpoint> direct_;

  std::deque<ModelOp> ops_;
  std::unique_ptr<Loading> loading_;
  clock::time_point ready_at_;
  std::map<int, VersionStat> version_stats_;  // by version, for the final report
  std::vector<int> version_order_;            // versions in the order they loaded
  clock::time_point paused_at_{};             // swap = "pause": when serving stopped
  std::vector<std::pair<int, std::string>> unloaded_for_pause_;  // to restore on failure
  clock::time_point next_dir_poll_{};
  std::map<int, std::pair<std::int64_t, std::int64_t>> dir_failures_;  // version: (mtime, size)
  bool warned_dir_empty_ = false;
  int last_served_ = 0;
  // Elastic replicas (a worker serving for a while): the drain under way
  // (0: none; -1: the run's end) and the clients whose fence it waits for.
  bool elastic_ = false;
  int drain_id_ = 0;
  std::vector<int> fences_missing_;
  std::vector<std::pair<int, int>> early_fences_;  // (rank, drain id) before the drain began
};

}  // namespace tandem::detail
