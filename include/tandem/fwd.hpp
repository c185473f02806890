#pragma once
/// @file fwd.hpp
/// Forward declarations of Tandem's public types.

namespace tandem {
class error;
class config_error;
class mpi_error;
class task_error;
class request_error;
class TaskContext;
class Tensor;
class Client;
class InferHandle;
class Session;
}  // namespace tandem
