// The C API (include/tandem/tandem.h) over the C++ client: a connection to
// the worker's proxy for executable tasks, tandem::Session's client for MPI
// applications. Every entry point catches everything: C callers get a
// status and a message, never an exception.

#include "tandem/tandem.h"

#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/host.hpp"
#include "capi/proxy_client.hpp"
#include "capi/wrap_client.hpp"
#include "tandem/client.hpp"
#include "tandem/error.hpp"
#include "tandem/session.hpp"

using tandem::detail::capi::ProxyClient;
using tandem::detail::capi::Reply;

struct tandem_client {
  std::unique_ptr<ProxyClient> proxy;  // an executable task
  tandem::Client* direct = nullptr;    // an SPMD application (the session's)
};

struct tandem_tensor {
  tandem::Tensor tensor;
};

struct tandem_outputs {
  std::vector<std::string> names;
  std::vector<tandem_tensor> tensors;
  int model_version = 0;
  std::string source;  // the service that answered
};

struct tandem_request {
  tandem_client* client = nullptr;
  std::uint64_t id = 0;        // proxy
  tandem::InferHandle handle;  // direct
  tandem::CallHandle call;     // direct, a JSON call's
  bool is_call = false;
};

struct tandem_task_results {
  struct One {
    int64_t handle = 0;
    std::string task;
    int index = 0;
    std::string state;
    int exit_code = 0;
    std::string reason;
    std::string result;  // JSON text; empty for none
  };
  std::vector<One> list;
};

struct tandem_session {
  std::unique_ptr<tandem::Session> session;
  tandem_client client;
};

