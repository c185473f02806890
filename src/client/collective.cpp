// Client::infer_all: the protocol between a node's ranks (see
// collective.hpp and docs/architecture.md, "Collective inference").
//
// Call k on a communicator, per node:
//   every rank    checks its inputs, copies its rows into its own segment
//                 (or, past its size, sends them to the leader by MPI),
//                 fills its slot of the control block and counts itself in
//                 `arrived`; a rank other than the leader returns now;
//   the leader    waits until its node has arrived, agrees with the other
//                 nodes' leaders (MPI, only they) that every rank's inputs
//                 fit, gathers the rows and sends a request per max_batch;
//   wait(), leader  takes the replies, agrees with the other leaders on
//                 failures, writes the outputs into the output window and
//                 posts the outcome (`posted` = k, futex wake);
//   wait(), others  sleep until `posted` = k and read their rows.

#include "client/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/mpi_check.hpp"
#include "client/client_impl.hpp"
#include "client/collective_parts.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"
#include "transport/direct_layout.hpp"

namespace tandem::detail {

namespace {

constexpr int kOverflowTag = 1;  // rows past a rank's segment, on the node communicator
constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();

// Waits until @p done() holds, sleeping on the futex @p word between looks
// as the node's idle mode says. The other side rings with
// direct::ring_bell(word, sleepers): counted in @p sleepers before the last
// look, this rank is either seen and woken or sees the bell itself, and a
// post that finds nobody asleep costs no system call.
template <typename Done>
void wait_on(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& sleepers,
             const BackoffSpec& spec, Done done) {
  Backoff backoff(spec);
  while (!done()) {
    backoff.pause_with([&](long ns) {
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      const std::uint32_t seen = word.load(std::memory_order_seq_cst);
      if (!done()) direct::futex_wait(word, seen, ns);
      sleepers.fetch_sub(1, std::memory_order_relaxed);
    });
  }
}

// Bounded copy of @p text into a fixed field.
void put_text(char* field, std::size_t capacity, const std::string& text, std::uint32_t* size) {
  const std::size_t n = text.copy(field, capacity);  // sized, not terminated: see *size
  if (size) *size = static_cast<std::uint32_t>(n);
}

// Text from @p root to every rank of @p comm (the error paths only).
std::string broadcast_text(MPI_Comm comm, int root, const std::string& text) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  long long size = rank == root ? static_cast<long long>(text.size()) : 0;
  TANDEM_MPI_CHECK(MPI_Bcast(&size, 1, MPI_LONG_LONG, root, comm));
  std::string out = rank == root ? text : std::string(static_cast<std::size_t>(size), '\0');
  if (size > 0) {
    TANDEM_MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(size), MPI_CHAR, root, comm));
  }
  return out;
}

// Across nodes, among the leaders: the lowest rank (of the communicator)
// whose @p mine is set, and its text; kNone and "" when none.
std::pair<std::int64_t, std::string> lowest_among_leaders(const NodeGroup& g, std::int64_t mine,
                                                          const std::string& text) {
  if (g.nodes == 1) return {mine, text};
  std::int64_t lowest = mine;
  TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT64_T, MPI_MIN, g.leaders));
  if (lowest == kNone) return {kNone, ""};
  // The leader whose node holds it says why.
  int leaders_rank = 0;
  MPI_Comm_rank(g.leaders, &leaders_rank);
  int root = mine == lowest ? leaders_rank : std::numeric_limits<int>::max();
  TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &root, 1, MPI_INT, MPI_MIN, g.leaders));
  return {lowest, broadcast_text(g.leaders, root, mine == lowest ? text : std::string())};
}

