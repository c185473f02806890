// Function tasks for the tests, in a shared library that workflows load
// through [job] libraries: the same path a user's own tasks take.

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <tandem/tandem.hpp>

#include "proxy/echo_matrix.h"

// Writes "<index> <attempt>" to output_dir()/<name>.<index>.
TANDEM_TASK(test_record) {
  std::ofstream(ctx.output_dir() / (ctx.name() + "." + std::to_string(ctx.index())))
      << ctx.index() << " " << ctx.attempt() << " " << ctx.arg_string("tag", "-") << "\n";
}

// Fails on the first attempts, succeeds on attempt `succeed_on`.
TANDEM_TASK(test_flaky) {
  if (ctx.attempt() < ctx.arg_int("succeed_on", 2)) {
    throw tandem::task_error("flaky failure on attempt " + std::to_string(ctx.attempt()));
  }
}

// A multi-rank task: checks its communicator and writes what it saw.
TANDEM_TASK(test_collective) {
  int sum = 0;
  int one = 1;
  MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, ctx.comm());
  if (sum != ctx.size())
    throw tandem::task_error("allreduce over the task's ranks gave a wrong sum");
  // Which hosts the task's ranks are on, gathered over its communicator.
  char host[64] = {0};
  gethostname(host, sizeof host - 1);
  std::vector<char> hosts(static_cast<std::size_t>(ctx.size()) * sizeof host);
  MPI_Gather(host, sizeof host, MPI_CHAR, hosts.data(), sizeof host, MPI_CHAR, 0, ctx.comm());
  if (ctx.rank() == 0) {
    std::ofstream out(ctx.output_dir() / ("collective." + std::to_string(ctx.index())));
    out << ctx.size() << " " << sum << "\n";
    for (int r = 0; r < ctx.size(); ++r) out << "host " << &hosts[r * sizeof host] << "\n";
  }
}

// A multi-rank task's ranks ask `service` together through infer_all:
// `rows` rows of 4 floats each (rank r sends rows + r when `uneven`), and
// check their own rows of the reply against `factor` x input. Rank 0
// writes "ok N" to output_dir()/infer_all.<index>.
TANDEM_TASK(test_infer_all) {
  tandem::Client& client = ctx.client();
  const std::string service = ctx.arg_string("service", "echo");
  client.wait_ready(service, 60);
  const auto rows = ctx.arg_int("rows", 2) + (ctx.arg_bool("uneven", false) ? ctx.rank() : 0);
  const double factor = ctx.arg_double("factor", 1.0);
  const auto calls = ctx.arg_int("calls", 1);
  for (long long k = 0; k < calls; ++k) {
    std::vector<float> values(static_cast<std::size_t>(rows) * 4);
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] = float(static_cast<long long>(ctx.index()) * 1000 + ctx.rank() * 100 + k * 10 +
                        static_cast<long long>(i));
    const tandem::TensorList out =
        client.infer_all(ctx.comm(), service, {{"x", tandem::Tensor::from(values, {rows, 4})}});
    const auto got = out.at(0).tensor.to_vector<float>();
    if (got.size() != values.size()) throw tandem::task_error("wrong output size");
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (got[i] != float(values[i] * factor))
        throw tandem::task_error("wrong value at " + std::to_string(i));
    }
  }
  if (ctx.rank() == 0)
    std::ofstream(ctx.output_dir() / ("infer_all." + std::to_string(ctx.index())))
        << "ok " << calls << "\n";
}