namespace {

thread_local std::string t_last_error;
// Where the last config error was (its file empty when it was another kind).
thread_local struct {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key;
  std::string reason;
} t_last_config;

tandem_status fail(tandem_status status, std::string why) {
  t_last_error = std::move(why);
  t_last_config.file.clear();
  return status;
}

// The family's status codes are tandem.h's.
static_assert(tandem::status::argument == TANDEM_ERR_ARGUMENT &&
              tandem::status::connect == TANDEM_ERR_CONNECT &&
              tandem::status::service == TANDEM_ERR_SERVICE &&
              tandem::status::request == TANDEM_ERR_REQUEST &&
              tandem::status::protocol == TANDEM_ERR_PROTOCOL &&
              tandem::status::mpi == TANDEM_ERR_MPI &&
              tandem::status::internal == TANDEM_ERR_INTERNAL &&
              tandem::status::config == TANDEM_ERR_CONFIG && tandem::status::io == TANDEM_ERR_IO &&
              tandem::status::deadline == TANDEM_ERR_DEADLINE);

// Runs @p body, turning exceptions into a status and a message: each
// error of the family says its own status.
template <typename F>
tandem_status guarded(F&& body) {
  try {
    return body();
  } catch (const tandem::config_error& e) {
    const tandem_status s = fail(TANDEM_ERR_CONFIG, e.what());
    t_last_config = {e.file(), e.line(), e.column(), e.key(), e.reason()};
    return s;
  } catch (const tandem::error& e) {
    return fail(static_cast<tandem_status>(e.status()), e.what());
  } catch (const std::exception& e) {
    return fail(TANDEM_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(TANDEM_ERR_INTERNAL, "an unknown exception");
  }
}

tandem::TensorList named_inputs(int n, const char* const* names, tandem_tensor* const* inputs) {
  if (n < 0 || (n > 0 && !inputs)) throw tandem::argument_error("bad input list");
  if (n > 1 && !names) throw tandem::argument_error("names may be NULL only for one input");
  tandem::TensorList list;
  for (int i = 0; i < n; ++i) {
    if (!inputs[i]) throw tandem::argument_error(fmt::format("input {} is null", i));
    // No name: the service's only input (resolved where the signature is).
    const char* name = names ? names[i] : "";
    if (!name) throw tandem::argument_error(fmt::format("the name of input {} is null", i));
    list.push_back({name, inputs[i]->tensor});
  }
  return list;
}

tandem_outputs* make_outputs(tandem::TensorList list, int model_version, std::string source = {}) {
  auto out = std::make_unique<tandem_outputs>();
  out->model_version = model_version;
  out->source = std::move(source);
  for (auto& t : list) {
    out->names.push_back(t.name);
    out->tensors.push_back(tandem_tensor{std::move(t.tensor)});
  }
  return out.release();
}

// Waits for a proxied reply and turns it into outputs or a status.
tandem_status take_reply(ProxyClient& proxy, std::uint64_t id, tandem_outputs** outputs,
                         std::string* answer = nullptr, int* model_version = nullptr) {
  Reply r = proxy.wait(id);
  if (!r.ok) {
    return fail(r.deadline_missed       ? TANDEM_ERR_DEADLINE
                : r.service_unavailable ? TANDEM_ERR_SERVICE
                                        : TANDEM_ERR_REQUEST,
                r.text);
  }
  if (answer) *answer = std::move(r.text);
  if (outputs) *outputs = make_outputs(std::move(r.outputs), r.model_version, r.source);
  if (model_version) *model_version = r.model_version;
  return TANDEM_OK;
}

tandem_status model_op(tandem_client* client, tandem::detail::wire::Kind kind, const char* service,
                       const char* path, int version, int* serving) {
  if (!client || !service || (kind == tandem::detail::wire::kLoadModel && !path)) {
    return fail(TANDEM_ERR_ARGUMENT, "null argument");
  }
  return guarded([&] {
    int now = 0;
    if (client->direct) {
      now = kind == tandem::detail::wire::kLoadModel
                ? client->direct->load_model(service, path, version)
                : client->direct->unload_model(service, version);
    } else {
      if (version < 1) {
        return fail(TANDEM_ERR_ARGUMENT,
                    fmt::format("model versions are numbers >= 1, not {}", version));
      }
      const int index = client->proxy->service_index(service);
      const tandem_status s = take_reply(
          *client->proxy, client->proxy->send_model_op(kind, index, path ? path : "", version),
          nullptr, nullptr, &now);
      if (s != TANDEM_OK) return s;
    }
    if (serving) *serving = now;
    return TANDEM_OK;
  });
}

}  // namespace

namespace tandem::detail::capi {

tandem_client* wrap_client(tandem::Client& client) {
  auto handle = std::make_unique<tandem_client>();
  handle->direct = &client;
  return handle.release();
}

}  // namespace tandem::detail::capi

extern "C" {

const char* tandem_last_error(void) {
  return t_last_error.c_str();
}

int tandem_last_config_error(const char** file, int* line, int* column, const char** key,
                             const char** reason) {
  if (t_last_config.file.empty()) return 0;
  if (file) *file = t_last_config.file.c_str();
  if (line) *line = t_last_config.line;
  if (column) *column = t_last_config.column;
  if (key) *key = t_last_config.key.c_str();
  if (reason) *reason = t_last_config.reason.c_str();
  return 1;
}

tandem_status tandem_session_app_comm(const tandem_session* session, void* comm) {
  if (!session || !session->session || !comm) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  *static_cast<MPI_Comm*>(comm) =
      session->session->is_app() ? session->session->app_comm() : MPI_COMM_NULL;
  return TANDEM_OK;
}

int32_t tandem_session_app_comm_f(const tandem_session* session) {
  MPI_Comm comm = MPI_COMM_NULL;
  tandem_session_app_comm(session, &comm);  // leaves MPI_COMM_NULL on a null session
  return MPI_Comm_c2f(comm);
}

const char* tandem_status_name(tandem_status status) {
  switch (status) {
    case TANDEM_OK:
      return "TANDEM_OK";
    case TANDEM_ERR_ARGUMENT:
      return "TANDEM_ERR_ARGUMENT";
    case TANDEM_ERR_CONNECT:
      return "TANDEM_ERR_CONNECT";
    case TANDEM_ERR_SERVICE:
      return "TANDEM_ERR_SERVICE";
    case TANDEM_ERR_REQUEST:
      return "TANDEM_ERR_REQUEST";
    case TANDEM_ERR_PROTOCOL:
      return "TANDEM_ERR_PROTOCOL";
    case TANDEM_ERR_MPI:
      return "TANDEM_ERR_MPI";
    case TANDEM_ERR_INTERNAL:
      return "TANDEM_ERR_INTERNAL";
    case TANDEM_ERR_CONFIG:
      return "TANDEM_ERR_CONFIG";
    case TANDEM_ERR_IO:
      return "TANDEM_ERR_IO";
    case TANDEM_ERR_DEADLINE:
      return "TANDEM_ERR_DEADLINE";
  }
  return "TANDEM_ERR_UNKNOWN";
}

// The ranks of an MPI command task may run on several nodes: each takes
// the proxy of a worker on its own node, from "host=path;host=path" in
// TANDEM_NODE_SOCKETS, and TANDEM_SOCKET (the lead worker's) elsewhere.
static std::string own_node_socket() {
  const char* list = std::getenv("TANDEM_NODE_SOCKETS");
  if (!list || !*list) return {};
  const std::string want = tandem::detail::node_name() + "=";
  std::string_view rest(list);
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find(';'), rest.size());
    const std::string_view entry = rest.substr(0, end);
    if (entry.starts_with(want)) return std::string(entry.substr(want.size()));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return {};
}

tandem_status tandem_connect(tandem_client** client) {
  const std::string own = own_node_socket();
  if (!own.empty()) return tandem_connect_to(own.c_str(), client);
  const char* path = std::getenv("TANDEM_SOCKET");
  if (!path || !*path) {
    return fail(TANDEM_ERR_CONNECT,
                "TANDEM_SOCKET is not set: tandem_connect() works in executable tasks that "
                "`tandem run` starts in a workflow with services (MPI applications use "
                "tandem_session_start)");
  }
  return tandem_connect_to(path, client);
}

tandem_status tandem_connect_to(const char* socket_path, tandem_client** client) {
  if (!socket_path || !client) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    auto c = std::make_unique<tandem_client>();
    c->proxy = std::make_unique<ProxyClient>(socket_path);
    *client = c.release();
    return TANDEM_OK;
  });
}

