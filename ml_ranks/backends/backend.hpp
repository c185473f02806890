#pragma once
// A model backend: what a replica runs on each batch. Small on purpose, so
// that new kinds (an HTTP model server, a remote endpoint) fit behind it.

#include <functional>
#include <memory>
#include <string>

#include "config/workflow.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail {

/// Where a backend runs: for files it leaves (a model server's output).
struct BackendContext {
  std::string run_dir;
  int replica = 0;
  int replica_rank = 0;
  int service = -1;  // index in the workflow, for the trace
};

class Backend {
 public:
  virtual ~Backend() = default;
  /// Called often between batches: health checks, restarts. Cheap when
  /// there is nothing to do.
  virtual void tick() {}
  /// Why the backend can no longer serve (e.g. a model server that died
  /// more often than allowed); empty while it can.
  virtual std::string failure() const { return {}; }

  /// Backends that keep many requests in flight (remote endpoints) are
  /// asynchronous: the leader submits each request as it comes, unbatched,
  /// and progress() runs @p done for those that finished.
  using Done = std::function<void(TensorList&& outputs, std::string error)>;
  virtual bool asynchronous() const { return false; }
  // The callbacks go by value: asynchronous backends keep them until the
  // answer comes; these defaults merely call them.
  virtual void submit(const TensorList& inputs,
                      Done done) {  // NOLINT(performance-unnecessary-value-param)
    done(infer(inputs), {});
  }
  /// Returns how many finished; waits up to @p wait_ms for the network.
  virtual int progress(int /*wait_ms*/) { return 0; }
  virtual std::size_t pending() const { return 0; }

  /// JSON calls (OpenAI-style endpoints): POST @p body to @p path; @p done
  /// gets the answer's JSON text, or an error.
  using CallDone = std::function<void(std::string&& answer, std::string error)>;
  virtual bool takes_calls() const { return false; }
  virtual void call(const std::string& /*path*/, const std::string& /*body*/,
                    CallDone done) {  // NOLINT(performance-unnecessary-value-param)
    done({}, "this service takes tensors through infer(), not JSON calls");
  }
  /// Runs one batch. @p inputs are in the order of the service's signature
  /// (or as sent, for services without one) with the batch along dimension
  /// 0; the outputs must have the same number of rows. Throws on failure.
  virtual TensorList infer(const TensorList& inputs) = 0;
};

// The backends of this folder; serving/make_backend.cpp chooses among them
// and the bridge's. Each loads its model here and @throws tandem::error with
// the reason when it cannot.

/// echo, scale and sleep: the built-in test models (builtin_backends.cpp).
std::unique_ptr<Backend> make_builtin_backend(const ServiceSpec& spec);
/// torchscript: loads the plugin libtandem_torch.so, then the model.
std::unique_ptr<Backend> load_torchscript_backend(const ServiceSpec& spec);
/// replay: answers from a recorded run (replay_backend.cpp).
std::unique_ptr<Backend> make_replay_backend(const ServiceSpec& spec);
/// process: an HTTP model server started on this rank's node (process_backend.cpp).
std::unique_ptr<Backend> make_process_backend(const ServiceSpec& spec,
                                              const BackendContext& context);

}  // namespace tandem::detail

/// The entry point of the TorchScript plugin (libtandem_torch.so), which is
/// loaded only by ranks that serve a torchscript service: libtorch costs
/// most of a second of start-up that other ranks need not pay.
extern "C" tandem::detail::Backend* tandem_make_torchscript_backend(
    const tandem::detail::ServiceSpec* spec, char* error, int error_size);
