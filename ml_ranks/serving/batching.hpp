#pragma once
// Checking requests against a service's signature and putting batches
// together. Free of MPI, so that tests can drive it directly.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail {

struct QueuedRequest {
  int client = -1;  // world rank
  std::uint64_t id = 0;
  TensorList inputs;  // in signature order
  std::int64_t rows = 1;
  std::uint64_t key = 0;    // requests with equal keys can share a batch
  std::uint32_t flags = 0;  // wire header flags (may the reply use shm)
  bool via_hdf5 = false;    // the request came in an HDF5 file
  std::uint32_t client_pid = 0;
  int slot = -1;  // came on the direct path (transport/direct_layout.hpp): the task's slot
  std::uint32_t slot_generation = 0;
  int version = 0;  // the model version asked for; 0: the one the replica serves
  std::chrono::steady_clock::time_point received;
  // When the answer stops being of use to the client (max: never).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool has_deadline() const { return deadline != std::chrono::steady_clock::time_point::max(); }
  // The same on the wall clock the client shares with us when it is on our
  // node (0 otherwise): a reply sent after it is late by both our clocks.
  std::int64_t deadline_wall_us = 0;
  // What its reply needs to get back and be read before the deadline: a
  // twentieth of the time it had on arrival, at most 2 ms. The replica
  // plans to send the reply that much early.
  std::chrono::steady_clock::duration reply_margin() const {
    return std::min<std::chrono::steady_clock::duration>((deadline - received) / 20,
                                                         std::chrono::milliseconds(2));
  }
};

/// Puts @p inputs into signature order and fills rows and key. Returns false
/// with @p why saying what is wrong for a request the service cannot take.
bool check_request(const ServiceSpec& spec, TensorList& inputs, std::int64_t& rows,
                   std::uint64_t& key, std::string& why);

/// Takes from the front of @p queue the requests that go into the next
/// batch: the first one and those right behind it that are compatible, while
/// the rows fit in @p max_batch.
std::vector<QueuedRequest> take_batch(std::deque<QueuedRequest>& queue, int max_batch);

/// Whether the front of @p queue should run now rather than wait for more.
bool batch_due(const std::deque<QueuedRequest>& queue, int max_batch, int max_delay_us,
               bool draining, std::chrono::steady_clock::time_point now);

/// Concatenates the batch's inputs along dimension 0 (no copy for one).
TensorList concatenate(const std::vector<QueuedRequest>& batch);

/// Rows [first, first + rows) of each tensor, as views.
TensorList slice_rows(const TensorList& tensors, std::int64_t first, std::int64_t rows);

}  // namespace tandem::detail