void tandem_disconnect(tandem_client* client) {
  if (client && client->proxy) delete client;
}

static tandem_status start_session(MPI_Comm comm, const char* workflow_file,
                                   tandem_session** session) {
  if (!workflow_file || !session) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return fail(TANDEM_ERR_MPI, "MPI is not initialised; call MPI_Init first");
  return guarded([&] {
    auto s = std::make_unique<tandem_session>();
    s->session = std::make_unique<tandem::Session>(comm, workflow_file);
    if (s->session->is_app()) s->client.direct = &s->session->client();
    *session = s.release();
    return TANDEM_OK;
  });
}

tandem_status tandem_session_start(const char* workflow_file, tandem_session** session) {
  return start_session(MPI_COMM_WORLD, workflow_file, session);
}

tandem_status tandem_session_start_comm(void* mpi_comm, const char* workflow_file,
                                        tandem_session** session) {
  if (!mpi_comm) return fail(TANDEM_ERR_ARGUMENT, "null communicator");
  return start_session(*static_cast<MPI_Comm*>(mpi_comm), workflow_file, session);
}

tandem_status tandem_session_start_f(int32_t mpi_fcomm, const char* workflow_file,
                                     tandem_session** session) {
  return start_session(MPI_Comm_f2c(mpi_fcomm), workflow_file, session);
}

int tandem_session_is_app(const tandem_session* session) {
  return session && session->session && session->session->is_app() ? 1 : 0;
}

const char* tandem_session_run_dir(const tandem_session* session) {
  return session && session->session ? session->session->run_dir().c_str() : "";
}

tandem_client* tandem_session_client(tandem_session* session) {
  return session && session->client.direct ? &session->client : nullptr;
}

tandem_status tandem_session_finalize(tandem_session* session) {
  return tandem_session_finalize_code(session, 0);
}

tandem_status tandem_session_finalize_code(tandem_session* session, int exit_code) {
  if (!session) return fail(TANDEM_ERR_ARGUMENT, "null session");
  std::unique_ptr<tandem_session> owned(session);
  return guarded([&] {
    owned->session->finalize(exit_code);
    return TANDEM_OK;
  });
}

