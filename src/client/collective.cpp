#include "client/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/mpi_check.hpp"
#include "base/mpi_wait.hpp"
#include "client/client_impl.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"

namespace tandem::detail {

namespace {

constexpr std::size_t kAlign = 64;  // each tensor's region starts on a cache line

std::size_t aligned(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

std::size_t row_bytes_of(DType dtype, const std::vector<std::int64_t>& row_shape) {
  std::size_t n = dtype_size(dtype);
  for (const std::int64_t d : row_shape) n *= static_cast<std::size_t>(d);
  return n;
}

// Why this rank's inputs cannot go in a collective call to @p spec, or "".
std::string check_inputs(const ServiceSpec& spec, const TensorList& inputs) {
  if (inputs.empty()) return "no inputs";
  const std::int64_t rows = inputs[0].tensor.shape().empty() ? -1 : inputs[0].tensor.shape()[0];
  for (const NamedTensor& in : inputs) {
    const auto& shape = in.tensor.shape();
    if (shape.empty()) {
      return fmt::format("input '{}' has no batch dimension (a scalar); give it shape [rows, ...]",
                         in.name);
    }
    if (shape[0] != rows) {
      return fmt::format("input '{}' has {} rows and input '{}' {}; every input needs the same",
                         in.name, shape[0], inputs[0].name, rows);
    }
  }
  if (spec.inputs.empty()) return "";
  for (const NamedTensor& in : inputs) {
    const auto it = std::find_if(spec.inputs.begin(), spec.inputs.end(),
                                 [&](const TensorSpec& t) { return t.name == in.name; });
    if (it == spec.inputs.end()) {
      return fmt::format("input '{}' is not in service '{}''s signature", in.name, spec.name);
    }
    const auto want = static_cast<DType>(it->dtype);
    if (in.tensor.dtype() != want) {
      return fmt::format("input '{}' is {}, the signature says {}", in.name,
                         dtype_name(in.tensor.dtype()), dtype_name(want));
    }
    const auto& shape = in.tensor.shape();
    bool fits = shape.size() == it->shape.size();
    for (std::size_t d = 1; fits && d < shape.size(); ++d) {
      fits = it->shape[d] < 0 || it->shape[d] == shape[d];
    }
    if (!fits) {
      return fmt::format("input '{}' has shape {}, the signature says [{}]", in.name,
                         in.tensor.describe(), fmt::join(it->shape, ", "));
    }
  }
  for (const TensorSpec& t : spec.inputs) {
    if (std::none_of(inputs.begin(), inputs.end(),
                     [&](const NamedTensor& in) { return in.name == t.name; })) {
      return fmt::format("input '{}' of the signature is missing", t.name);
    }
  }
  return "";
}

// A digest of what must match across ranks: names, dtypes, non-batch shape.
long long layout_digest(const TensorList& inputs) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&](std::uint64_t v) {
    h ^= v;
    h *= 1099511628211ULL;
  };
  for (const NamedTensor& in : inputs) {
    for (const char c : in.name) mix(static_cast<unsigned char>(c));
    mix(static_cast<std::uint64_t>(in.tensor.dtype()) + 1000);
    const auto& shape = in.tensor.shape();
    for (std::size_t d = 1; d < shape.size(); ++d) mix(static_cast<std::uint64_t>(shape[d]) + 7);
    mix(0xffff);
  }
  return static_cast<long long>(h >> 1);  // positive, so that its negation fits
}

// Text from @p root to every rank of @p comm (the error paths).
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

// The collectives of a call wait as Tandem's other waits do (the node's
// idle mode): with more ranks than cores, ranks spinning in MPI would take
// the cores from the replica and the node's leader that they wait for.
void settle(MPI_Request& request, const BackoffSpec& backoff) {
  wait_request(request, backoff);
}

// What every rank of the communicator must agree on before anything is
// sent: the lowest rank whose inputs do not fit (kNone: none), and the
// lowest and highest digest of the inputs' layout.
constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();
struct Verdict {
  std::int64_t failing = kNone;
  std::int64_t digest_low = kNone;
  std::int64_t minus_digest_high = kNone;  // so that one MIN reduction does both
};

// Node first (every rank's verdict and rows, in one allgather), then, when
// the communicator spans nodes, the nodes' leaders reduce theirs and tell
// their node.
Verdict agree(NodeGroup& g, const BackoffSpec& backoff, std::int64_t failing, std::int64_t digest,
              std::int64_t rows, std::vector<std::int64_t>& node_rows) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(3 * g.node_size));
  const std::int64_t mine[3] = {failing, digest, rows};
  MPI_Request request = MPI_REQUEST_NULL;
  TANDEM_MPI_CHECK(
      MPI_Iallgather(mine, 3, MPI_INT64_T, all.data(), 3, MPI_INT64_T, g.node, &request));
  settle(request, backoff);
  Verdict v;
  node_rows.resize(static_cast<std::size_t>(g.node_size));
  for (int r = 0; r < g.node_size; ++r) {
    const auto at = static_cast<std::size_t>(3 * r);
    v.failing = std::min(v.failing, all[at]);
    v.digest_low = std::min(v.digest_low, all[at + 1]);
    v.minus_digest_high = std::min(v.minus_digest_high, -all[at + 1]);
    node_rows[static_cast<std::size_t>(r)] = all[at + 2];
  }
  if (g.nodes > 1) {
    std::int64_t three[3] = {v.failing, v.digest_low, v.minus_digest_high};
    if (g.node_rank == 0) {
      TANDEM_MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, three, 3, MPI_INT64_T, MPI_MIN, g.leaders, &request));
      settle(request, backoff);
    }
    TANDEM_MPI_CHECK(MPI_Ibcast(three, 3, MPI_INT64_T, 0, g.node, &request));
    settle(request, backoff);
    v = {three[0], three[1], three[2]};
  }
  return v;
}

