#pragma once
// Collective inference (Client::infer_all): the ranks of a communicator on
// one node post their rows in node-local shared memory (MPI shared-memory
// windows), one of them (the node's leader) sends one request for them
// all, and each rank reads its own rows of the outputs from a window the
// leader fills. The ranks meet through a control block in shared memory
// with futex wake-ups, not through MPI collectives: with more ranks than
// cores every rank's turn on a core in each collective round costs more
// than the request (docs/architecture.md, "Collective inference").

#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/backoff.hpp"
#include "tandem/client.hpp"

namespace tandem::detail {

/// MPI shared-memory windows on a node communicator, one segment per rank
/// (each rank sizes its own) or one for the whole node (the leader's). A
/// segment grows, never shrinks; growing is collective over the node.
class SharedWindow {
 public:
  SharedWindow() = default;
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;
  /// Every rank of @p node calls it: this rank's segment becomes
  /// @p my_bytes (0 for none), and the others' are mapped.
  void allocate(MPI_Comm node, std::size_t my_bytes);
  /// At least @p bytes in the leader's segment; every rank of @p node calls
  /// it with the same value. Does nothing (and needs nobody) when it fits.
  void reserve_leader(MPI_Comm node, std::size_t bytes);
  /// Frees the window: collective over the node, like allocate.
  void free();
  std::byte* base(int node_rank) const { return bases_[static_cast<std::size_t>(node_rank)]; }
  std::size_t capacity(int node_rank) const { return sizes_[static_cast<std::size_t>(node_rank)]; }
  bool allocated() const noexcept { return win_ != MPI_WIN_NULL; }
  /// A memory barrier for the window (MPI_Win_sync): around the control
  /// block's handshakes, what one rank wrote is what the others read.
  void sync() const {
    if (win_ != MPI_WIN_NULL) MPI_Win_sync(win_);
  }

 private:
  MPI_Win win_ = MPI_WIN_NULL;
  std::vector<std::byte*> bases_;
  std::vector<std::size_t> sizes_;
};

constexpr std::size_t kWhyBytes = 1024;
constexpr std::size_t kTextBytes = 16384;

/// A rank's post for a call, in the control block.
struct ControlSlot {
  alignas(64) std::int64_t rows = 0;
  std::int64_t digest = 0;     // of the inputs' names, dtypes and non-batch shapes
  std::int64_t bytes = 0;      // of its rows, all inputs
  std::uint32_t failing = 0;   // its inputs do not fit the signature: why[]
  std::uint32_t overflow = 0;  // its rows did not fit its segment: sent to the leader by MPI
  std::int64_t first_row = 0;  // set by the leader: where its rows are in the node's
  char why[kWhyBytes] = {};
};

/// What the node's ranks share, in the leader's control window.
struct ControlHeader {
  alignas(64) std::atomic<std::uint32_t> arrived{0};  // futex word: posts, counted up for ever
  std::atomic<std::uint32_t> leader_sleeping{0};      // whether posting must wake the leader
  alignas(64) std::atomic<std::uint32_t> posted{0};   // futex word: the call the leader answered
  std::atomic<std::uint32_t> ranks_sleeping{0};       // how many sleep on `posted`
  std::uint32_t outcome = 0;                          // of that call (Outcome)
  std::uint32_t regrow = 0;     // some rank's rows overflowed: every rank re-sizes its segment
  std::uint64_t out_bytes = 0;  // CallOutcome::grow: the output window must hold this many
  std::int64_t node_rows = 0;   // the node's rows in the call
  std::uint32_t text_size = 0;
  char text[kTextBytes] = {};  // the outputs' description, or the error
};

/// The leader's answer to a call.
enum class CallOutcome : std::uint32_t { written = 0, failed = 1, grow = 2 };

/// What infer_all keeps per communicator: a duplicate of it (its traffic
/// never meets the caller's), its ranks on this node, the leaders of all
/// nodes, and the shared windows.
struct NodeGroup {
  NodeGroup() = default;
  NodeGroup(const NodeGroup&) = delete;
  NodeGroup& operator=(const NodeGroup&) = delete;
  /// Frees the windows and the communicators: collective over the node, so
  /// only when every rank of the caller's communicator frees it.
  void release();