void tandem_session_abort(tandem_session* session, int exit_code, const char* why) {
  const int code = exit_code != 0 ? exit_code : 1;
  if (!session || !session->session) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }
  session->session->abort(code, why ? why : "tandem_session_abort");
}

tandem_status tandem_wait_ready(tandem_client* client, const char* service, double timeout_s) {
  if (!client || !service) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    if (client->direct) {
      client->direct->wait_ready(service, timeout_s);
      return TANDEM_OK;
    }
    const int index = client->proxy->service_index(service);
    return take_reply(*client->proxy, client->proxy->send_wait_ready(index, timeout_s), nullptr);
  });
}

tandem_status tandem_scale(tandem_client* client, const char* service, int replicas) {
  if (!client || !service) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    if (client->direct) {
      client->direct->scale(service, replicas);
      return TANDEM_OK;
    }
    const int index = client->proxy->service_index(service);
    return take_reply(*client->proxy, client->proxy->send_scale(index, replicas), nullptr);
  });
}

tandem_status tandem_set_ready_timeout(tandem_client* client, double timeout_s) {
  if (!client) return fail(TANDEM_ERR_ARGUMENT, "null client");
  return guarded([&] {
    if (client->direct) {
      client->direct->set_ready_timeout(timeout_s);
    } else {
      client->proxy->set_ready_timeout(timeout_s);
    }
    return TANDEM_OK;
  });
}

tandem_status tandem_tensor_view(tandem_dtype dtype, int ndim, const int64_t* dims,
                                 tandem_order order, void* data, tandem_tensor** tensor) {
  if (!tensor || (ndim > 0 && !dims) || ndim < 0) return fail(TANDEM_ERR_ARGUMENT, "bad shape");
  if (dtype < TANDEM_BOOL || dtype > TANDEM_BYTES) {
    return fail(TANDEM_ERR_ARGUMENT, fmt::format("unknown dtype {}", static_cast<int>(dtype)));
  }
  std::vector<std::int64_t> shape(dims, dims + ndim);
  for (std::int64_t d : shape) {
    if (d < 0) return fail(TANDEM_ERR_ARGUMENT, "a dimension is negative");
  }
  if (order == TANDEM_COLUMN_MAJOR) std::reverse(shape.begin(), shape.end());
  std::int64_t count = 1;
  for (std::int64_t d : shape) count *= d;
  if (count > 0 && !data) return fail(TANDEM_ERR_ARGUMENT, "null data for a non-empty tensor");
  return guarded([&] {
    *tensor = new tandem_tensor{
        tandem::Tensor::view(static_cast<tandem::DType>(dtype), std::move(shape), data)};
    return TANDEM_OK;
  });
}

void tandem_tensor_free(tandem_tensor* tensor) {
  delete tensor;
}

tandem_dtype tandem_tensor_dtype(const tandem_tensor* tensor) {
  return tensor ? static_cast<tandem_dtype>(tensor->tensor.dtype()) : TANDEM_BOOL;
}

int tandem_tensor_ndim(const tandem_tensor* tensor) {
  return tensor ? static_cast<int>(tensor->tensor.shape().size()) : 0;
}

int64_t tandem_tensor_dim(const tandem_tensor* tensor, int i) {
  if (!tensor || i < 0 || i >= static_cast<int>(tensor->tensor.shape().size())) return -1;
  return tensor->tensor.shape()[i];
}

size_t tandem_tensor_nbytes(const tandem_tensor* tensor) {
  return tensor ? tensor->tensor.nbytes() : 0;
}

const void* tandem_tensor_data(const tandem_tensor* tensor) {
  return tensor ? tensor->tensor.data() : nullptr;
}

tandem_status tandem_tensor_copy_to(const tandem_tensor* tensor, void* dst, size_t nbytes) {
  if (!tensor || (!dst && nbytes > 0)) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  if (nbytes != tensor->tensor.nbytes()) {
    return fail(TANDEM_ERR_ARGUMENT,
                fmt::format("the tensor has {} bytes, not {}", tensor->tensor.nbytes(), nbytes));
  }
  if (nbytes > 0) std::memcpy(dst, tensor->tensor.data(), nbytes);
  return TANDEM_OK;
}