// Moves an elastic service up and down with Client::scale: `cycles` times
// `high` replicas, then `low`, `pause_s` apart; writes "scaled N" to
// output_dir()/scale.<index>. With `bad`, asks for that count once first
// and writes the error it gets to scale.<index>.error. It looks at the
// service's state while it pauses, as a driver would: a client call is
// where its rank fences a replica that leaves (docs/user-guide.md).
TANDEM_TASK(test_scale_cycle) {
  tandem::Client& client = ctx.client();
  const std::string service = ctx.arg_string("service", "echo");
  const auto pause = std::chrono::duration<double>(ctx.arg_double("pause_s", 0.3));
  if (const auto bad = ctx.arg_int("bad", 0); bad != 0) {
    try {
      client.scale(service, static_cast<int>(bad));
      throw tandem::task_error("scale(" + std::to_string(bad) + ") did not fail");
    } catch (const tandem::request_error& e) {
      std::ofstream(ctx.output_dir() / ("scale." + std::to_string(ctx.index()) + ".error"))
          << e.what() << "\n";
    }
  }
  const auto cycles = ctx.arg_int("cycles", 1);
  for (long long k = 0; k < cycles; ++k) {
    for (const auto wanted : {ctx.arg_int("high", 2), ctx.arg_int("low", 1)}) {
      client.scale(service, static_cast<int>(wanted));
      const auto until = std::chrono::steady_clock::now() + pause;
      while (std::chrono::steady_clock::now() < until) {
        if (client.state(service) != "READY") throw tandem::task_error("the service is not READY");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
  std::ofstream(ctx.output_dir() / ("scale." + std::to_string(ctx.index())))
      << "scaled " << cycles << "\n";
}

// Throws something that is not a std::exception.
TANDEM_TASK(test_throw_int) {
  throw 42;
}

// An extern "C" task found by symbol name, without registration.
extern "C" void test_exported(tandem::TaskContext& ctx) {
  std::ofstream(ctx.output_dir() / ("exported." + std::to_string(ctx.index()))) << "ok\n";
}

// This rank's host name.
std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

tandem::Transport transport_named(const std::string& name) {
  if (name == "shm") return tandem::Transport::shm;
  if (name == "inline_mpi") return tandem::Transport::inline_mpi;
  if (name == "hdf5") return tandem::Transport::hdf5;
  return tandem::Transport::automatic;
}

// Sends `requests` requests of `rows` x 4 floats to `service` (through
// `transport`, default automatic) and checks the reply against `factor` x
// input; writes "ok N" and "host H" to output_dir()/infer.<index>. With
// `expect_error`, the first request must fail with a message containing it,
// which is written instead ("error: ...").
TANDEM_TASK(test_infer) {
  tandem::Client& client = ctx.client();
  const std::string service = ctx.arg_string("service", "echo");
  client.wait_ready(service, 60);
  const auto rows = ctx.arg_int("rows", 2);
  const double factor = ctx.arg_double("factor", 1.0);
  const auto requests = ctx.arg_int("requests", 1);
  const tandem::InferOptions options{transport_named(ctx.arg_string("transport", "automatic"))};
  const std::string expect_error = ctx.arg_string("expect_error", "");
  const auto output = ctx.output_dir() / ("infer." + std::to_string(ctx.index()));
  for (long long k = 0; k < requests; ++k) {
    std::vector<float> values(rows * 4);
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] =
          float(static_cast<long long>(ctx.index()) * 1000 + k * 10 + static_cast<long long>(i));
    tandem::Tensor x = tandem::Tensor::from(values, {rows, 4});
    if (!expect_error.empty()) {
      try {
        client.infer(service, {{ctx.arg_string("input", "x"), x}}, options);
      } catch (const tandem::request_error& e) {
        if (std::string(e.what()).find(expect_error) == std::string::npos) throw;
        std::ofstream(output) << "error: " << e.what() << "\nhost " << host_name() << "\n";
        return;
      }
      throw tandem::task_error("the request did not fail with '" + expect_error + "'");
    }
    tandem::TensorList out = client.infer(service, {{ctx.arg_string("input", "x"), x}}, options);
    const auto got = out.at(0).tensor.to_vector<float>();
    if (got.size() != values.size()) throw tandem::task_error("wrong output size");
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (got[i] != float(values[i] * factor)) {
        throw tandem::task_error("wrong value at " + std::to_string(i) + ": " +
                                 std::to_string(got[i]));
      }
    }
  }
  std::ofstream(output) << "ok " << requests << "\nhost " << host_name() << "\n";
}

// The any-language example's grid through the C++ client: n points of
// (u, a), the "closure" service's R(u, a), written as "u a r" lines to
// output_dir()/cpp.txt for comparison with the C, Python and Fortran tasks.
TANDEM_TASK(test_closure_grid) {
  const auto n = ctx.arg_int("points", 1000);
  std::vector<float> x(static_cast<std::size_t>(n) * 2);
  for (long long i = 0; i < n; ++i) {
    x[2 * i] = static_cast<float>(i) / static_cast<float>(n);
    x[2 * i + 1] = 0.5f + 1.5f * static_cast<float>(i % 7) / 6.0f;
  }
  tandem::Client& client = ctx.client();
  client.wait_ready("closure", 120);
  const auto out = client.infer("closure", {{"x", tandem::Tensor::from(x, {n, 2})}});
  const auto r = tandem::find_tensor(out, "r").to_vector<float>();
  std::FILE* f = std::fopen((ctx.output_dir() / "cpp.txt").c_str(), "w");
  for (long long i = 0; i < n; ++i)
    std::fprintf(f, "%.6f %.6f %.9g\n", x[2 * i], x[2 * i + 1], r[i]);
  std::fclose(f);
}

// The echo matrix (tests/proxy/echo_matrix.h) through the C++ client in
// the worker: "dtype bytes hash" lines to output_dir()/cpp.txt, the hash of
// what came back, for comparison with the C task's.
TANDEM_TASK(test_echo_matrix) {
  tandem::Client& client = ctx.client();
  client.wait_ready("echo", 120);
  std::vector<unsigned char> x(matrix_bytes[MATRIX_SIZES - 1]);
  std::FILE* f = std::fopen((ctx.output_dir() / "cpp.txt").c_str(), "w");
  for (int dtype = 0; dtype < MATRIX_DTYPES; ++dtype) {
    for (std::size_t size : matrix_bytes) {
      const std::int64_t elements = matrix_elements(dtype, size);
      const std::size_t n = static_cast<std::size_t>(elements) * matrix_dtype_size[dtype];
      matrix_fill(x.data(), n, dtype);
      const auto out = client.infer(
          "echo",
          {{"x", tandem::Tensor::view(static_cast<tandem::DType>(dtype), {elements}, x.data())}});
      const tandem::Tensor& y = tandem::find_tensor(out, "x");
      std::fprintf(f, "%d %zu %016llx\n", dtype, y.nbytes(),
                   static_cast<unsigned long long>(
                       matrix_hash(static_cast<const unsigned char*>(y.data()), y.nbytes())));
    }
  }
  std::fclose(f);
}

// Misbehaves on instance `bad_index` (every other instance records itself
// like test_record): `how` = "segv" (a null write), "abort", "exit" (exit(7)),
// "hang" (never returns), "print" (a line on stderr) or "sleep" (`seconds`,
// then returns).
TANDEM_TASK(test_misbehave) {
  if (ctx.index() == ctx.arg_int("bad_index", -1)) {
    std::ofstream(ctx.output_dir() / ("bad." + std::to_string(ctx.attempt()))) << "ran\n";
    const std::string how = ctx.arg_string("how", "segv");
    if (how == "segv") {
      volatile int* nowhere = nullptr;
      *nowhere = 1;
    } else if (how == "abort") {
      std::abort();
    } else if (how == "exit") {
      std::exit(7);
    } else if (how == "hang") {
      for (;;) pause();
    } else if (how == "print") {
      std::fprintf(stderr, "stderr of %s[%d]\n", ctx.name().c_str(), ctx.index());
      std::fflush(stderr);
    } else if (how == "sleep") {
      usleep(static_cast<useconds_t>(ctx.arg_double("seconds", 1) * 1e6));
    }
  }
  std::ofstream(ctx.output_dir() / ("ok." + std::to_string(ctx.index()))) << ctx.attempt() << "\n";
}

// The C++ half of tests/python/test_tasks.py's bit-for-bit check: the
// inputs ptasks.inputs(index) makes, sent to the "scale" service, the
// outputs' bytes written to output_dir()/cxx-<index>.bin.
TANDEM_TASK(test_infer_bytes) {
  tandem::Client& client = ctx.client();
  client.wait_ready("scale", 60);
  const int index = ctx.index();
  std::vector<float> x32(6 * 4);
  for (std::size_t i = 0; i < x32.size(); ++i) x32[i] = (float(i) * 7 + float(index)) / 8;
  std::vector<double> x64(5);
  for (std::size_t i = 0; i < x64.size(); ++i) x64[i] = (double(i) * 3 + index) / 16;
  const tandem::Tensor y32 =
      client.infer("scale", {{"x", tandem::Tensor::from(x32, {6, 4})}}).at(0).tensor;
  const tandem::Tensor y64 =
      client.infer("scale", {{"x", tandem::Tensor::from(x64, {5})}}).at(0).tensor;
  std::ofstream out(ctx.output_dir() / ("cxx-" + std::to_string(index) + ".bin"), std::ios::binary);
  out.write(static_cast<const char*>(y32.data()), static_cast<std::streamsize>(y32.nbytes()));
  out.write(static_cast<const char*>(y64.data()), static_cast<std::streamsize>(y64.nbytes()));
}

// Adaptive workflows: a steering task that submits `rounds` rounds of
// `per_round` instances of `sim`, round r+1 before it waits for round r and
// waiting for all of it, then adds up the values they returned.
TANDEM_TASK(test_thinker) {
  const int rounds = static_cast<int>(ctx.arg_int("rounds", 10));
  const int per_round = static_cast<int>(ctx.arg_int("per_round", 100));
  auto round = [&](int r, const std::vector<long long>& after) {
    std::vector<tandem::TaskRequest> batch;
    for (int k = 0; k < per_round; ++k) {
      batch.push_back({"sim",
                       "{\"round\":" + std::to_string(r) + ",\"k\":" + std::to_string(k) + "}", 0,
                       after, ""});
    }
    return ctx.submit(batch);
  };
  long long total = 0;
  std::vector<long long> current = round(0, {});
  for (int r = 0; r < rounds; ++r) {
    const std::vector<long long> next =
        r + 1 < rounds ? round(r + 1, current) : std::vector<long long>{};
    for (const tandem::TaskResult& res : ctx.wait(current)) {
      if (res.state != "DONE") throw std::runtime_error(res.task + " " + res.state);
      total += std::stoll(res.result_json);
    }
    std::ofstream(ctx.output_dir() / "rounds", std::ios::app) << r << "\n";
    // The first job dies here (a resume test): round r+1 was submitted.
    const auto marker = ctx.run_dir() / "thinker-failed-once";
    if (r == ctx.arg_int("fail_after_round", -1) && !std::ifstream(marker)) {
      std::ofstream(marker) << "x";
      throw std::runtime_error("the thinker stops after round " + std::to_string(r));
    }
    current = next;
  }
  ctx.set_result(std::to_string(total));
}

// What test_thinker submits: records that it ran and returns round*1000+k.
TANDEM_TASK(test_sim_value) {
  std::ofstream(ctx.output_dir() / ("ran." + std::to_string(ctx.index())), std::ios::app) << "x\n";
  ctx.set_result(std::to_string(ctx.arg_int("round") * 1000 + ctx.arg_int("k")));
}

// A steering task that submits what it must not: an unknown task, then a
// bad `after`, then waits for itself; writes the three errors.
TANDEM_TASK(test_bad_submitter) {
  std::ofstream out(ctx.output_dir() / "errors");
  for (const tandem::TaskRequest& r : {tandem::TaskRequest{"no_such_task", "{}", 0, {}, ""},
                                       tandem::TaskRequest{"sim", "{}", 0, {123456}, ""}}) {
    try {
      ctx.submit(r);
      out << "accepted\n";
    } catch (const tandem::argument_error& e) {
      out << e.what() << "\n";
    }
  }
  try {  // its own handle: the first task's first instance is id 0
    ctx.wait({ctx.arg_int("own_handle", 0)});
    out << "waited for itself\n";
  } catch (const tandem::argument_error& e) {
    out << e.what() << "\n";
  }
}

// A steering task that makes `calls` submit calls of `per_call` instances
// of task `child` without waiting in between, writing how long each call
// took (seconds) to output_dir()/calls; then fails if `fail`, else waits
// for all of them.
TANDEM_TASK(test_submit_calls) {
  std::ofstream out(ctx.output_dir() / "calls");
  std::vector<long long> all;
  for (long long c = 0; c < ctx.arg_int("calls", 3); ++c) {
    const std::vector<tandem::TaskRequest> batch(
        static_cast<std::size_t>(ctx.arg_int("per_call", 10)),
        tandem::TaskRequest{ctx.arg_string("child", "nap"), "{}"});
    const auto t0 = std::chrono::steady_clock::now();
    for (long long h : ctx.submit(batch)) all.push_back(h);
    out << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << "\n";
    out.flush();
  }
  if (ctx.arg_bool("fail", false)) throw std::runtime_error("the submitter fails");
  for (const tandem::TaskResult& r : ctx.wait(all)) {
    if (r.state != "DONE") throw std::runtime_error(r.task + " " + r.state);
  }
}
