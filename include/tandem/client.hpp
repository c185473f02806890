#pragma once
/// @file client.hpp
/// The client of the job's services: inference requests as MPI messages,
/// sent straight to a replica of the service, never through the
/// coordinator. A Client is given to you: `ctx.client()` in a function task,
/// `session.client()` in SPMD mode. Not thread-safe: use it from one thread.

#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include <tandem/tensor.hpp>
#include <tandem/transport.hpp>

namespace tandem {

namespace detail {
class ClientImpl;
struct PendingInfer;
struct CollectiveCall;
struct Access;
}  // namespace detail

/// Per-request choices.
struct InferOptions {
  Transport transport = Transport::automatic;
  /// The model version to run; 0 (the default): the one the service's
  /// policy serves. A version that is not loaded is an error.
  int version = 0;
  /// How long the answer is of use, in milliseconds from the call; 0 (the
  /// default): the service's `deadline_ms`, or no deadline. A replica drops
  /// a request it cannot answer in time without computing it, and the
  /// client stops waiting at the deadline: either way the request fails
  /// with tandem::deadline_error, unless the service has a `fallback`,
  /// which then answers (InferHandle::source() names it).
  double deadline_ms = 0;
};

/// A request in flight, from Client::infer_async.
class InferHandle {
 public:
  InferHandle() = default;
  /// True once the reply is here (makes progress; never blocks).
  bool test();
  /// Waits for the reply and returns the outputs.
  /// @throws tandem::request_error with the service's reason on failure.
  TensorList wait();
  /// False for a default-constructed handle.
  bool valid() const noexcept { return pending_ != nullptr; }
  /// The model version that computed the reply; 0 before it arrived or
  /// when it failed.
  int model_version() const noexcept;
  /// The service that answered: the one asked, or its `fallback` when the
  /// one asked missed the deadline or had no replica to serve. Empty
  /// before the reply arrived or when it failed.
  std::string source() const;

 private:
  friend class Client;
  std::shared_ptr<detail::ClientImpl> client_;
  std::shared_ptr<detail::PendingInfer> pending_;
};

/// A reply with the model version that computed it.
struct InferResult {
  TensorList outputs;
  int model_version = 0;
  std::string source;  // the service that answered (InferHandle::source())
};

/// A JSON call in flight, from Client::call_async.
class CallHandle {
 public:
  CallHandle() = default;
  /// True once the answer is here (makes progress; never blocks).
  bool test();
  /// Waits for the answer: the endpoint's JSON text.
  /// @throws tandem::request_error with the service's reason on failure.
  std::string wait();
  bool valid() const noexcept { return pending_ != nullptr; }

 private:
  friend class Client;
  std::shared_ptr<detail::ClientImpl> client_;
  std::shared_ptr<detail::PendingInfer> pending_;
};

/// A collective request in flight, from Client::infer_all_async.
class CollectiveHandle {
 public:
  CollectiveHandle() = default;
  /// Waits for this rank's rows of every output. Collective: every rank of
  /// the call's communicator calls it.
  /// @throws tandem::request_error, the same on every rank of the
  /// communicator, naming the rank or node that failed and why.
  TensorList wait();
  /// False for a default-constructed handle, and once wait() has run.
  bool valid() const noexcept { return call_ != nullptr; }

 private:
  friend class Client;
  std::shared_ptr<detail::CollectiveCall> call_;
};

/// Sends inference requests to the job's services.
class Client {
 public:
  /// The services of this job, in workflow order.
  std::vector<std::string> services() const;
  /// "STARTING", "READY", "DRAINING", "STOPPED" or "FAILED" as last heard.
  /// @throws tandem::request_error for an unknown service.
  std::string state(const std::string& service);
  /// Waits until @p service is READY (some replica has loaded its model).
  /// @throws tandem::request_error at once if it FAILED, or after
  /// @p timeout_s seconds, or for an unknown service.
  void wait_ready(const std::string& service, double timeout_s = 300);
  /// How long infer(), infer_async() and call() wait for a service that is
  /// still STARTING (loading its model) before they fail: @p timeout_s
  /// seconds, or, when negative (the default), the service's
  /// `start_timeout` (600 s unless the workflow says). A FAILED or unknown
  /// service fails at once either way. Not thread-safe.
  void set_ready_timeout(double timeout_s);
  /// Asks for @p replicas replicas of the elastic service @p service
  /// (`replicas = { min, max }`) from now on: the coordinator turns idle
  /// workers into replicas, or replicas back into workers, one move at a
  /// time, and holds that count until the next call. Returns at once.
  /// @throws tandem::request_error for a service of fixed size, a count
  /// outside its min and max, or a client outside `tandem run`.
  void scale(const std::string& service, int replicas);

