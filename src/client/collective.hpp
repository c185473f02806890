#pragma once
// Collective inference (Client::infer_all): the ranks of a communicator on
// one node put their rows in one node-local MPI shared-memory window, one
// of them (the node's leader) sends one request for them all, and each rank
// reads its own rows of the outputs from a second window.

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "tandem/client.hpp"

namespace tandem::detail {

/// An MPI shared-memory window on a node communicator, allocated by the
/// node's leader (node rank 0) and mapped by the others; grown, never
/// shrunk. Collective over the node communicator whenever it grows.
class SharedWindow {
 public:
  SharedWindow() = default;
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;
  /// At least @p bytes; every rank of @p node calls it with the same value.
  void reserve(MPI_Comm node, std::size_t bytes);
  std::byte* base() const noexcept { return base_; }
  /// Makes this rank's writes visible to the others (and theirs to it)
  /// around a synchronising message of the node communicator.
  void sync() const;
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  MPI_Win win_ = MPI_WIN_NULL;
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
};

/// What infer_all keeps per communicator: a duplicate of it (its traffic
/// never meets the caller's), its ranks on this node and their windows.
struct NodeGroup {
  MPI_Comm user = MPI_COMM_NULL;     // the caller's handle, to find the group again
  MPI_Comm comm = MPI_COMM_NULL;     // duplicate of the caller's
  MPI_Comm node = MPI_COMM_NULL;     // its ranks on this node
  MPI_Comm leaders = MPI_COMM_NULL;  // each node's first rank (MPI_COMM_NULL elsewhere)
  int rank = 0;
  int node_rank = 0;
  int node_size = 1;
  int nodes = 1;   // how many nodes the communicator spans
  int leader = 0;  // the node's leader's rank in comm
  SharedWindow in;
  SharedWindow out;
  bool in_flight = false;  // one collective call at a time
};

/// The groups of one client, found by communicator.
class NodeGroups {
 public:
  /// The group of @p comm, made (collectively) on its first call.
  NodeGroup& of(MPI_Comm comm);

 private:
  std::vector<std::unique_ptr<NodeGroup>> groups_;
};

/// One input's place in the input window: the node's rows of it, rank
/// after rank.
struct InputLayout {
  std::string name;
  DType dtype = DType::FP32;
  std::vector<std::int64_t> row_shape;  // the shape less the batch dimension
  std::size_t row_bytes = 0;
  std::size_t offset = 0;  // in the window
};

/// A collective call between infer_all_async and wait.
struct CollectiveCall {
  NodeGroup* group = nullptr;
  std::string service;
  BackoffSpec backoff;             // how this rank waits (the node's idle mode)
  std::vector<std::int64_t> rows;  // per node rank
  std::int64_t first_row = 0;      // this rank's first row in the node's
  std::int64_t node_rows = 0;
  std::vector<InputLayout> inputs;
  std::vector<InferHandle> requests;  // the leader's, one per max_batch of rows
  std::string send_error;             // the leader's, when a request could not be sent
  // The signature's outputs, for a node whose ranks have no rows (nothing
  // is sent; the outputs are empty tensors of their declared shapes).
  TensorList empty_outputs;
};

}  // namespace tandem::detail