// The leader, once its node has arrived: every rank's inputs fit and agree
// (across nodes too), or the error. Fills call.node_rows.
std::string check_node(NodeGroup& g, CollectiveCall& call, const std::string& service) {
  std::int64_t failing = kNone;
  std::string why;
  std::int64_t low = kNone;
  std::int64_t high = std::numeric_limits<std::int64_t>::min();
  call.node_rows.assign(static_cast<std::size_t>(g.node_size), 0);
  for (int r = 0; r < g.node_size; ++r) {
    const ControlSlot& s = g.slot(r);
    const std::int64_t rank = g.comm_rank_of[static_cast<std::size_t>(r)];
    if (s.failing && rank < failing) {
      failing = rank;
      why.assign(s.why, strnlen(s.why, kWhyBytes));
    }
    low = std::min(low, s.digest);
    high = std::max(high, s.digest);
    call.node_rows[static_cast<std::size_t>(r)] = s.rows;
  }
  const auto [lowest, reason] = lowest_among_leaders(g, failing, why);
  if (lowest != kNone) {
    return fmt::format("infer_all to service '{}': rank {}: {}", service, lowest, reason);
  }
  std::int64_t span[2] = {low, -high};
  if (g.nodes > 1) {
    TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, span, 2, MPI_INT64_T, MPI_MIN, g.leaders));
  }
  if (span[0] != -span[1]) {
    return fmt::format(
        "infer_all to service '{}': the ranks disagree on the inputs' names, dtypes or "
        "non-batch dimensions",
        service);
  }
  return "";
}

// The leader: the node's rows of every input, rank after rank, from the
// segments (and the overflow messages).
void gather_rows(NodeGroup& g, CollectiveCall& call, const TensorList& own) {
  std::size_t row_bytes = 0;
  for (const InputLayout& l : call.inputs) row_bytes += l.row_bytes;
  call.staged.assign(call.inputs.size(), {});
  for (std::size_t i = 0; i < call.inputs.size(); ++i) {
    call.staged[i].resize(call.inputs[i].row_bytes *
                          static_cast<std::size_t>(call.node_rows_total));
  }
  std::vector<std::byte> received;
  std::size_t row = 0;
  for (int r = 0; r < g.node_size; ++r) {
    const auto rows = static_cast<std::size_t>(call.node_rows[static_cast<std::size_t>(r)]);
    const std::byte* from = nullptr;
    if (r == 0) {
      from = nullptr;  // the leader's own tensors, below
    } else if (g.slot(r).overflow) {
      received.resize(rows * row_bytes);
      TANDEM_MPI_CHECK(MPI_Recv(received.data(), static_cast<int>(received.size()), MPI_BYTE, r,
                                kOverflowTag, g.node, MPI_STATUS_IGNORE));
      from = received.data();
    } else {
      from = g.in.base(r);
    }
    std::size_t at = 0;
    for (std::size_t i = 0; i < call.inputs.size(); ++i) {
      const std::size_t n = rows * call.inputs[i].row_bytes;
      std::byte* to = call.staged[i].data() + row * call.inputs[i].row_bytes;
      if (n > 0) std::memcpy(to, r == 0 ? own[i].tensor.data() : from + at, n);
      at += n;
    }
    row += rows;
  }
}

// The leader, when the call fails before any request: the rows that ranks
// sent by MPI are taken all the same, so that their sends complete.
void drain_overflow(NodeGroup& g) {
  std::vector<std::byte> scratch;
  for (int r = 1; r < g.node_size; ++r) {
    if (!g.slot(r).overflow) continue;
    scratch.resize(static_cast<std::size_t>(g.slot(r).bytes));
    TANDEM_MPI_CHECK(MPI_Recv(scratch.data(), static_cast<int>(scratch.size()), MPI_BYTE, r,
                              kOverflowTag, g.node, MPI_STATUS_IGNORE));
  }
}

}  // namespace

}  // namespace tandem::detail