  /// Runs the model on @p inputs (named as in the service's signature; the
  /// first dimension is the batch) and returns its outputs. Blocks.
  /// @throws tandem::request_error saying what was wrong.
  TensorList infer(const std::string& service, const TensorList& inputs,
                   const InferOptions& options = {});
  /// For services with one input and one output: the output alone.
  Tensor infer(const std::string& service, const Tensor& input);
  /// As infer(), with the model version that computed the outputs.
  InferResult infer_versioned(const std::string& service, const TensorList& inputs,
                              const InferOptions& options = {});
  /// Sends the request and returns at once; the inputs are copied, so they
  /// may change or go away after this returns.
  /// @throws tandem::request_error if the request cannot be sent.
  InferHandle infer_async(const std::string& service, const TensorList& inputs,
                          const InferOptions& options = {});

  /// Collective inference: every rank of @p comm calls this with its own
  /// rows (any number, 0 included; the other dimensions, dtypes and names
  /// the same on every rank) and gets back its own rows of every output.
  /// The ranks of @p comm on one node write their rows into one node-local
  /// shared buffer and one of them sends one request for all of them to a
  /// replica (its own node's where there is one); nodes do not wait for
  /// each other's requests. Rows past the service's `max_batch` go in
  /// several requests. Every rank of @p comm must call it, in the same
  /// order as its other collectives on @p comm, and one collective call may
  /// be in flight per communicator.
  /// @throws tandem::request_error, the same on every rank: a rank whose
  /// inputs do not fit the service's signature (found before anything is
  /// sent), a FAILED service, a model error, a lost replica.
  TensorList infer_all(MPI_Comm comm, const std::string& service, const TensorList& inputs,
                       const InferOptions& options = {});
  /// The same, returning once the requests are sent, so that the model
  /// runs while the ranks exchange halos; CollectiveHandle::wait() (also
  /// collective) gives the outputs. The inputs may change once this
  /// returns.
  CollectiveHandle infer_all_async(MPI_Comm comm, const std::string& service,
                                   const TensorList& inputs, const InferOptions& options = {});

  /// Loads the TorchScript file @p path as model version @p version of
  /// @p service on every replica (each rank of a multi-rank replica loads
  /// it; the replicas go on serving meanwhile) and returns once all have
  /// it, with the version the service now serves: @p version under the
  /// "latest" policy when it is the newest, the pinned one otherwise.
  /// A relative @p path is taken from this process's working directory.
  /// @throws tandem::request_error naming each replica that could not load
  /// it and why (missing or corrupt file, wrong signature); those replicas
  /// go on serving the version they had.
  int load_model(const std::string& service, const std::string& path, int version);
  /// Drops model version @p version from every replica of @p service and
  /// returns the version served now. @throws tandem::request_error for a
  /// version that is not loaded, the pinned one, or the only one loaded.
  int unload_model(const std::string& service, int version);

  /// For OpenAI-style services (`protocol = "openai"`): POSTs @p json_body
  /// to @p path of the endpoint and returns its JSON answer. Blocks.
  /// @throws tandem::request_error naming the service, endpoint and cause.
  std::string call(const std::string& service, const std::string& json_body,
                   const std::string& path = "/v1/chat/completions");
  /// The same, returning at once.
  CallHandle call_async(const std::string& service, const std::string& json_body,
                        const std::string& path = "/v1/chat/completions");

 private:
  friend struct detail::Access;
  explicit Client(std::shared_ptr<detail::ClientImpl> impl) : impl_(std::move(impl)) {}

  std::shared_ptr<detail::ClientImpl> impl_;
};

}  // namespace tandem