// After the requests: the lowest rank of the communicator whose node's
// request failed (kNone: none), known to every rank.
std::int64_t agree_on_failure(NodeGroup& g, const BackoffSpec& backoff, std::int64_t node_failing) {
  if (g.nodes == 1) return node_failing;
  std::int64_t failing = node_failing;
  MPI_Request request = MPI_REQUEST_NULL;
  if (g.node_rank == 0) {
    TANDEM_MPI_CHECK(
        MPI_Iallreduce(MPI_IN_PLACE, &failing, 1, MPI_INT64_T, MPI_MIN, g.leaders, &request));
    settle(request, backoff);
  }
  TANDEM_MPI_CHECK(MPI_Ibcast(&failing, 1, MPI_INT64_T, 0, g.node, &request));
  settle(request, backoff);
  return failing;
}

// The outputs' description, from the leader to its node: the error, or
// each output's name, dtype and shape less the batch dimension.
std::string describe_outputs(const std::string& error, const TensorList& outputs) {
  std::string d = error.empty() ? "ok\n" : "error\n" + error;
  if (!error.empty()) return d;
  for (const NamedTensor& o : outputs) {
    d += fmt::format("{}\n{}\n", o.name, static_cast<int>(o.tensor.dtype()));
    const auto& shape = o.tensor.shape();
    std::vector<std::int64_t> rest(shape.begin() + (shape.empty() ? 0 : 1), shape.end());
    d += fmt::format("{}\n", fmt::join(rest, " "));
  }
  return d;
}

