#pragma once
/// @file session.hpp
/// SPMD mode: an existing MPI application adds a few lines and gets the
/// job's services.
///
/// @code
/// MPI_Init(&argc, &argv);
/// {
///   tandem::Session session(MPI_COMM_WORLD, "job.toml");
///   if (session.is_app()) {
///     MPI_Comm comm = session.app_comm();     // use instead of MPI_COMM_WORLD
///     session.client().wait_ready("surrogate");
///     auto y = session.client().infer("surrogate", x);
///   }
///   session.finalize();                       // services drain and stop
/// }
/// MPI_Finalize();
/// @endcode
///
/// Rank 0 coordinates the services and the ranks that the layout gives to
/// services serve; on those ranks the constructor returns only when the
/// application has finished (is_app() is false). The other ranks are the
/// application's, numbered in order in app_comm().

#include <mpi.h>

#include <memory>
#include <string>

#include <tandem/client.hpp>

namespace tandem {

namespace detail {
struct SessionImpl;
}

struct SessionOptions {
  /// The run directory (logs, summary.json); empty: a new one under run_root.
  std::string run_dir;
  /// Overrides `[job] run_root` when not empty.
  std::string run_root;
  /// Log level on stderr: trace, debug, info, warn, error, off.
  std::string log_level = "warn";
};

class Session {
 public:
  /// Starts the session. Collective over @p comm (which is duplicated, never
  /// used directly). MPI must be initialised; Tandem does not finalise it.
  /// @throws tandem::config_error for a bad workflow file (on every rank),
  /// tandem::error if the session cannot start.
  Session(MPI_Comm comm, const std::string& workflow_file, const SessionOptions& options = {});
  /// Calls finalize() if it has not been called; never throws. A session
  /// may outlive MPI_Finalize (held in a std::optional in main): after it,
  /// the destructor leaves MPI alone.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// True on the application's ranks.
  bool is_app() const noexcept;
  /// The application's communicator (MPI_COMM_NULL on other ranks).
  MPI_Comm app_comm() const noexcept;
  /// The client of the job's services. @throws tandem::argument_error on ranks that
  /// are not the application's.
  Client& client();
  /// The run directory.
  const std::string& run_dir() const noexcept;
  /// Waits for this rank's requests in flight; when every application rank
  /// has called it, the services answer what they hold and stop. Collective
  /// over the application's ranks; a no-op elsewhere and when called again.
  /// @p exit_code is how this rank's part of the application ended: the
  /// largest any rank gives is the run's `exit_code` in summary.json, which
  /// `tandem report` shows.
  void finalize(int exit_code = 0);
  /// Ends the whole job now, from one rank, when the application cannot go
  /// on (the others may be waiting for it in a collective, where finalize
  /// would hang): records @p why and this rank in RUN_DIR/aborts.jsonl
  /// (`tandem report` shows it), logs it, and calls MPI_Abort on the
  /// session's communicator with @p exit_code (1 if it is 0). Not
  /// collective; never returns.
  [[noreturn]] void abort(int exit_code, const std::string& why) noexcept;

 private:
  std::unique_ptr<detail::SessionImpl> impl_;
};

}  // namespace tandem
