#pragma once
/// @file error.hpp
/// Tandem's one exception family. Every error Tandem throws derives from
/// tandem::error, which derives from std::runtime_error, so one catch clause
/// handles them all; the subclasses carry the data a caller may act on.

#include <stdexcept>
#include <string>

namespace tandem {

/// Base of every exception Tandem throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
  mpi_error(int code, const std::string& what) : error(what), code_(code) {}
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
      : error(what), service_(std::move(service)) {}
  /// The service the request was for.
  const std::string& service() const noexcept { return service_; }

 private:
  std::string service_;
};

/// A request that could not be sent because of its service: unknown to
/// the workflow, FAILED, not READY in time, or stopping. Waiting or fixing
/// the name helps; changing the inputs does not.
class service_error : public request_error {
 public:
  using request_error::request_error;
};

/// A message that broke the protocol: a reply or frame that cannot be read,
/// a length that cannot be right. The connection it came on is not used
/// again.
class protocol_error : public error {
 public:
  using error::error;
};

/// A file Tandem had to read or write and could not: the message names the
/// file, what was being done and the cause (a full disk, no permission).
class io_error : public error {
 public:
  io_error(std::string path, const std::string& what) : error(what), path_(std::move(path)) {}
  /// The file or directory at fault.
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// A task that failed; thrown by user task functions to fail with a reason
/// (any std::exception does the same, this one just says so plainly).
class task_error : public error {
 public:
  using error::error;
};

}  // namespace tandem