tandem_status tandem_infer(tandem_client* client, const char* service, int n_inputs,
                           const char* const* names, tandem_tensor* const* inputs,
                           tandem_outputs** outputs) {
  tandem_request* request = nullptr;
  const tandem_status s = tandem_infer_async(client, service, n_inputs, names, inputs, &request);
  if (s != TANDEM_OK) return s;
  return tandem_wait(request, outputs);
}

tandem_status tandem_infer_async(tandem_client* client, const char* service, int n_inputs,
                                 const char* const* names, tandem_tensor* const* inputs,
                                 tandem_request** request) {
  return tandem_infer_async_opts(client, service, n_inputs, names, inputs, nullptr, request);
}

tandem_status tandem_infer_async_opts(tandem_client* client, const char* service, int n_inputs,
                                      const char* const* names, tandem_tensor* const* inputs,
                                      const tandem_infer_options* options,
                                      tandem_request** request) {
  if (!client || !service || !request) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  tandem::InferOptions opts;
  if (options) {
    const int t = static_cast<int>(options->transport);
    if (t < TANDEM_TRANSPORT_AUTO || t > TANDEM_TRANSPORT_HDF5) {
      return fail(
          TANDEM_ERR_ARGUMENT,
          fmt::format("transport {} is none of TANDEM_TRANSPORT_AUTO, _INLINE, _SHM, _HDF5", t));
    }
    if (options->version < 0) {
      return fail(TANDEM_ERR_ARGUMENT,
                  fmt::format("model versions are numbers >= 1 (0: the service's policy), not {}",
                              options->version));
    }
    if (!(options->deadline_ms >= 0)) {
      return fail(TANDEM_ERR_ARGUMENT,
                  fmt::format("deadline_ms is {}: a time in milliseconds, or 0 for the "
                              "service's own",
                              options->deadline_ms));
    }
    opts.deadline_ms = options->deadline_ms;
    opts.version = options->version;
    opts.transport = t == TANDEM_TRANSPORT_AUTO ? tandem::Transport::automatic
                                                : static_cast<tandem::Transport>(t);
  }
  tandem::TensorList list;
  try {
    list = named_inputs(n_inputs, names, inputs);
  } catch (const std::exception& e) {
    return fail(TANDEM_ERR_ARGUMENT, e.what());
  }
  return guarded([&] {
    auto r = std::make_unique<tandem_request>();
    r->client = client;
    if (client->direct) {
      r->handle = client->direct->infer_async(service, list, opts);
    } else {
      r->id = client->proxy->send_infer(client->proxy->service_index(service), list, opts.version,
                                        opts.transport, opts.deadline_ms);
    }
    *request = r.release();
    return TANDEM_OK;
  });
}

struct tandem_collective {
  tandem::CollectiveHandle handle;
};

tandem_status tandem_infer_all_async(tandem_client* client, void* mpi_comm, const char* service,
                                     int n_inputs, const char* const* names,
                                     tandem_tensor* const* inputs, tandem_collective** call) {
  if (!client || !mpi_comm || !service || !call) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  if (!client->direct) {
    return fail(TANDEM_ERR_ARGUMENT,
                "infer_all needs a session's client (an MPI application): an executable task's "
                "ranks reach the services through their worker's proxy one by one");
  }
  return guarded([&] {  // a bad input list is an argument_error: TANDEM_ERR_ARGUMENT
    const tandem::TensorList list = named_inputs(n_inputs, names, inputs);
    auto c = std::make_unique<tandem_collective>();
    c->handle = client->direct->infer_all_async(*static_cast<MPI_Comm*>(mpi_comm), service, list);
    *call = c.release();
    return TANDEM_OK;
  });
}

tandem_status tandem_infer_all_async_f(tandem_client* client, int32_t mpi_fcomm,
                                       const char* service, int n_inputs, const char* const* names,
                                       tandem_tensor* const* inputs, tandem_collective** call) {
  MPI_Comm comm = MPI_Comm_f2c(mpi_fcomm);
  return tandem_infer_all_async(client, &comm, service, n_inputs, names, inputs, call);
}