// The leader's description to its node, in one broadcast of a fixed size
// (a second one for what does not fit), with whether the leader already
// wrote the outputs into the window.
std::string broadcast_description(NodeGroup& g, const BackoffSpec& backoff, std::string text,
                                  bool& written) {
  constexpr std::size_t kFixed = 4096;
  constexpr std::size_t kHead = 2 * sizeof(std::int64_t);
  std::vector<char> buffer(kFixed);
  std::int64_t head[2] = {static_cast<std::int64_t>(text.size()), written ? 1 : 0};
  if (g.node_rank == 0) {
    std::memcpy(buffer.data(), head, kHead);
    std::memcpy(buffer.data() + kHead, text.data(), std::min(text.size(), kFixed - kHead));
  }
  MPI_Request request = MPI_REQUEST_NULL;
  TANDEM_MPI_CHECK(
      MPI_Ibcast(buffer.data(), static_cast<int>(kFixed), MPI_CHAR, 0, g.node, &request));
  settle(request, backoff);
  std::memcpy(head, buffer.data(), kHead);
  written = head[1] == 1;
  const auto size = static_cast<std::size_t>(head[0]);
  if (g.node_rank != 0) text.assign(buffer.data() + kHead, std::min(size, kFixed - kHead));
  if (size > kFixed - kHead) {
    text.resize(size);
    const std::size_t rest = size - (kFixed - kHead);
    TANDEM_MPI_CHECK(MPI_Ibcast(text.data() + (kFixed - kHead), static_cast<int>(rest), MPI_CHAR, 0,
                                g.node, &request));
    settle(request, backoff);
  }
  return text;
}

struct OutputLayout {
  std::string name;
  DType dtype = DType::FP32;
  std::vector<std::int64_t> row_shape;
  std::size_t row_bytes = 0;
  std::size_t offset = 0;
};

// Reads describe_outputs' text; returns the error, or "" and the layouts.
std::string read_outputs(const std::string& text, std::vector<OutputLayout>& outs) {
  std::size_t at = text.find('\n');
  const std::string head = text.substr(0, at);
  if (head == "error") return text.substr(at + 1);
  auto line = [&] {
    const std::size_t start = at + 1;
    at = text.find('\n', start);
    return text.substr(start, at - start);
  };
  while (at + 1 < text.size()) {
    OutputLayout o;
    o.name = line();
    o.dtype = static_cast<DType>(std::stoi(line()));
    const std::string dims = line();
    std::size_t p = 0;
    while (p < dims.size()) {
      std::size_t end = dims.find(' ', p);
      if (end == std::string::npos) end = dims.size();
      o.row_shape.push_back(std::stoll(dims.substr(p, end - p)));
      p = end + 1;
    }
    o.row_bytes = row_bytes_of(o.dtype, o.row_shape);
    outs.push_back(std::move(o));
  }
  return "";
}

}  // namespace

void SharedWindow::reserve(MPI_Comm node, std::size_t bytes) {
  if (win_ != MPI_WIN_NULL && bytes <= capacity_) return;
  if (win_ != MPI_WIN_NULL) {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
  capacity_ = std::max<std::size_t>(1 << 16, aligned(bytes + bytes / 2));
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  void* mine = nullptr;
  TANDEM_MPI_CHECK(MPI_Win_allocate_shared(static_cast<MPI_Aint>(node_rank == 0 ? capacity_ : 0), 1,
                                           MPI_INFO_NULL, node, &mine, &win_));
  MPI_Aint size = 0;
  int unit = 0;
  void* base = nullptr;
  TANDEM_MPI_CHECK(MPI_Win_shared_query(win_, 0, &size, &unit, &base));
  base_ = static_cast<std::byte*>(base);
  TANDEM_MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));
}

void SharedWindow::sync() const {
  if (win_ != MPI_WIN_NULL) MPI_Win_sync(win_);
}

NodeGroup& NodeGroups::of(MPI_Comm comm) {
  for (const auto& g : groups_) {
    if (g->user != comm) continue;
    int same = MPI_UNEQUAL;
    MPI_Comm_compare(comm, g->comm, &same);
    if (same == MPI_CONGRUENT) return *g;
  }
  auto g = std::make_unique<NodeGroup>();
  g->user = comm;
  TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &g->comm));
  MPI_Comm_rank(g->comm, &g->rank);
  TANDEM_MPI_CHECK(
      MPI_Comm_split_type(g->comm, MPI_COMM_TYPE_SHARED, g->rank, MPI_INFO_NULL, &g->node));
  MPI_Comm_rank(g->node, &g->node_rank);
  MPI_Comm_size(g->node, &g->node_size);
  TANDEM_MPI_CHECK(
      MPI_Comm_split(g->comm, g->node_rank == 0 ? 0 : MPI_UNDEFINED, g->rank, &g->leaders));
  if (g->node_rank == 0) MPI_Comm_size(g->leaders, &g->nodes);
  int shared[2] = {g->nodes, g->rank};  // from the node's leader
  TANDEM_MPI_CHECK(MPI_Bcast(shared, 2, MPI_INT, 0, g->node));
  g->nodes = shared[0];
  g->leader = shared[1];
  groups_.push_back(std::move(g));
  return *groups_.back();
}

}  // namespace tandem::detail

