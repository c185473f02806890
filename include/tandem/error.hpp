#pragma once
/// @file error.hpp
/// Tandem's one exception family. Every error Tandem throws derives from
/// tandem::error, which derives from std::runtime_error, so one catch clause
/// handles them all; the subclasses carry the data a caller may act on.
///
/// Each class also carries how it is reported outside C++ (CLI11's habit):
/// status(), the C API's tandem_status (tandem.h) and so Python's exception
/// class, and exit_code(), the code a `tandem` process ends with when the
/// error stops it. Nothing maps classes to codes by hand.

#include <stdexcept>
#include <string>
#include <utility>

namespace tandem {

/// The C API's status codes (tandem_status in tandem.h), for status().
namespace status {
inline constexpr int argument = 1;
inline constexpr int connect = 2;
inline constexpr int service = 3;
inline constexpr int request = 4;
inline constexpr int protocol = 5;
inline constexpr int mpi = 6;
inline constexpr int internal = 7;
inline constexpr int config = 8;
inline constexpr int io = 9;
inline constexpr int deadline = 10;
}  // namespace status

/// Base of every exception Tandem throws. Thrown as itself only for what
/// fits no subclass: a fault of Tandem's own (status internal).
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : error(what, status::internal) {}
  /// The C API's status for this error (tandem_status).
  int status() const noexcept { return status_; }
  /// What a process stopped by this error exits with: 1 for a task that
  /// failed, 2 for everything else (the job could not start or go on as
  /// asked; docs/when-things-go-wrong.md).
  int exit_code() const noexcept { return exit_code_; }

 protected:
  error(const std::string& what, int status, int exit_code = 2)
      : std::runtime_error(what), status_(status), exit_code_(exit_code) {}

 private:
  int status_;
  int exit_code_;
};

/// A caller's mistake: a null pointer, a tensor read as another dtype,
/// values that do not fill a shape, a name that is not there, a call made
/// on the wrong kind of rank. Fixing the call helps; retrying does not.
class argument_error : public error {
 public:
  explicit argument_error(const std::string& what) : error(what, status::argument) {}
};

/// Something the job needs from its machine is missing or unusable: a
/// plugin (Python, libtorch), an environment variable, a free local port,
/// a library that cannot start. The message names it and what to do.
class environment_error : public error {
 public:
  explicit environment_error(const std::string& what) : error(what, status::internal) {}
};

/// A model that failed to load or to compute, or answered what its
/// signature does not allow. Raised on the serving rank; a client sees it
/// as a request_error with the same message.
class model_error : public error {
 public:
  explicit model_error(const std::string& what) : error(what, status::request) {}
};

/// A workflow file that cannot be used: it names the file, the line and
/// column (1-based, 0 when unknown) and the dotted key at fault.
class config_error : public error {
 public:
  config_error(std::string file, int line, int column, std::string key, const std::string& what);

  const std::string& file() const noexcept { return file_; }
  int line() const noexcept { return line_; }
  int column() const noexcept { return column_; }
  /// The dotted key at fault, such as "task[2].after"; empty for the file.
  const std::string& key() const noexcept { return key_; }
  /// The message without the location prefix.
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string reason_;
};

/// An MPI call that returned an error code.
class mpi_error : public error {
 public:
  mpi_error(int code, const std::string& what) : error(what, status::mpi), code_(code) {}
  /// The MPI error code.
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// An inference request that could not be answered: unknown service, a
/// service that is not READY or FAILED, inputs the service does not take, a
/// model that failed. The message says which and why.
class request_error : public error {
 public:
  request_error(std::string service, const std::string& what)
      : request_error(std::move(service), what, status::request) {}
  /// The service the request was for.
  const std::string& service() const noexcept { return service_; }

 protected:
  request_error(std::string service, const std::string& what, int status)
      : error(what, status), service_(std::move(service)) {}

 private:
  std::string service_;
};

/// A request that could not be sent because of its service: unknown to
/// the workflow, FAILED, not READY in time, or stopping. Waiting or fixing
/// the name helps; changing the inputs does not.
class service_error : public request_error {
 public:
  service_error(std::string service, const std::string& what)
      : request_error(std::move(service), what, status::service) {}
};

/// A request that was not answered before its deadline (InferOptions::
/// deadline_ms or the service's `deadline_ms`): the replica dropped it
/// without computing it, or the client stopped waiting. Retrying later, a
/// longer deadline or a `fallback` helps.
class deadline_error : public request_error {
 public:
  deadline_error(std::string service, const std::string& what)
      : request_error(std::move(service), what, status::deadline) {}
};

/// A message that broke the protocol: a reply or frame that cannot be read,
/// a length that cannot be right. The connection it came on is not used
/// again.
class protocol_error : public error {
 public:
  explicit protocol_error(const std::string& what) : error(what, status::protocol) {}
};

/// A file Tandem had to read or write and could not: the message names the
/// file, what was being done and the cause (a full disk, no permission).
class io_error : public error {
 public:
  io_error(std::string path, const std::string& what)
      : io_error(std::move(path), what, status::io) {}
  /// The file or directory at fault.
  const std::string& path() const noexcept { return path_; }

 protected:
  io_error(std::string path, const std::string& what, int status)
      : error(what, status), path_(std::move(path)) {}

 private:
  std::string path_;
};

/// A task that failed; thrown by user task functions to fail with a reason
/// (any std::exception does the same, this one just says so plainly).
class task_error : public error {
 public:
  explicit task_error(const std::string& what) : error(what, status::internal, 1) {}
};

}  // namespace tandem