tandem_status tandem_collective_wait(tandem_collective* call, tandem_outputs** outputs) {
  if (!call) return fail(TANDEM_ERR_ARGUMENT, "null call");
  std::unique_ptr<tandem_collective> owned(call);
  return guarded([&] {
    tandem::TensorList out = owned->handle.wait();
    if (outputs) *outputs = make_outputs(std::move(out), 0);
    return TANDEM_OK;
  });
}

tandem_status tandem_infer_all(tandem_client* client, void* mpi_comm, const char* service,
                               int n_inputs, const char* const* names, tandem_tensor* const* inputs,
                               tandem_outputs** outputs) {
  tandem_collective* call = nullptr;
  const tandem_status s =
      tandem_infer_all_async(client, mpi_comm, service, n_inputs, names, inputs, &call);
  if (s != TANDEM_OK) return s;
  return tandem_collective_wait(call, outputs);
}

tandem_status tandem_infer_all_f(tandem_client* client, int32_t mpi_fcomm, const char* service,
                                 int n_inputs, const char* const* names,
                                 tandem_tensor* const* inputs, tandem_outputs** outputs) {
  tandem_collective* call = nullptr;
  const tandem_status s =
      tandem_infer_all_async_f(client, mpi_fcomm, service, n_inputs, names, inputs, &call);
  if (s != TANDEM_OK) return s;
  return tandem_collective_wait(call, outputs);
}

tandem_status tandem_test(tandem_request* request, int* done) {
  if (!request || !done) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    if (!request->client->direct) {
      *done = request->client->proxy->arrived(request->id);
    } else {
      *done = request->is_call ? request->call.test() : request->handle.test();
    }
    return TANDEM_OK;
  });
}

tandem_status tandem_wait(tandem_request* request, tandem_outputs** outputs) {
  if (!request) return fail(TANDEM_ERR_ARGUMENT, "null request");
  if (request->is_call) {
    tandem_request_free(request);
    return fail(TANDEM_ERR_ARGUMENT,
                "this request is a JSON call: take it with tandem_wait_answer");
  }
  std::unique_ptr<tandem_request> owned(request);
  return guarded([&] {
    if (owned->client->direct) {
      tandem::TensorList out = owned->handle.wait();
      if (outputs) {
        *outputs =
            make_outputs(std::move(out), owned->handle.model_version(), owned->handle.source());
      }
      return TANDEM_OK;
    }
    tandem_outputs* dummy = nullptr;
    const tandem_status s =
        take_reply(*owned->client->proxy, owned->id, outputs ? outputs : &dummy);
    if (!outputs) tandem_outputs_free(dummy);
    return s;
  });
}

void tandem_request_free(tandem_request* request) {
  if (!request) return;
  std::unique_ptr<tandem_request> owned(request);
  try {
    if (!owned->client->direct) owned->client->proxy->abandon(owned->id);
  } catch (...) {
  }
}

int tandem_outputs_count(const tandem_outputs* outputs) {
  return outputs ? static_cast<int>(outputs->tensors.size()) : 0;
}

const char* tandem_outputs_name(const tandem_outputs* outputs, int i) {
  if (!outputs || i < 0 || i >= tandem_outputs_count(outputs)) return nullptr;
  return outputs->names[i].c_str();
}

const tandem_tensor* tandem_outputs_tensor(const tandem_outputs* outputs, int i) {
  if (!outputs || i < 0 || i >= tandem_outputs_count(outputs)) return nullptr;
  return &outputs->tensors[i];
}

const tandem_tensor* tandem_outputs_find(const tandem_outputs* outputs, const char* name) {
  if (!outputs || !name) {
    fail(TANDEM_ERR_ARGUMENT, "tandem_outputs_find: null argument");
    return nullptr;
  }
  for (std::size_t i = 0; i < outputs->names.size(); ++i) {
    if (outputs->names[i] == name) return &outputs->tensors[i];
  }
  fail(TANDEM_ERR_ARGUMENT,
       fmt::format("no output '{}' (have: {})", name, fmt::join(outputs->names, ", ")));
  return nullptr;
}

void tandem_outputs_free(tandem_outputs* outputs) {
  delete outputs;
}

int tandem_outputs_model_version(const tandem_outputs* outputs) {
  return outputs ? outputs->model_version : 0;
}