namespace tandem {

using detail::CallOutcome;
using detail::CollectiveCall;
using detail::ControlHeader;
using detail::ControlSlot;
using detail::InputLayout;
using detail::NodeGroup;
using detail::ServiceSpec;
using detail::TensorSpec;

CollectiveHandle Client::infer_all_async(MPI_Comm comm, const std::string& service,
                                         const TensorList& given, const InferOptions& options) {
  detail::ClientImpl& impl = *impl_;
  const int s = impl.service_index(service);  // an unknown name throws on every rank alike
  const ServiceSpec& spec = impl.workflow().services[static_cast<std::size_t>(s)];
  NodeGroup& g = impl.node_groups().of(comm);
  if (g.in_flight) {
    throw argument_error(fmt::format(
        "infer_all to service '{}': a collective call on this communicator is still in flight; "
        "wait() for it first",
        service));
  }
  // One unnamed input is the signature's only one, as for infer().
  TensorList inputs = given;
  if (inputs.size() == 1 && inputs[0].name.empty() && spec.inputs.size() <= 1) {
    inputs[0].name = spec.inputs.empty() ? std::string("input") : spec.inputs[0].name;
  }
  std::sort(inputs.begin(), inputs.end(),
            [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });

  auto call = std::make_shared<CollectiveCall>();
  call->group = &g;
  call->service = service;
  call->number = ++g.calls;
  call->backoff = impl.workflow().job.backoff;
  for (const TensorSpec& o : g.node_rank == 0 ? spec.outputs : std::vector<TensorSpec>{}) {
    std::vector<std::int64_t> shape{0};
    for (std::size_t d = 1; d < o.shape.size(); ++d) shape.push_back(std::max(0LL, o.shape[d]));
    call->empty_outputs.push_back({o.name, Tensor::zeros(static_cast<DType>(o.dtype), shape)});
  }

  // This rank's post: its rows in its segment, or past its size to the
  // leader by MPI; what is wrong with them, if anything.
  const std::string why = detail::check_inputs(spec, inputs);
  call->rows = why.empty() ? inputs[0].tensor.shape()[0] : 0;
  std::size_t bytes = 0;
  for (const NamedTensor& in : inputs) {
    InputLayout l;
    l.name = in.name;
    l.dtype = in.tensor.dtype();
    if (!in.tensor.shape().empty()) {
      l.row_shape.assign(in.tensor.shape().begin() + 1, in.tensor.shape().end());
    }
    l.row_bytes = detail::row_bytes_of(l.dtype, l.row_shape);
    bytes += why.empty() ? in.tensor.nbytes() : 0;
    call->inputs.push_back(std::move(l));
  }
  ControlSlot& mine = g.slot(g.node_rank);
  mine.rows = call->rows;
  mine.digest = detail::layout_digest(inputs);
  mine.bytes = static_cast<std::int64_t>(bytes);
  mine.failing = why.empty() ? 0 : 1;
  detail::put_text(mine.why, detail::kWhyBytes - 1, why, nullptr);
  mine.why[std::min(why.size(), detail::kWhyBytes - 1)] = '\0';
  mine.overflow = 0;
  if (g.node_rank != 0 && bytes > 0) {
    std::byte* to = bytes <= g.in.capacity(g.node_rank) ? g.in.base(g.node_rank) : nullptr;
    if (!to) {
      call->overflow.resize(bytes);
      to = call->overflow.data();
      mine.overflow = 1;
    }
    for (const NamedTensor& in : inputs) {
      std::memcpy(to, in.tensor.data(), in.tensor.nbytes());
      to += in.tensor.nbytes();
    }
    if (mine.overflow) {
      TANDEM_MPI_CHECK(MPI_Isend(call->overflow.data(), static_cast<int>(bytes), MPI_BYTE, 0,
                                 detail::kOverflowTag, g.node, &call->overflow_send));
    }
  }
  g.in.sync();
  g.control.sync();
  ControlHeader& header = g.header();
  detail::direct::ring_bell(header.arrived, header.leader_sleeping);
  if (g.node_rank == 0) {
    // The leader: its node, then the other nodes, then the requests.
    // Posts are counted up for ever: call k is complete at k x node_size.
    const std::uint32_t everyone = call->number * static_cast<std::uint32_t>(g.node_size);
    detail::wait_on(header.arrived, header.leader_sleeping, call->backoff, [&] {
      return static_cast<std::int32_t>(header.arrived.load(std::memory_order_acquire) - everyone) >=
             0;
    });
    g.control.sync();
    g.in.sync();
    call->error = detail::check_node(g, *call, service);
    for (int r = 0; r < g.node_size; ++r) {
      g.slot(r).first_row = call->node_rows_total;
      call->node_rows_total += call->node_rows[static_cast<std::size_t>(r)];
    }
    if (!call->error.empty()) detail::drain_overflow(g);
    if (call->error.empty() && call->node_rows_total > 0) {
      detail::gather_rows(g, *call, inputs);
      const std::int64_t per = std::max(1, spec.max_batch);
      try {
        for (std::int64_t first = 0; first < call->node_rows_total; first += per) {
          const std::int64_t n = std::min(per, call->node_rows_total - first);
          TensorList views;
          for (std::size_t i = 0; i < call->inputs.size(); ++i) {
            const InputLayout& l = call->inputs[i];
            std::vector<std::int64_t> shape{n};
            shape.insert(shape.end(), l.row_shape.begin(), l.row_shape.end());
            views.push_back(
                {l.name, Tensor::view(l.dtype, shape,
                                      static_cast<const void*>(
                                          call->staged[i].data() +
                                          l.row_bytes * static_cast<std::size_t>(first)))});
          }
          call->requests.push_back(infer_async(service, views, options));
        }
      } catch (const std::exception& e) {
        call->error = fmt::format(
            "infer_all to service '{}': the request rank {} sent for its node failed: {}", service,
            g.rank, e.what());
      }
      detail::trace::record(detail::trace::kCollective, call->node_rows_total,
                            static_cast<std::int64_t>(call->requests.size()), s,
                            static_cast<std::int16_t>(g.node_size));
    }
  }
  g.in_flight = true;
  CollectiveHandle handle;
  handle.call_ = std::move(call);
  return handle;
}

TensorList Client::infer_all(MPI_Comm comm, const std::string& service, const TensorList& inputs,
                             const InferOptions& options) {
  return infer_all_async(comm, service, inputs, options).wait();
}

namespace {

// The leader's half of wait(): the replies, the other leaders' failures,
// the outputs into the window (when it is big enough) and the post.
void leader_answers(NodeGroup& g, CollectiveCall& call) {
  std::vector<TensorList> parts;
  std::string error = call.error;
  for (InferHandle& h : call.requests) {
    try {
      parts.push_back(h.wait());
    } catch (const std::exception& e) {
      if (error.empty()) {
        error = fmt::format(
            "infer_all to service '{}': the request rank {} sent for its node "
            "failed: {}",
            call.service, g.rank, e.what());
      }
    }
  }
  // Every node fails alike: the lowest failing leader's reason.
  const auto [lowest, reason] =
      detail::lowest_among_leaders(g, error.empty() ? detail::kNone : g.rank, error);
  ControlHeader& header = g.header();
  header.regrow = 0;
  for (int r = 1; r < g.node_size; ++r) header.regrow |= g.slot(r).overflow;
  std::vector<detail::OutputLayout> outs;
  std::size_t bytes = 0;
  std::string text;
  if (lowest != detail::kNone) {
    header.outcome = static_cast<std::uint32_t>(CallOutcome::failed);
    text = reason;
  } else {
    text = detail::describe_outputs("", parts.empty() ? call.empty_outputs : parts[0]);
    detail::read_outputs(text, outs);
    for (const detail::OutputLayout& o : outs) {
      bytes += detail::aligned(o.row_bytes * static_cast<std::size_t>(call.node_rows_total));
    }
    if (bytes > 0 && (!g.out.allocated() || bytes > g.out.capacity(0))) {
      header.outcome = static_cast<std::uint32_t>(CallOutcome::grow);
      header.out_bytes = bytes;
    } else {
      header.outcome = static_cast<std::uint32_t>(CallOutcome::written);
    }
  }
  auto write_outputs = [&] {
    std::size_t at = 0;
    for (std::size_t k = 0; k < outs.size(); ++k) {
      std::size_t to = at;
      for (const TensorList& part : parts) {
        const Tensor& t = part[k].tensor;
        std::memcpy(g.out.base(0) + to, t.data(), t.nbytes());
        to += t.nbytes();
      }
      at += detail::aligned(outs[k].row_bytes * static_cast<std::size_t>(call.node_rows_total));
    }
  };
  header.node_rows = call.node_rows_total;
  if (header.outcome == static_cast<std::uint32_t>(CallOutcome::written)) write_outputs();
  detail::put_text(header.text, detail::kTextBytes, text, &header.text_size);
  g.out.sync();
  g.control.sync();
  detail::direct::ring_bell(header.posted, header.ranks_sleeping);  // now call.number
  if (header.outcome == static_cast<std::uint32_t>(CallOutcome::grow)) {
    // Rare: the node grows the window together, then the leader writes.
    g.out.reserve_leader(g.node, bytes);
    write_outputs();
    g.out.sync();
    TANDEM_MPI_CHECK(MPI_Barrier(g.node));
  }
}

}  // namespace

TensorList CollectiveHandle::wait() {
  if (!call_) throw argument_error("CollectiveHandle::wait on an empty or finished handle");
  std::shared_ptr<CollectiveCall> call = std::move(call_);
  NodeGroup& g = *call->group;
  g.in_flight = false;
  ControlHeader& header = g.header();
  if (g.node_rank == 0) {
    leader_answers(g, *call);
  } else {
    detail::wait_on(header.posted, header.ranks_sleeping, call->backoff,
                    [&] { return header.posted.load(std::memory_order_acquire) == call->number; });
    g.control.sync();
    g.out.sync();
    if (header.outcome == static_cast<std::uint32_t>(CallOutcome::grow)) {
      g.out.reserve_leader(g.node, header.out_bytes);
      TANDEM_MPI_CHECK(MPI_Barrier(g.node));
      g.out.sync();
    }
  }
  if (call->overflow_send != MPI_REQUEST_NULL) {
    MPI_Wait(&call->overflow_send, MPI_STATUS_IGNORE);  // the leader has the rows
  }
  const std::string text(header.text, header.text_size);
  const auto outcome = static_cast<CallOutcome>(header.outcome);
  if (header.regrow) {
    // A rank's rows did not fit its segment: every rank of the node sizes
    // its own anew, for the next calls (collective over the node).
    std::int64_t want = static_cast<std::int64_t>(g.in.capacity(g.node_rank));
    const std::int64_t needed = g.slot(g.node_rank).bytes;
    if (needed > want) want = needed + needed / 2;
    g.in.allocate(g.node, static_cast<std::size_t>(want));
  }
  if (outcome == CallOutcome::failed) throw request_error(call->service, text);

  std::vector<detail::OutputLayout> outs;
  detail::read_outputs(text, outs);
  const auto first_row = static_cast<std::size_t>(g.slot(g.node_rank).first_row);
  const auto node_rows = static_cast<std::size_t>(header.node_rows);
  std::size_t offset = 0;
  TensorList result;
  for (const detail::OutputLayout& o : outs) {
    std::vector<std::int64_t> shape{call->rows};
    shape.insert(shape.end(), o.row_shape.begin(), o.row_shape.end());
    Tensor t = Tensor::zeros(o.dtype, shape);
    if (t.nbytes() > 0) {
      std::memcpy(t.data(), g.out.base(0) + offset + o.row_bytes * first_row, t.nbytes());
    }
    offset += detail::aligned(o.row_bytes * node_rows);
    result.push_back({o.name, std::move(t)});
  }
  return result;
}

}  // namespace tandem
