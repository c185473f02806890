#pragma once
/// @file fwd.hpp
/// Forward declarations of every public Tandem type, for headers that only
/// name them. tests/packaging/test_public_headers.sh checks that none is
/// missing.

#include <cstdint>
#include <vector>

namespace tandem {

// tandem/error.hpp
class error;
class config_error;
class mpi_error;
class request_error;
class service_error;
class deadline_error;
class protocol_error;
class io_error;
class task_error;
class argument_error;
class environment_error;
class model_error;

// tandem/tensor.hpp
enum class DType : std::uint8_t;
class Tensor;
struct NamedTensor;
using TensorList = std::vector<NamedTensor>;

// tandem/transport.hpp
enum class Transport : std::uint8_t;

// tandem/client.hpp
struct InferOptions;
class InferHandle;
struct InferResult;
class CallHandle;
class CollectiveHandle;
class Client;

// tandem/task.hpp
struct TaskRequest;
struct TaskResult;
class TaskContext;
using TaskFunction = void (*)(TaskContext&);

// tandem/pilot.hpp
struct RunOptions;

// tandem/session.hpp
struct SessionOptions;
class Session;

}  // namespace tandem