const char* tandem_outputs_source(const tandem_outputs* outputs) {
  return outputs ? outputs->source.c_str() : "";
}

tandem_status tandem_load_model(tandem_client* client, const char* service, const char* path,
                                int version, int* serving) {
  return model_op(client, tandem::detail::wire::kLoadModel, service, path, version, serving);
}

tandem_status tandem_unload_model(tandem_client* client, const char* service, int version,
                                  int* serving) {
  return model_op(client, tandem::detail::wire::kUnloadModel, service, nullptr, version, serving);
}

tandem_status tandem_call(tandem_client* client, const char* service, const char* path,
                          const char* body, char** answer) {
  if (!client || !service || !body || !answer) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  const std::string where = path ? path : "/v1/chat/completions";
  return guarded([&] {
    std::string text;
    if (client->direct) {
      text = client->direct->call(service, body, where);
    } else {
      const std::uint64_t id =
          client->proxy->send_call(client->proxy->service_index(service), where, body);
      const tandem_status s = take_reply(*client->proxy, id, nullptr, &text);
      if (s != TANDEM_OK) return s;
    }
    *answer = static_cast<char*>(std::malloc(text.size() + 1));
    std::memcpy(*answer, text.c_str(), text.size() + 1);
    return TANDEM_OK;
  });
}

tandem_status tandem_call_async(tandem_client* client, const char* service, const char* path,
                                const char* body, tandem_request** request) {
  if (!client || !service || !body || !request) {
    return fail(TANDEM_ERR_ARGUMENT, "null argument");
  }
  const std::string where = path ? path : "/v1/chat/completions";
  return guarded([&] {
    auto r = std::make_unique<tandem_request>();
    r->client = client;
    r->is_call = true;
    if (client->direct) {
      r->call = client->direct->call_async(service, body, where);
    } else {
      r->id = client->proxy->send_call(client->proxy->service_index(service), where, body);
    }
    *request = r.release();
    return TANDEM_OK;
  });
}

tandem_status tandem_wait_answer(tandem_request* request, char** answer) {
  if (!request || !answer) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  std::unique_ptr<tandem_request> owned(request);
  if (!owned->is_call) {
    return fail(TANDEM_ERR_ARGUMENT,
                "this request is an inference request: take it with tandem_wait");
  }
  return guarded([&] {
    std::string text;
    if (owned->client->direct) {
      text = owned->call.wait();
    } else {
      const tandem_status s = take_reply(*owned->client->proxy, owned->id, nullptr, &text);
      if (s != TANDEM_OK) return s;
    }
    *answer = static_cast<char*>(std::malloc(text.size() + 1));
    std::memcpy(*answer, text.c_str(), text.size() + 1);
    return TANDEM_OK;
  });
}

void tandem_free_string(char* s) {
  std::free(s);
}

}  // extern "C"

// --- adaptive workflows: a steering executable task's requests ----------

namespace {

// The coordinator's answer to a steering request, through the proxy; its
// {"error": ...} raised as an argument error.
nlohmann::json steer(tandem_client* client, const nlohmann::json& request) {
  if (!client->proxy) {
    throw tandem::argument_error(
        "only an executable task started by tandem run, with steering = true, submits tasks "
        "through the C API (a function task uses its TaskContext)");
  }
  std::string text;
  const tandem_status s =
      take_reply(*client->proxy, client->proxy->send_steer(request.dump()), nullptr, &text);
  if (s != TANDEM_OK) throw tandem::request_error("", t_last_error);
  nlohmann::json answer = nlohmann::json::parse(text);
  if (answer.contains("error")) throw tandem::argument_error(answer["error"].get<std::string>());
  return answer;
}

const tandem_task_results::One* result_at(const tandem_task_results* results, int i) {
  if (!results || i < 0 || i >= static_cast<int>(results->list.size())) {
    fail(TANDEM_ERR_ARGUMENT, fmt::format("no task result #{}", i));
    return nullptr;
  }
  return &results->list[static_cast<std::size_t>(i)];
}

}  // namespace

