#include "client/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>

#include "base/mpi_check.hpp"
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

// Text from @p root to every rank of @p comm.
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

// Every rank learns whether any rank of @p comm has an error; if one has,
// all throw the lowest such rank's, naming it.
void raise_if_any(MPI_Comm comm, const std::string& service, const std::string& mine,
                  const std::string& what) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  int failing = mine.empty() ? INT_MAX : rank;
  TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &failing, 1, MPI_INT, MPI_MIN, comm));
  if (failing == INT_MAX) return;
  const std::string why = broadcast_text(comm, failing, mine);
  throw request_error(
      service, fmt::format("infer_all to service '{}': {} {}: {}", service, what, failing, why));
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

  // Nothing is sent before every rank knows its inputs fit.
  detail::raise_if_any(g.comm, service, detail::check_inputs(spec, inputs), "rank");
  long long digests[2] = {detail::layout_digest(inputs), -detail::layout_digest(inputs)};
  TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, digests, 2, MPI_LONG_LONG, MPI_MIN, g.comm));
  if (digests[0] != -digests[1]) {
    throw request_error(service, fmt::format("infer_all to service '{}': the ranks disagree on "
                                             "the inputs' names, dtypes or non-batch dimensions "
                                             "(this rank has {})",
                                             service, inputs[0].tensor.describe()));
  }

  auto call = std::make_shared<CollectiveCall>();
  call->group = &g;
  call->service = service;
  const std::int64_t my_rows = inputs[0].tensor.shape()[0];
  call->rows.resize(static_cast<std::size_t>(g.node_size));
  TANDEM_MPI_CHECK(
      MPI_Allgather(&my_rows, 1, MPI_INT64_T, call->rows.data(), 1, MPI_INT64_T, g.node));
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
  TANDEM_MPI_CHECK(MPI_Barrier(g.node));
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
        call->request_rows.push_back(n);
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

  // The leader gathers its requests' outputs, in row order.
  std::vector<TensorList> parts;
  std::string error = call->send_error;
  if (g.node_rank == 0) {
    for (InferHandle& h : call->requests) {
      try {
        parts.push_back(h.wait());
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
      }
    }
  }
  const std::string text = detail::broadcast_text(
      g.node, 0,
      g.node_rank == 0
          ? detail::describe_outputs(error, parts.empty() ? call->empty_outputs : parts[0])
          : "");
  std::vector<detail::OutputLayout> outs;
  const std::string node_error = detail::read_outputs(text, outs);
  // Every rank of the communicator fails alike, naming the node's leader.
  detail::raise_if_any(g.comm, call->service, g.node_rank == 0 ? node_error : "",
                       "the request of the node whose ranks include rank");

  std::size_t bytes = 0;
  for (detail::OutputLayout& o : outs) {
    o.offset = bytes;
    bytes += detail::aligned(o.row_bytes * static_cast<std::size_t>(call->node_rows));
  }
  g.out.reserve(g.node, bytes);
  if (g.node_rank == 0) {
    for (std::size_t k = 0; k < outs.size(); ++k) {
      std::size_t at = outs[k].offset;
      for (const TensorList& part : parts) {
        const Tensor& t = part[k].tensor;
        std::memcpy(g.out.base() + at, t.data(), t.nbytes());
        at += t.nbytes();
      }
    }
  }
  g.out.sync();
  TANDEM_MPI_CHECK(MPI_Barrier(g.node));
  g.out.sync();
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