  MPI_Comm comm = MPI_COMM_NULL;     // duplicate of the caller's
  MPI_Comm node = MPI_COMM_NULL;     // its ranks on this node
  MPI_Comm leaders = MPI_COMM_NULL;  // each node's first rank (MPI_COMM_NULL elsewhere)
  int rank = 0;
  int node_rank = 0;
  int node_size = 1;
  int nodes = 1;                  // how many nodes the communicator spans
  std::vector<int> comm_rank_of;  // node rank -> rank in comm
  SharedWindow control;           // the leader's: ControlHeader, then a ControlSlot per rank
  SharedWindow in;                // a segment per rank: its rows, input after input
  SharedWindow out;               // the leader's: the node's rows of every output
  std::uint32_t calls = 0;        // calls made on this communicator
  bool in_flight = false;         // one collective call at a time

  ControlHeader& header() const { return *reinterpret_cast<ControlHeader*>(control.base(0)); }
  ControlSlot& slot(int node_rank) const;
};

/// The groups of one client, cached on the caller's communicators as MPI
/// attributes, the way MPI libraries keep state per communicator: a handle
/// the caller frees and MPI hands out again never finds a stale group, and
/// freeing the communicator (as the pilot does after each multi-rank task)
/// frees its group, so a job of many tasks does not pile up windows.
class NodeGroups {
 public:
  NodeGroups() = default;
  NodeGroups(const NodeGroups&) = delete;
  NodeGroups& operator=(const NodeGroups&) = delete;
  /// Lets go of the groups whose communicators are still alive without
  /// freeing them (that would be collective): MPI_Finalize does.
  ~NodeGroups();

  /// The group of @p comm, made (collectively) on its first call.
  NodeGroup& of(MPI_Comm comm);
  /// Groups alive now (tests).
  std::size_t size() const { return alive_; }

 private:
  static int on_comm_free(MPI_Comm comm, int keyval, void* group, void* groups);
  // MPI_Finalize deletes MPI_COMM_SELF's attributes first, while MPI still
  // works: from then on a group is only detached (MPI frees what is left).
  static int on_finalize(MPI_Comm comm, int keyval, void* unused, void* groups);
  int keyval_ = MPI_KEYVAL_INVALID;
  int finalize_keyval_ = MPI_KEYVAL_INVALID;
  std::size_t alive_ = 0;
  bool closing_ = false;            // in the destructor: detach, do not free
  std::vector<MPI_Comm> attached_;  // the caller's communicators that carry a group
};

/// One input of a call: name, dtype and the shape of a row.
struct InputLayout {
  std::string name;
  DType dtype = DType::FP32;
  std::vector<std::int64_t> row_shape;  // the shape less the batch dimension
  std::size_t row_bytes = 0;
};

/// A collective call between infer_all_async and wait.
struct CollectiveCall {
  NodeGroup* group = nullptr;
  std::string service;
  std::uint32_t number = 0;             // the call's number on its communicator, from 1
  BackoffSpec backoff;                  // how this rank waits (the node's idle mode)
  std::int64_t rows = 0;                // this rank's
  std::vector<std::int64_t> node_rows;  // the leader's: per node rank
  std::int64_t node_rows_total = 0;     // the leader's
  std::vector<InputLayout> inputs;
  // Rows that did not fit this rank's segment, sent to the leader by MPI.
  std::vector<std::byte> overflow;
  MPI_Request overflow_send = MPI_REQUEST_NULL;
  // The leader's: the node's rows, input by input, and its requests.
  std::vector<std::vector<std::byte>> staged;
  std::vector<InferHandle> requests;  // one per max_batch of rows
  std::string error;                  // the leader's: why the node's call fails, before any request
  // The leader's: the signature's outputs, for a node whose ranks have no
  // rows (nothing is sent; the outputs are empty tensors of their shapes).
  TensorList empty_outputs;
};

}  // namespace tandem::detail