tandem_status tandem_steer(tandem_client* client, const char* request_json, char** answer_json) {
  if (!client || !request_json || !answer_json) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    const nlohmann::json request = nlohmann::json::parse(request_json, nullptr, false);
    if (!request.is_object()) {
      throw tandem::argument_error("tandem_steer: the request is not a JSON object");
    }
    const std::string text = steer(client, request).dump();
    *answer_json = static_cast<char*>(std::malloc(text.size() + 1));
    std::memcpy(*answer_json, text.c_str(), text.size() + 1);
    return TANDEM_OK;
  });
}

tandem_status tandem_submit_json(tandem_client* client, const char* requests_json, int64_t* handles,
                                 int capacity, int* count) {
  if (!client || !requests_json || (!handles && capacity > 0) || !count) {
    return fail(TANDEM_ERR_ARGUMENT, "null argument");
  }
  return guarded([&] {
    nlohmann::json requests = nlohmann::json::parse(requests_json, nullptr, false);
    if (!requests.is_array()) {
      throw tandem::argument_error("tandem_submit_json: the requests are not a JSON array");
    }
    if (static_cast<int>(requests.size()) > capacity) {
      throw tandem::argument_error(fmt::format(
          "tandem_submit_json: {} requests, room for {} handles", requests.size(), capacity));
    }
    const nlohmann::json answer = steer(client, {{"submit", std::move(requests)}});
    const auto got = answer.at("handles").get<std::vector<int64_t>>();
    std::copy(got.begin(), got.end(), handles);
    *count = static_cast<int>(got.size());
    return TANDEM_OK;
  });
}

tandem_status tandem_submit(tandem_client* client, const char* task, const char* args_json,
                            int64_t* handle) {
  if (!client || !task || !handle) return fail(TANDEM_ERR_ARGUMENT, "null argument");
  return guarded([&] {
    nlohmann::json args = nlohmann::json::object();
    if (args_json) args = nlohmann::json::parse(args_json, nullptr, false);
    if (!args.is_object()) {
      throw tandem::argument_error(
          fmt::format("tandem_submit: the args of a '{}' request are not a JSON object", task));
    }
    const nlohmann::json requests = nlohmann::json::array({{{"task", task}, {"args", args}}});
    const nlohmann::json answer = steer(client, {{"submit", requests}});
    *handle = answer.at("handles").at(0).get<int64_t>();
    return TANDEM_OK;
  });
}

tandem_status tandem_wait_tasks(tandem_client* client, int n, const int64_t* handles, int any,
                                tandem_task_results** results) {
  if (!client || n < 0 || (n > 0 && !handles) || !results) {
    return fail(TANDEM_ERR_ARGUMENT, "null argument");
  }
  return guarded([&] {
    const nlohmann::json answer =
        steer(client, {{"wait", std::vector<int64_t>(handles, handles + n)}, {"any", any != 0}});
    auto out = std::make_unique<tandem_task_results>();
    for (const nlohmann::json& j : answer.at("results")) {
      tandem_task_results::One r;
      r.handle = j.at("handle").get<int64_t>();
      r.task = j.at("task").get<std::string>();
      r.index = j.at("index").get<int>();
      r.state = j.at("state").get<std::string>();
      r.exit_code = j.value("exit_code", 0);
      r.reason = j.value("reason", std::string());
      if (j.contains("result")) r.result = j["result"].dump();
      out->list.push_back(std::move(r));
    }
    *results = out.release();
    return TANDEM_OK;
  });
}

int tandem_task_results_count(const tandem_task_results* results) {
  return results ? static_cast<int>(results->list.size()) : 0;
}

int64_t tandem_task_result_handle(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->handle : -1;
}

const char* tandem_task_result_task(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->task.c_str() : nullptr;
}

int tandem_task_result_index(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->index : -1;
}

const char* tandem_task_result_state(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->state.c_str() : nullptr;
}

int tandem_task_result_exit_code(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->exit_code : -1;
}

const char* tandem_task_result_reason(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r ? r->reason.c_str() : nullptr;
}

const char* tandem_task_result_json(const tandem_task_results* results, int i) {
  const auto* r = result_at(results, i);
  return r && !r->result.empty() ? r->result.c_str() : nullptr;
}

void tandem_task_results_free(tandem_task_results* results) {
  delete results;
}