namespace tandem {

using detail::CollectiveCall;
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
  call->backoff = impl.workflow().job.backoff;

  // Nothing is sent before every rank knows that every rank's inputs fit
  // and agree; the node learns its ranks' rows at the same time.
  const std::string why = detail::check_inputs(spec, inputs);
  const std::int64_t my_rows = why.empty() ? inputs[0].tensor.shape()[0] : 0;
  const detail::Verdict verdict =
      detail::agree(g, call->backoff, why.empty() ? detail::kNone : g.rank,
                    detail::layout_digest(inputs), my_rows, call->rows);
  if (verdict.failing != detail::kNone) {
    const std::string reason =
        detail::broadcast_text(g.comm, static_cast<int>(verdict.failing), why);
    throw request_error(service, fmt::format("infer_all to service '{}': rank {}: {}", service,
                                             verdict.failing, reason));
  }
  if (verdict.digest_low != -verdict.minus_digest_high) {
    throw request_error(service, fmt::format("infer_all to service '{}': the ranks disagree on "
                                             "the inputs' names, dtypes or non-batch dimensions "
                                             "(this rank has {})",
                                             service, inputs[0].tensor.describe()));
  }
  for (int r = 0; r < g.node_size; ++r) {
    if (r == g.node_rank) call->first_row = call->node_rows;
    call->node_rows += call->rows[static_cast<std::size_t>(r)];
  }
  std::size_t bytes = 0;
  for (const NamedTensor& in : inputs) {
    InputLayout l;
    l.name = in.name;
    l.dtype = in.tensor.dtype();
    l.row_shape.assign(in.tensor.shape().begin() + 1, in.tensor.shape().end());
    l.row_bytes = detail::row_bytes_of(l.dtype, l.row_shape);
    l.offset = bytes;
    bytes += detail::aligned(l.row_bytes * static_cast<std::size_t>(call->node_rows));
    call->inputs.push_back(std::move(l));
  }
  g.in.reserve(g.node, bytes);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const InputLayout& l = call->inputs[i];
    if (inputs[i].tensor.nbytes() > 0) {
      std::memcpy(g.in.base() + l.offset + l.row_bytes * static_cast<std::size_t>(call->first_row),
                  inputs[i].tensor.data(), inputs[i].tensor.nbytes());
    }
  }
  g.in.sync();
  MPI_Request written = MPI_REQUEST_NULL;
  TANDEM_MPI_CHECK(MPI_Ibarrier(g.node, &written));
  detail::settle(written, call->backoff);
  g.in.sync();

  if (g.node_rank == 0 && call->node_rows > 0) {
    // One request for the node's rows, or one per max_batch of them.
    const std::int64_t per = std::max(1, spec.max_batch);
    try {
      for (std::int64_t first = 0; first < call->node_rows; first += per) {
        const std::int64_t n = std::min(per, call->node_rows - first);
        TensorList views;
        for (const InputLayout& l : call->inputs) {
          std::vector<std::int64_t> shape{n};
          shape.insert(shape.end(), l.row_shape.begin(), l.row_shape.end());
          views.push_back(
              {l.name, Tensor::view(l.dtype, shape,
                                    static_cast<const void*>(
                                        g.in.base() + l.offset +
                                        l.row_bytes * static_cast<std::size_t>(first)))});
        }
        call->requests.push_back(infer_async(service, views, options));
      }
    } catch (const std::exception& e) {
      call->send_error = e.what();
    }
    detail::trace::record(detail::trace::kCollective, call->node_rows,
                          static_cast<std::int64_t>(call->requests.size()), s,
                          static_cast<std::int16_t>(g.node_size));
  }
  for (const TensorSpec& o : spec.outputs) {
    std::vector<std::int64_t> shape{0};
    for (std::size_t d = 1; d < o.shape.size(); ++d) shape.push_back(std::max(0LL, o.shape[d]));
    call->empty_outputs.push_back({o.name, Tensor::zeros(static_cast<DType>(o.dtype), shape)});
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

TensorList CollectiveHandle::wait() {
  if (!call_) throw argument_error("CollectiveHandle::wait on an empty or finished handle");
  std::shared_ptr<CollectiveCall> call = std::move(call_);
  NodeGroup& g = *call->group;
  g.in_flight = false;

  std::vector<TensorList> parts;  // the leader's replies, in row order
  std::vector<detail::OutputLayout> outs;
  // Places the outputs one after the other in the output window; returns
  // the node's error, if any, and the bytes they need.
  auto lay_out = [&](const std::string& description) {
    outs.clear();
    const std::string node_error = detail::read_outputs(description, outs);
    std::size_t bytes = 0;
    for (detail::OutputLayout& o : outs) {
      o.offset = bytes;
      bytes += detail::aligned(o.row_bytes * static_cast<std::size_t>(call->node_rows));
    }
    return std::make_pair(node_error, bytes);
  };
  auto write_outputs = [&] {
    for (std::size_t k = 0; k < outs.size(); ++k) {
      std::size_t at = outs[k].offset;
      for (const TensorList& part : parts) {
        const Tensor& t = part[k].tensor;
        std::memcpy(g.out.base() + at, t.data(), t.nbytes());
        at += t.nbytes();
      }
    }
    g.out.sync();
  };

  // The leader takes the outputs and, when the window is big enough,
  // writes them at once: the broadcast of their description then tells
  // the node they are there.
  std::string text;
  bool written = false;
  if (g.node_rank == 0) {
    std::string error = call->send_error;
    for (InferHandle& h : call->requests) {
      try {
        parts.push_back(h.wait());
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
      }
    }
    text = detail::describe_outputs(error, parts.empty() ? call->empty_outputs : parts[0]);
    const auto [unused, bytes] = lay_out(text);
    if (error.empty() && !parts.empty() && bytes <= g.out.capacity()) {
      write_outputs();
      written = true;
    }
  }
  text = detail::broadcast_description(g, call->backoff, text, written);
  const auto [node_error, bytes] = lay_out(text);

  // Every rank of the communicator fails alike, naming the rank that sent
  // the failed request.
  const std::int64_t failing =
      detail::agree_on_failure(g, call->backoff, node_error.empty() ? detail::kNone : g.leader);
  if (failing != detail::kNone) {
    const std::string why =
        g.nodes == 1 ? node_error
                     : detail::broadcast_text(g.comm, static_cast<int>(failing),
                                              g.rank == failing ? node_error : std::string());
    throw request_error(call->service,
                        fmt::format("infer_all to service '{}': the request rank {} sent for its "
                                    "node failed: {}",
                                    call->service, failing, why));
  }
  if (written) {
    g.out.sync();  // the leader wrote before the broadcast
  } else if (call->node_rows > 0) {
    g.out.reserve(g.node, bytes);
    if (g.node_rank == 0) write_outputs();
    MPI_Request request = MPI_REQUEST_NULL;
    TANDEM_MPI_CHECK(MPI_Ibarrier(g.node, &request));
    detail::settle(request, call->backoff);
    g.out.sync();
  }
  const std::int64_t mine = call->rows[static_cast<std::size_t>(g.node_rank)];
  TensorList result;
  for (const detail::OutputLayout& o : outs) {
    std::vector<std::int64_t> shape{mine};
    shape.insert(shape.end(), o.row_shape.begin(), o.row_shape.end());
    Tensor t = Tensor::zeros(o.dtype, shape);
    if (t.nbytes() > 0) {
      std::memcpy(t.data(),
                  g.out.base() + o.offset + o.row_bytes * static_cast<std::size_t>(call->first_row),
                  t.nbytes());
    }
    result.push_back({o.name, std::move(t)});
  }
  return result;
}

}  // namespace tandem
