#pragma once
// Every MPI message tag Tandem uses, in one place, so that no two kinds of
// message can ever share one. Tags are only half of the separation: the
// data plane (requests and replies) travels on a communicator of its own
// (Job::data), the rest on Job::control, Job::pilot or a replica's
// communicator, as each group says.

namespace tandem::detail::tags {

// The pilot, on Job::pilot (protocol/pilot_messages.hpp).
constexpr int kWork = 101;         // coordinator -> worker: tasks, cancel, stop
constexpr int kUpdate = 102;       // worker -> coordinator: results and requests for work
constexpr int kSteer = 104;        // a steering task's worker -> coordinator: submit, wait (JSON)
constexpr int kSteerAnswer = 105;  // coordinator -> that worker: handles, results or an error

// An MPI command task's lead worker -> the other workers it held, on
// Job::workers: how the task ended (src/worker/worker.cpp).
constexpr int kMultiRelease = 103;

// The data plane (transport/wire.hpp): requests and replies on Job::data,
// a replica's shares of a batch on its replica communicator.
constexpr int kRequest = 201;        // client -> replica leader
constexpr int kReply = 202;          // replica leader -> client
constexpr int kReplicaWork = 203;    // leader -> the replica's other ranks
constexpr int kReplicaResult = 204;  // the replica's other ranks -> leader
constexpr int kReplicaLoaded = 205;  // the replica's other ranks -> leader: a model load's outcome

// Service lifecycle, on Job::control (protocol/service_messages.hpp).
constexpr int kReplicaReport = 301;  // leader -> coordinator: state changes, final counters
constexpr int kRouting = 302;        // coordinator -> clients: the routing table
constexpr int kServiceStop = 303;    // coordinator -> leaders
constexpr int kClientDone = 304;     // SPMD application ranks -> coordinator, at finalize
constexpr int kReplicaStats = 305;   // leader -> coordinator, every second while busy
constexpr int kServiceDrain = 306;   // coordinator -> an elastic replica's leader: leave (int32
                                     // array: drain id, then the client ranks that will fence)
constexpr int kScale = 307;          // a client -> coordinator: int32 {service, replicas}

// The trace, on Job::control (trace/trace_output.cpp).
constexpr int kClock = 401;   // clock alignment ping-pongs
constexpr int kEvents = 402;  // every rank's events to rank 0 at the end

// Not a point-to-point tag: a multi-rank task's communicator is built with
// MPI_Comm_create_group on Job::workers with the instance id (mod 32768) as
// its tag, which only tells concurrent group creations apart
// (src/worker/worker.cpp).

}  // namespace tandem::detail::tags
