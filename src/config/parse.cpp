// Turns a workflow file into a Workflow, checking every key. The rules a user
// meets are in docs/workflow-file.md; keep the two in step.

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/files.hpp"
#include "config/table_reader.hpp"
#include "config/workflow.hpp"
#include "tandem/error.hpp"
#include "tandem/tensor.hpp"

namespace fs = std::filesystem;

namespace tandem::detail {

namespace {

constexpr int kMaxCount = 10'000'000;

// Replaces ${NAME} with the environment variable NAME, so that a workflow can
// point at a build or scratch directory without hard-coding it.
std::string expand_env(const std::string& value, const TableReader& r, const std::string& key) {
  std::string out;
  std::size_t i = 0;
  while (i < value.size()) {
    const std::size_t open = value.find("${", i);
    if (open == std::string::npos) break;
    const std::size_t close = value.find('}', open + 2);
    if (close == std::string::npos) r.fail(key, fmt::format("'{}' has an unclosed '${{'", value));
    std::string name = value.substr(open + 2, close - open - 2);
    // ${NAME:-fallback} as in the shell: the fallback when NAME is unset or empty.
    std::optional<std::string> fallback;
    if (const auto dash = name.find(":-"); dash != std::string::npos) {
      fallback = name.substr(dash + 2);
      name.resize(dash);
    }
    const char* v = std::getenv(name.c_str());
    if ((!v || !*v) && !fallback) {
      r.fail(key,
             fmt::format("uses ${{{}}} but the environment variable {} is not set", name, name));
    }
    out.append(value, i, open - i);
    out += (v && *v) ? std::string(v) : *fallback;
    i = close + 1;
  }
  out.append(value, i, std::string::npos);
  return out;
}

std::string absolute_from(const std::string& base_dir, const std::string& p) {
  fs::path path(p);
  if (path.is_relative()) path = fs::path(base_dir) / path;
  return path.lexically_normal().string();
}

bool is_executable_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// Finds a bare command name on PATH the way execvp would; "" if absent.
std::string search_path(const std::string& name) {
  return find_program(name, std::getenv("PATH"));
}

nlohmann::json to_json(const toml::node& n) {
  if (const auto* t = n.as_table()) {
    nlohmann::json j = nlohmann::json::object();
    for (auto&& [k, v] : *t) j[std::string(k.str())] = to_json(v);
    return j;
  }
  if (const auto* a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : *a) j.push_back(to_json(v));
    return j;
  }
  if (n.is_string()) return n.as_string()->get();
  if (n.is_integer()) return n.as_integer()->get();
  if (n.is_floating_point()) return n.as_floating_point()->get();
  if (n.is_boolean()) return n.as_boolean()->get();
  // Dates and times keep their TOML text.
  std::ostringstream os;
  n.visit([&os](auto&& v) {
    if constexpr (toml::is_date<decltype(v)> || toml::is_time<decltype(v)> ||
                  toml::is_date_time<decltype(v)>) {
      os << v;
    }
  });
  return os.str();
}

void read_backoff(const toml::table& t, TableReader& parent, BackoffSpec& b) {
  TableReader r(t, parent.file(), parent.dotted("backoff"));
  if (auto v = r.integer("spin", 0, 1'000'000)) b.spin = static_cast<int>(*v);
  if (auto v = r.integer("min_sleep_us", 1, 1'000'000)) b.min_sleep_us = static_cast<int>(*v);
  if (auto v = r.integer("max_sleep_us", 1, 10'000'000)) b.max_sleep_us = static_cast<int>(*v);
  if (b.max_sleep_us < b.min_sleep_us) {
    r.fail("max_sleep_us", "must not be less than min_sleep_us");
  }
  r.reject_unknown({"spin", "min_sleep_us", "max_sleep_us"});
}

void read_staging(const toml::table& t, TableReader& parent, const std::string& dir,
                  StagingSpec& s) {
  TableReader r(t, parent.file(), parent.dotted("staging"));
  if (auto v = r.integer("shm_threshold", 0, 1LL << 40)) s.shm_threshold = *v;
  if (auto v = r.integer("hdf5_threshold", 0, 1LL << 50)) s.hdf5_threshold = *v;
  if (auto v = r.string("dir")) s.dir = absolute_from(dir, expand_env(*v, r, "dir"));
  if (auto v = r.integer("shm_budget_mb", 1, 1 << 24)) s.shm_budget_mb = *v;
  r.reject_unknown({"shm_threshold", "hdf5_threshold", "dir", "shm_budget_mb"});
}

void read_monitor(const toml::table& t, TableReader& parent, MonitorSpec& m) {
  TableReader r(t, parent.file(), parent.dotted("monitor"));
  if (auto v = r.boolean("trace")) m.trace = *v;
  if (auto v = r.integer("trace_max_events", 1, 50'000'000)) m.trace_max_events = *v;
  if (auto v = r.integer("trace_node_mb", 1, 1 << 20)) m.trace_node_mb = static_cast<int>(*v);
  if (auto v = r.boolean("chrome_trace")) m.chrome_trace = *v;
  if (auto v = r.number("metrics_interval", 0, 86400)) m.metrics_interval_s = *v;
  if (auto v = r.number("progress_interval", 0, 86400)) m.progress_interval_s = *v;
  r.reject_unknown({"trace", "trace_max_events", "trace_node_mb", "chrome_trace",
                    "metrics_interval", "progress_interval"});
}

void read_proxy(const toml::table& t, TableReader& parent, const std::string& dir, ProxySpec& p) {
  TableReader r(t, parent.file(), parent.dotted("proxy"));
  if (auto v = r.boolean("enabled")) p.enabled = *v;
  if (auto v = r.string("socket_dir"))
    p.socket_dir = absolute_from(dir, expand_env(*v, r, "socket_dir"));
  r.reject_unknown({"enabled", "socket_dir"});
}

void read_job(const toml::table* t, TableReader& top, Workflow& wf, bool check_files) {
  wf.job.name = fs::path(wf.path).stem().string();
  if (!t) {
    wf.job.run_root = absolute_from(wf.dir, wf.job.run_root);
    return;
  }
  TableReader r(*t, top.file(), "job");
  if (auto v = r.string("name")) {
    if (v->empty() || v->find_first_of("/\\ \t\n") != std::string::npos) {
      r.fail("name", "must be a non-empty name without spaces or slashes");
    }
    wf.job.name = *v;
  }
  if (auto v = r.string("run_root")) wf.job.run_root = expand_env(*v, r, "run_root");
  wf.job.run_root = absolute_from(wf.dir, wf.job.run_root);
  if (auto v = r.string_array("libraries")) {
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string lib = absolute_from(wf.dir, expand_env((*v)[i], r, "libraries"));
      std::error_code ec;
      if (check_files && !fs::is_regular_file(lib, ec)) {
        const toml::node* n = (*r.node("libraries")->as_array()).get(i);
        r.fail("libraries", fmt::format("shared library '{}' does not exist", lib), n);
      }
      wf.job.libraries.push_back(lib);
    }
  }
  if (auto v = r.string_array("pythonpath")) {
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string dir = absolute_from(wf.dir, expand_env((*v)[i], r, "pythonpath"));
      std::error_code ec;
      if (check_files && !fs::is_directory(dir, ec)) {
        const toml::node* n = (*r.node("pythonpath")->as_array()).get(i);
        r.fail("pythonpath", fmt::format("directory '{}' does not exist", dir), n);
      }
      wf.job.pythonpath.push_back(dir);
    }
  }
  if (auto v = r.integer("max_chunk", 1, 1'000'000)) wf.job.max_chunk = static_cast<int>(*v);
  if (auto v = r.number("kill_grace", 0, 3600)) wf.job.kill_grace_s = *v;
  if (auto v = r.number("journal_sync_interval", 0, 3600)) wf.job.journal_sync_s = *v;
  if (auto v = r.boolean("isolate")) wf.job.isolate = *v;
  if (auto v = r.choice<OnTimeout>("on_timeout")) wf.job.on_timeout = *v;
  if (auto v = r.choice<IdleMode>("idle")) wf.job.idle = *v;
  if (auto v = r.choice<Launcher>("launcher")) wf.job.launcher = *v;
  if (auto v = r.string_array("launcher_args")) wf.job.launcher_args = *v;
  if (auto v = r.choice<Bind>("bind")) wf.job.bind = *v;
  if (auto v = r.integer("outstanding_cap", 1, 100'000'000)) {
    wf.job.outstanding_cap = static_cast<int>(*v);
  }
  if (auto v = r.integer("gpus_per_node", 0, 1024)) wf.job.gpus_per_node = static_cast<int>(*v);
  wf.job.gpus_per_node_pos = r.pos("gpus_per_node");
  if (const toml::table* b = r.table("backoff")) {
    read_backoff(*b, r, wf.job.backoff);
    wf.job.backoff_given = true;
  }
  if (const toml::table* s = r.table("staging")) read_staging(*s, r, wf.dir, wf.job.staging);
  if (const toml::table* m = r.table("monitor")) read_monitor(*m, r, wf.job.monitor);
  if (const toml::table* p = r.table("proxy")) read_proxy(*p, r, wf.dir, wf.job.proxy);
  r.reject_unknown({"name", "run_root", "libraries", "pythonpath", "max_chunk", "kill_grace",
                    "journal_sync_interval", "isolate", "on_timeout", "idle", "backoff", "staging",
                    "monitor", "proxy", "launcher", "launcher_args", "bind", "gpus_per_node",
                    "outstanding_cap"});
}

void read_layout(const toml::table* t, TableReader& top, Workflow& wf) {
  if (!t) return;
  TableReader r(*t, top.file(), "layout");
  if (const toml::node* n = r.node("workers")) {
    wf.layout.workers_pos = pos_of(*n);
    if (n->is_string() && n->as_string()->get() == "rest") {
      wf.layout.workers = -1;
    } else if (n->is_integer() && n->as_integer()->get() >= 1 &&
               n->as_integer()->get() <= 1'000'000) {
      wf.layout.workers = static_cast<int>(n->as_integer()->get());
    } else {
      r.fail("workers", "must be a positive integer or \"rest\"", n);
    }
  }
  if (auto v = r.integer("worker_slots", 1, 4096)) wf.layout.worker_slots = static_cast<int>(*v);
  r.reject_unknown({"workers", "worker_slots"});
}

// "module:function", each part a Python name (the module's may be dotted).
void check_python_name(TableReader& r, const std::string& value) {
  auto identifier = [](std::string_view s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (c & 0x80) != 0;
    });
  };
  const auto colon = value.find(':');
  bool ok = colon != std::string::npos && identifier(std::string_view(value).substr(colon + 1));
  if (ok) {
    std::string_view module = std::string_view(value).substr(0, colon);
    for (std::size_t dot = module.find('.'); ok; dot = module.find('.')) {
      ok = identifier(module.substr(0, dot));
      if (dot == std::string_view::npos) break;
      module.remove_prefix(dot + 1);
    }
  }
  if (!ok) {
    r.fail("python",
           fmt::format("'{}' is not \"module:function\" (for example \"tasks:simulate\", "
                       "with tasks.py in the workflow's directory or on [job] pythonpath)",
                       value));
  }
}

void read_command(TableReader& r, TaskSpec& task, const std::string& dir, bool check_files) {
  std::optional<std::vector<std::string>> cmd;
  const toml::node* n = r.node("command");
  if (n && n->is_string()) {
    // A single string is split on whitespace, for the simple cases.
    std::istringstream is(n->as_string()->get());
    cmd.emplace();
    for (std::string word; is >> word;) cmd->push_back(word);
  } else {
    cmd = r.string_array("command");
  }
  if (!cmd || cmd->empty() || (*cmd)[0].empty()) r.fail("command", "must name a program");
  task.command = *cmd;
  std::string& prog = task.command[0];
  prog = expand_env(prog, r, "command");
  if (prog.find('/') != std::string::npos) {
    prog = absolute_from(dir, prog);
    if (check_files && !is_executable_file(prog)) {
      r.fail("command", fmt::format("program '{}' does not exist or is not executable", prog));
    }
  } else if (check_files) {
    const std::string found = search_path(prog);
    if (found.empty()) {
      r.fail("command", fmt::format("program '{}' is not found on PATH", prog));
    }
  }
}

// What the command line's placeholders already mean: a sweep key of these
// names would be ambiguous in {NAME}.
constexpr const char* kReservedArgs[] = {"index", "count",   "attempt",
                                         "name",  "run_dir", "output_dir"};

// A value a sweep may list: one that a command line can hold as text.
const char* sweep_kind(const toml::node& v) {
  if (v.is_string()) return "string";
  if (v.is_integer() || v.is_floating_point()) return "number";
  if (v.is_boolean()) return "boolean";
  return nullptr;
}

// `sweep = { temperature = [300, 310], seed = [1, 2, 3] }`: the instances,
// each with its own values merged into args. `product` (the default) takes
// every combination, the last key (in alphabetical order, as TOML tables
// are kept) varying fastest; `zip` takes the i-th value of every key.
// count is derived, or must agree.
void read_sweep(TableReader& r, const toml::table& t, TaskSpec& task) {
  const auto mode = r.choice<SweepMode>("sweep_mode");
  const toml::table* sweep = r.table("sweep");
  if (!sweep) {
    if (mode) r.fail("sweep_mode", "applies only with a `sweep` table");
    return;
  }
  task.sweep_mode = mode.value_or(SweepMode::product);
  task.sweep_pos = r.pos("sweep");
  if (sweep->empty()) r.fail("sweep", "is empty: give each key an array of values");
  const nlohmann::json args = nlohmann::json::parse(task.args_json);
  long long total = task.sweep_mode == SweepMode::product ? 1 : -1;
  std::string zip_first;
  for (auto&& [k, v] : *sweep) {
    const std::string key(k.str());
    const std::string where = "sweep." + key;
    for (const char* reserved : kReservedArgs) {
      if (key == reserved) {
        r.fail(where,
               fmt::format("'{}' is a name Tandem gives commands ({{{}}}); call it something else",
                           key, key),
               &v);
      }
    }
    if (args.contains(key)) {
      r.fail(where,
             fmt::format("'{}' is in args too: a swept key takes its value from the sweep; remove "
                         "it from one of them",
                         key),
             &v);
    }
    const toml::array* values = v.as_array();
    if (!values || values->empty()) {
      r.fail(where, "must be a non-empty array of values, like [300, 310]", &v);
    }
    const char* kind = nullptr;
    std::vector<std::string> texts;
    for (const toml::node& e : *values) {
      const char* this_kind = sweep_kind(e);
      if (!this_kind) {
        r.fail(where, "holds a table or an array: sweep values are strings, numbers or booleans",
               &e);
      }
      if (kind && std::string_view(kind) != this_kind) {
        r.fail(where,
               fmt::format("mixes {}s and {}s: give one kind of value per key", kind, this_kind),
               &e);
      }
      kind = this_kind;
      texts.push_back(to_json(e).dump());
    }
    const auto n = static_cast<long long>(texts.size());
    if (task.sweep_mode == SweepMode::zip) {
      if (total >= 0 && n != total) {
        r.fail(where,
               fmt::format("has {} values but '{}' has {}: with sweep_mode = \"zip\" every key "
                           "needs as many",
                           n, zip_first, total),
               &v);
      }
      if (total < 0) zip_first = key;
      total = n;
    } else {
      total *= n;
      if (total > kMaxCount)
        r.fail("sweep", fmt::format("makes more than {} instances", kMaxCount));
    }
    task.sweep_keys.push_back(key);
    task.sweep_values.push_back(std::move(texts));
  }
  if (t.contains("count") && task.count != total) {
    r.fail("count", fmt::format("is {} but the sweep makes {} instance(s) ({}); leave count out "
                                "and it follows the sweep",
                                task.count, total, name_of(task.sweep_mode)));
  }
  task.count = static_cast<int>(total);
  task.instance_args.reserve(static_cast<std::size_t>(total));
  for (long long i = 0; i < total; ++i) {
    nlohmann::json merged = args;
    long long rest = i;
    // product: a mixed-radix number, the last key its fastest digit.
    for (std::size_t k = task.sweep_keys.size(); k-- > 0;) {
      const auto& values = task.sweep_values[k];
      const auto n = static_cast<long long>(values.size());
      const long long pick = task.sweep_mode == SweepMode::zip ? i : rest % n;
      if (task.sweep_mode == SweepMode::product) rest /= n;
      merged[task.sweep_keys[k]] = nlohmann::json::parse(values[static_cast<std::size_t>(pick)]);
    }
    task.instance_args.push_back(merged.dump());
  }
}

// A task's cores, GPUs and binding. `cores_per_task` and `gpus_per_task`
// are the per-rank keys' names for a task of one rank.
void read_task_resources(TableReader& r, const toml::table& t, const JobSpec& job, TaskSpec& task) {
  for (const char* key : {"cores_per_task", "gpus_per_task"}) {
    if (t.contains(key) && task.ranks > 1) {
      r.fail(key, fmt::format("is for a task of one rank; task '{}' has {} ranks: use {}",
                              task.name, task.ranks,
                              std::string(key).replace(std::string(key).find("task"), 4, "rank")));
    }
  }
  if (t.contains("cores_per_task") && t.contains("cores_per_rank")) {
    r.fail("cores_per_task", "give cores_per_task or cores_per_rank, not both");
  }
  if (t.contains("gpus_per_task") && t.contains("gpus_per_rank")) {
    r.fail("gpus_per_task", "give gpus_per_task or gpus_per_rank, not both");
  }
  for (const char* key : {"cores_per_rank", "cores_per_task"}) {
    if (auto v = r.integer(key, 1, 4096)) task.cores_per_rank = static_cast<int>(*v);
    if (t.contains(key) && task.kind != TaskKind::command) {
      r.fail(key, "is for command tasks; a function task runs on its workers' own threads");
    }
  }
  for (const char* key : {"gpus_per_rank", "gpus_per_task"}) {
    if (auto v = r.integer(key, 0, 1024)) {
      task.gpus_per_rank = static_cast<int>(*v);
      task.gpus_pos = r.pos(key);
    }
  }
  task.bind = job.bind;
  if (auto v = r.choice<Bind>("bind")) task.bind = *v;
  if (t.contains("bind") && task.kind != TaskKind::command) {
    r.fail("bind", "is for command tasks; a function task runs in its worker");
  }
}

TaskSpec read_task(const toml::table& t, int i, const std::string& file, const std::string& dir,
                   const JobSpec& job, bool check_files) {
  TableReader r(t, file, fmt::format("task[{}]", i));
  TaskSpec task;
  task.pos = r.table_pos();
  auto name = r.string("name");
  if (!name) r.fail("name", "is required: every [[task]] needs a name");
  if (name->empty() || name->find_first_of("/\\ \t\n[]") != std::string::npos) {
    r.fail("name", "must be a non-empty name without spaces, slashes or brackets");
  }
  task.name = *name;

  const bool has_function = t.contains("function");
  const bool has_command = t.contains("command");
  const bool has_python = t.contains("python");
  if (int(has_function) + int(has_command) + int(has_python) != 1) {
    r.fail("",
           "needs exactly one of 'function' (a registered C++ function), 'python' (a Python "
           "function, \"module:function\") or 'command' (a program to run)");
  }
  if (has_python) {
    task.kind = TaskKind::function;  // runs on the worker's thread, like a C++ function
    task.python = *r.string("python");
    task.function = task.python;
    task.function_pos = r.pos("python");
    check_python_name(r, task.python);
  } else if (has_function) {
    task.kind = TaskKind::function;
    task.function = *r.string("function");
    task.function_pos = r.pos("function");
    if (task.function.empty()) r.fail("function", "must not be empty");
  } else {
    task.kind = TaskKind::command;
    read_command(r, task, dir, check_files);
  }
  if (const toml::table* env = r.table("env")) {
    for (auto&& [k, v] : *env) {
      if (!v.is_string() && !v.is_integer() && !v.is_floating_point() && !v.is_boolean()) {
        r.fail("env." + std::string(k.str()), "must be a string or a number", &v);
      }
      task.env[std::string(k.str())] = v.is_string() ? v.as_string()->get() : to_json(v).dump();
    }
  }
  task.cwd = dir;
  if (auto v = r.string("cwd")) {
    task.cwd = absolute_from(dir, expand_env(*v, r, "cwd"));
    std::error_code ec;
    if (check_files && !fs::is_directory(task.cwd, ec)) {
      r.fail("cwd", fmt::format("directory '{}' does not exist", task.cwd));
    }
  }
  if (auto v = r.boolean("clean_mpi_env")) task.clean_mpi_env = *v;
  if (auto v = r.integer("count", 0, kMaxCount))
    task.count = static_cast<int>(*v);  // 0: submitted only
  if (auto v = r.integer("ranks", 1, 1'000'000)) task.ranks = static_cast<int>(*v);
  task.ranks_pos = r.pos("ranks");
  read_task_resources(r, t, job, task);
  if (auto v = r.string_array("after")) task.after = *v;
  if (auto v = r.integer("retries", 0, 1000)) task.retries = static_cast<int>(*v);
  if (auto v = r.integer("priority", -1'000'000, 1'000'000)) task.priority = static_cast<int>(*v);
  if (auto v = r.number("timeout", 0, 1e9)) task.timeout_s = *v;
  task.isolate = job.isolate;
  task.on_timeout = job.on_timeout;
  if (auto v = r.boolean("isolate")) task.isolate = *v;
  if (auto v = r.choice<OnTimeout>("on_timeout")) task.on_timeout = *v;
  if (t.contains("isolate") && task.kind == TaskKind::command) {
    r.fail("isolate", "is for function tasks; a command task always runs in a process of its own");
  }
  if (t.contains("on_timeout") && task.kind == TaskKind::command) {
    r.fail("on_timeout", "is for function tasks; a command task is always killed at its timeout");
  }
  if (task.isolate && task.ranks > 1) {
    r.fail(t.contains("isolate") ? "isolate" : "ranks",
           "an isolated task runs in a forked child that cannot use MPI, so it cannot span "
           "several ranks");
  }
  if (auto v = r.boolean("steering")) task.steering = *v;
  task.outstanding_cap = job.outstanding_cap;
  if (auto v = r.integer("outstanding_cap", 1, 100'000'000)) {
    task.outstanding_cap = static_cast<int>(*v);
  }
  if (auto v = r.boolean("cancel_children")) task.cancel_children = *v;
  for (const char* key : {"outstanding_cap", "cancel_children"}) {
    if (t.contains(key) && !task.steering) r.fail(key, "is for steering tasks (steering = true)");
  }
  if (task.steering && (task.ranks > 1 || task.isolate)) {
    r.fail("steering",
           "is for a task of one rank that is not isolated: it submits tasks and waits for them "
           "through its worker");
  }
  if (task.steering && task.kind == TaskKind::command && !job.proxy.enabled) {
    r.fail("steering",
           "a steering command reaches the coordinator through its worker's proxy, which "
           "[job.proxy] enabled = false turns off");
  }
  if (const toml::table* args = r.table("args")) task.args_json = to_json(*args).dump();
  read_sweep(r, t, task);
  r.reject_unknown({"name",
                    "function",
                    "python",
                    "command",
                    "env",
                    "cwd",
                    "clean_mpi_env",
                    "count",
                    "ranks",
                    "cores_per_rank",
                    "cores_per_task",
                    "gpus_per_rank",
                    "gpus_per_task",
                    "bind",
                    "steering",
                    "outstanding_cap",
                    "cancel_children",
                    "after",
                    "retries",
                    "priority",
                    "timeout",
                    "isolate",
                    "on_timeout",
                    "args",
                    "sweep",
                    "sweep_mode"});
  return task;
}

std::vector<TensorSpec> read_signature(TableReader& r, const std::string& key) {
  std::vector<TensorSpec> out;
  const toml::node* n = r.node(key);
  if (!n) return out;
  if (!n->is_array()) {
    r.fail(key,
           "must be an array of tables like { name = \"x\", dtype = \"FP32\", shape = [-1, 4] }",
           n);
  }
  const toml::array& arr = *n->as_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const toml::table* t = arr[i].as_table();
    if (!t)
      r.fail(key, fmt::format("element {} must be a table with name, dtype and shape", i), &arr[i]);
    TableReader e(*t, r.file(), r.dotted(fmt::format("{}[{}]", key, i)));
    TensorSpec spec;
    auto name = e.string("name");
    if (!name || name->empty()) e.fail("name", "is required");
    spec.name = *name;
    for (const auto& other : out) {
      if (other.name == spec.name) e.fail("name", fmt::format("'{}' is used twice", spec.name));
    }
    auto dtype = e.string("dtype");
    if (!dtype) {
      e.fail("dtype",
             "is required (BOOL, UINT8..UINT64, INT8..INT64, FP16, BF16, FP32, FP64, BYTES)");
    }
    const auto dt = tandem::dtype_from_name(*dtype);
    if (!dt) {
      e.fail("dtype",
             fmt::format("unknown dtype '{}' (use BOOL, UINT8, UINT16, UINT32, UINT64, INT8, "
                         "INT16, INT32, INT64, FP16, BF16, FP32, FP64 or BYTES)",
                         *dtype));
    }
    spec.dtype = static_cast<int>(*dt);
    const toml::node* shape = e.node("shape");
    if (!shape || !shape->is_array())
      e.fail("shape", "is required: an array of sizes, -1 for the batch");
    for (const auto& d : *shape->as_array()) {
      if (!d.is_integer() || d.as_integer()->get() < -1 || d.as_integer()->get() == 0) {
        e.fail("shape", "sizes must be positive integers or -1 (the batch dimension)", &d);
      }
      spec.shape.push_back(d.as_integer()->get());
    }
    if (spec.shape.empty() || spec.shape[0] != -1) {
      e.fail("shape",
             "the first dimension must be -1, the batch dimension that requests are batched along");
    }
    e.reject_unknown({"name", "dtype", "shape"});
    out.push_back(std::move(spec));
  }
  return out;
}

// The keys of the HTTP backends: "process" (a model server the job starts)
// and "remote" (an endpoint outside the job).
void read_process_keys(TableReader& r, ServiceSpec& s, const std::string& dir, bool check_files) {
  const bool process = s.backend == BackendKind::process;
  const bool remote = s.backend == BackendKind::remote;
  for (const char* key : {"command", "env", "start_timeout", "health_interval", "max_restarts"}) {
    if (!process && r.node(key)) r.fail(key, "applies only to backend \"process\"");
  }
  for (const char* key : {"url", "api_key_env", "max_in_flight", "ca_bundle", "verify_tls"}) {
    if (!remote && r.node(key)) r.fail(key, "applies only to backend \"remote\"");
  }
  for (const char* key : {"protocol", "model_name", "ready_path", "request_timeout", "retries"}) {
    if (!process && !remote && r.node(key)) {
      r.fail(key, "applies only to backends \"process\" and \"remote\"");
    }
  }
  if (!process && !remote) return;
  if (remote) {
    auto url = r.string("url");
    if (!url || url->empty())
      r.fail("url", "is required for backend \"remote\": the endpoint's base URL");
    s.url = expand_env(*url, r, "url");
    while (!s.url.empty() && s.url.back() == '/') s.url.pop_back();
    if (s.url.rfind("http://", 0) != 0 && s.url.rfind("https://", 0) != 0) {
      r.fail("url", fmt::format("must start with http:// or https://, not '{}'", s.url));
    }
    if (auto v = r.string("api_key_env")) s.api_key_env = *v;
    if (auto v = r.integer("max_in_flight", 1, 100000)) s.max_in_flight = static_cast<int>(*v);
    if (auto v = r.string("ca_bundle"))
      s.ca_bundle = absolute_from(dir, expand_env(*v, r, "ca_bundle"));
    if (auto v = r.boolean("verify_tls")) s.verify_tls = *v;
    if (s.ranks_per_replica != 1) {
      r.fail("ranks_per_replica", "a remote service's replica is one bridge rank");
    }
  } else {
    TaskSpec as_task;  // the command is checked like a command task's
    read_command(r, as_task, dir, check_files);
    s.command = as_task.command;
  }
  if (const toml::table* env = r.table("env")) {
    for (auto&& [k, v] : *env) {
      if (!v.is_string()) r.fail("env." + std::string(k.str()), "must be a string", &v);
      s.env[std::string(k.str())] = v.as_string()->get();
    }
  }
  if (auto v = r.choice<Protocol>("protocol")) s.protocol = *v;
  s.model_name = r.string("model_name").value_or(s.name);
  s.ready_path = r.string("ready_path")
                     .value_or(s.protocol == Protocol::openai ? "/v1/models" : "/v2/health/ready");
  if (auto v = r.number("start_timeout", 0.1, 86400)) s.start_timeout_s = *v;
  if (auto v = r.number("health_interval", 0.1, 3600)) s.health_interval_s = *v;
  if (auto v = r.integer("max_restarts", 0, 1000)) s.max_restarts = static_cast<int>(*v);
  if (auto v = r.number("request_timeout", 0.01, 86400)) s.request_timeout_s = *v;
  if (auto v = r.integer("retries", 0, 100)) s.retries = static_cast<int>(*v);
}

// Model versions: `model` (version `model_version`) or a `model_dir` in the
// Triton repository layout, the policy, and how a switch uses memory.
void read_version_keys(TableReader& r, ServiceSpec& s, const std::string& dir, bool check_files) {
  const bool torchscript = s.backend == BackendKind::torchscript;
  if (auto v = r.string("model_dir")) {
    if (!torchscript) r.fail("model_dir", "applies only to backend \"torchscript\"");
    if (!s.model.empty()) {
      r.fail("model_dir",
             "give either `model` (one file) or `model_dir` (a directory of "
             "versions), not both");
    }
    s.model_dir = absolute_from(dir, expand_env(*v, r, "model_dir"));
    std::error_code ec;
    if (check_files && !fs::is_directory(s.model_dir, ec)) {
      r.fail("model_dir", fmt::format("model directory '{}' does not exist", s.model_dir));
    }
  }
  if (torchscript && s.model.empty() && s.model_dir.empty()) {
    r.fail("model",
           "is required for backend \"torchscript\": the path of a TorchScript file "
           "(or `model_dir`, a directory of versions <dir>/<N>/model.pt)");
  }
  if (auto v = r.integer("model_version", 1, 2'000'000'000)) {
    if (s.model.empty()) r.fail("model_version", "applies only with `model`");
    s.model_version = static_cast<int>(*v);
  }
  if (auto v = r.number("poll_interval", 0.05, 86400)) {
    if (s.model_dir.empty()) r.fail("poll_interval", "applies only with `model_dir`");
    s.poll_interval_s = *v;
  }
  if (const toml::node* policy = r.node("version_policy")) {
    if (!torchscript) r.fail("version_policy", "applies only to backend \"torchscript\"");
    if (const auto* text = policy->as_string(); text && text->get() == "latest") {
      s.pinned_version = 0;
    } else if (const auto* n = policy->as_integer();
               n && n->get() >= 1 && n->get() <= 2'000'000'000) {
      s.pinned_version = static_cast<int>(n->get());
    } else {
      r.fail("version_policy",
             "must be \"latest\" (serve the newest loaded version) or a version number N >= 1 "
             "(serve version N only)",
             policy);
    }
  }
  if (auto v = r.integer("keep_versions", 1, 100)) {
    if (!torchscript) r.fail("keep_versions", "applies only to backend \"torchscript\"");
    s.keep_versions = static_cast<int>(*v);
  }
  if (auto v = r.choice<SwapMode>("swap")) {
    if (!torchscript) r.fail("swap", "applies only to backend \"torchscript\"");
    s.swap = *v;
  }
}

// What an elastic service adds, and what it cannot be (yet).
void read_elastic_keys(TableReader& r, ServiceSpec& s) {
  if (auto v = r.number("target_queue_ms", 0.001, 3.6e6)) {
    if (!s.elastic()) r.fail("target_queue_ms", "applies only to replicas = { min, max }");
    s.target_queue_ms = *v;
  }
  if (auto v = r.number("scale_dwell_s", 0, 86400)) {
    if (!s.elastic()) r.fail("scale_dwell_s", "applies only to replicas = { min, max }");
    s.scale_dwell_s = *v;
  }
  if (!s.elastic()) return;
  if (s.is_bridge()) r.fail("replicas", "a remote service has one bridge rank; it cannot grow");
  if (s.gpus_per_replica > 0) {
    r.fail("replicas",
           "elastic replicas with GPUs are not supported yet: a worker that becomes "
           "a replica would need its node's GPUs for the model");
  }
  if (s.record) r.fail("record", "a recording service has a fixed count of replicas");
}

// Deadlines, fallbacks and replay (docs/when-things-go-wrong.md).
void read_deadline_keys(TableReader& r, ServiceSpec& s, const std::string& dir, bool check_files) {
  if (auto v = r.number("deadline_ms", 0.001, 3.6e6)) s.deadline_ms = *v;
  if (auto v = r.string("fallback")) {
    s.fallback_pos = r.pos("fallback");
    if (*v == "error") {
      s.fallback.clear();
    } else if (v->rfind("service:", 0) == 0 && v->size() > 8) {
      s.fallback = v->substr(8);
    } else {
      r.fail("fallback", fmt::format("must be \"error\" or \"service:NAME\", not \"{}\"", *v));
    }
  }
  const bool replay = s.backend == BackendKind::replay;
  if (auto v = r.string("recording")) {
    if (!replay) r.fail("recording", "applies only to backend \"replay\"");
    s.recording = absolute_from(dir, expand_env(*v, r, "recording"));
    std::error_code ec;
    if (check_files && !fs::is_directory(s.recording, ec)) {
      r.fail("recording",
             fmt::format("recording '{}' is not a directory: give RUN_DIR/services/NAME of a run "
                         "whose service had record = true",
                         s.recording));
    }
  } else if (replay) {
    r.fail("recording",
           "is required for backend \"replay\": the directory RUN_DIR/services/NAME of a run "
           "whose service had record = true");
  }
  if (replay && s.record) r.fail("record", "a replay service answers from a recording");
  if (replay && s.ranks_per_replica != 1) {
    r.fail("ranks_per_replica", "a replay answers each request whole, on one rank");
  }
}

ServiceSpec read_service(const toml::table& t, int i, const std::string& file,
                         const std::string& dir, bool check_files) {
  TableReader r(t, file, fmt::format("service[{}]", i));
  ServiceSpec s;
  s.pos = r.table_pos();
  auto name = r.string("name");
  if (!name) r.fail("name", "is required: every [[service]] needs a name");
  if (name->empty() || name->find_first_of("/\\ \t\n[]") != std::string::npos) {
    r.fail("name", "must be a non-empty name without spaces, slashes or brackets");
  }
  s.name = *name;
  auto backend = r.string("backend");
  if (!backend) r.fail("backend", "is required: torchscript, echo, scale or sleep");
  if (const auto b = parse_name<BackendKind>(*backend)) {
    s.backend = *b;
  } else {
    const std::vector<std::string> known = names_of<BackendKind>();
    const std::string hint = closest_match(*backend, known);
    r.fail("backend", fmt::format("unknown backend '{}'{} (known: {})", *backend,
                                  hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                                  fmt::join(known, ", ")));
  }
  if (auto v = r.string("model")) {
    s.model = absolute_from(dir, expand_env(*v, r, "model"));
    std::error_code ec;
    if (check_files && !fs::is_regular_file(s.model, ec)) {
      r.fail("model", fmt::format("model file '{}' does not exist", s.model));
    }
  }
  read_version_keys(r, s, dir, check_files);
  s.replicas_pos = r.pos("replicas");
  std::optional<long long> replicas;
  if (const toml::node* n = r.node("replicas"); n && n->is_table()) {
    // replicas = { min = 1, max = 8 }: an elastic service.
    TableReader e(*n->as_table(), r.file(), r.dotted("replicas"));
    const auto lo = e.integer("min", 1, 100000);
    const auto hi = e.integer("max", 1, 100000);
    if (!lo || !hi) e.fail(lo ? "max" : "min", "is required: replicas = { min = N, max = M }");
    if (*hi < *lo) e.fail("max", fmt::format("is {}, less than min = {}", *hi, *lo));
    e.reject_unknown({"min", "max"});
    replicas = *lo;
    s.replicas_max = static_cast<int>(*hi);
  } else {
    replicas = r.integer("replicas", 1, 100000);
  }
  if (replicas) s.replicas = static_cast<int>(*replicas);
  if (auto v = r.integer("ranks_per_replica", 1, 100000))
    s.ranks_per_replica = static_cast<int>(*v);
  if (auto v = r.choice<Placement>("placement")) s.placement = *v;
  // per_node without a count: a replica on every node the job has, known
  // only when it runs.
  if (s.placement == Placement::per_node && !replicas) s.replicas = 0;
  if (auto v = r.integer("max_batch", 1, 1 << 24)) s.max_batch = static_cast<int>(*v);
  if (auto v = r.integer("max_delay_us", 0, 60'000'000)) s.max_delay_us = static_cast<int>(*v);
  if (auto v = r.string("device")) {
    const bool cuda =
        v->rfind("cuda", 0) == 0 &&
        (v->size() == 4 || ((*v)[4] == ':' && v->size() > 5 &&
                            v->find_first_not_of("0123456789", 5) == std::string::npos));
    if (*v != "cpu" && !cuda)
      r.fail("device", fmt::format("must be \"cpu\" or \"cuda:N\", not \"{}\"", *v));
    s.device = *v;
    s.device_given = true;
  }
  if (auto v = r.integer("gpus_per_replica", 0, 1024)) {
    if (s.is_bridge()) r.fail("gpus_per_replica", "a remote service's bridge rank needs no GPU");
    s.gpus_per_replica = static_cast<int>(*v);
    s.gpus_pos = r.pos("gpus_per_replica");
    // The replica sees only its own GPUs, numbered from 0.
    if (!s.device_given && s.gpus_per_replica > 0) s.device = "cuda:0";
    const auto colon = s.device.find(':');
    if (s.gpus_per_replica > 0 && colon != std::string::npos &&
        std::stoi(s.device.substr(colon + 1)) >= s.gpus_per_replica) {
      r.fail("device", fmt::format("is {}, but a replica sees only its {} GPU(s), as cuda:0 to "
                                   "cuda:{}",
                                   s.device, s.gpus_per_replica, s.gpus_per_replica - 1));
    }
  }
  if (auto v = r.choice<Transport>("transport")) s.transport = *v;
  if (auto v = r.boolean("record")) s.record = *v;
  read_process_keys(r, s, dir, check_files);
  s.inputs = read_signature(r, "inputs");
  s.outputs = read_signature(r, "outputs");
  if (s.backend == BackendKind::torchscript && (s.inputs.empty() || s.outputs.empty())) {
    r.fail(s.inputs.empty() ? "inputs" : "outputs",
           "is required for backend \"torchscript\": name, dtype and shape of each tensor");
  }
  if (auto v = r.number("factor", -1e300, 1e300)) {
    if (s.backend != BackendKind::scale) r.fail("factor", "applies only to backend \"scale\"");
    s.factor = *v;
  }
  if (auto v = r.integer("delay_us", 0, 3'600'000'000LL)) {
    if (s.backend != BackendKind::sleep) r.fail("delay_us", "applies only to backend \"sleep\"");
    s.delay_us = *v;
  }
  if (auto v = r.integer("delay_sd_us", 0, 3'600'000'000LL)) {
    if (s.backend != BackendKind::sleep) {
      r.fail("delay_sd_us", "applies only to backend \"sleep\"");
    }
    s.delay_sd_us = *v;
  }
  if (auto v = r.integer("crash_on_rows", 0, 1'000'000'000)) {
    if (s.backend != BackendKind::scale)
      r.fail("crash_on_rows", "applies only to backend \"scale\"");
    s.crash_on_rows = *v;
  }
  if (auto v = r.integer("per_row_us", 0, 3'600'000'000LL)) {
    if (s.backend != BackendKind::sleep) r.fail("per_row_us", "applies only to backend \"sleep\"");
    s.per_row_us = *v;
  }
  if (auto v = r.integer("load_us", 0, 3'600'000'000LL)) {
    if (s.backend != BackendKind::sleep) r.fail("load_us", "applies only to backend \"sleep\"");
    s.load_us = *v;
  }
  if (auto v = r.integer("fail_load_from", 1, 100000)) {
    if (s.backend != BackendKind::sleep)
      r.fail("fail_load_from", "applies only to backend \"sleep\"");
    s.fail_load_from = static_cast<int>(*v);
  }
  read_elastic_keys(r, s);
  read_deadline_keys(r, s, dir, check_files);
  static const std::vector<std::string> kServiceKeys = {"name",
                                                        "deadline_ms",
                                                        "fallback",
                                                        "recording",
                                                        "backend",
                                                        "model",
                                                        "replicas",
                                                        "ranks_per_replica",
                                                        "placement",
                                                        "max_batch",
                                                        "max_delay_us",
                                                        "device",
                                                        "inputs",
                                                        "outputs",
                                                        "factor",
                                                        "crash_on_rows",
                                                        "delay_us",
                                                        "delay_sd_us",
                                                        "per_row_us",
                                                        "load_us",
                                                        "target_queue_ms",
                                                        "fail_load_from",
                                                        "scale_dwell_s",
                                                        "transport",
                                                        "record",
                                                        "command",
                                                        "env",
                                                        "protocol",
                                                        "model_name",
                                                        "ready_path",
                                                        "start_timeout",
                                                        "health_interval",
                                                        "max_restarts",
                                                        "request_timeout",
                                                        "retries",
                                                        "url",
                                                        "api_key_env",
                                                        "max_in_flight",
                                                        "ca_bundle",
                                                        "verify_tls",
                                                        "model_dir",
                                                        "model_version",
                                                        "poll_interval",
                                                        "version_policy",
                                                        "keep_versions",
                                                        "swap",
                                                        "gpus_per_replica"};
  r.reject_unknown(kServiceKeys);
  return s;
}

// Resolves `after` names to indices and rejects unknown names and cycles.
void link_dependencies(Workflow& wf, const toml::array* tasks) {
  auto fail_at = [&](int i, const std::string& why) -> void {
    const toml::node* after = (*tasks)[i].as_table()->get("after");
    SourcePos p = after ? pos_of(*after) : wf.tasks[i].pos;
    throw config_error(wf.path, p.line, p.column, fmt::format("task[{}].after", i), why);
  };
  for (int i = 0; i < static_cast<int>(wf.tasks.size()); ++i) {
    TaskSpec& t = wf.tasks[i];
    for (const std::string& dep : t.after) {
      const int j = wf.find_task(dep);
      if (j < 0) {
        std::vector<std::string> names;
        for (const auto& o : wf.tasks) names.push_back(o.name);
        const std::string hint = closest_match(dep, names);
        fail_at(i, fmt::format("task '{}' waits for '{}', which is not a task{}", t.name, dep,
                               hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
      }
      if (j == i) fail_at(i, fmt::format("task '{}' waits for itself", t.name));
      t.after_index.push_back(j);
    }
  }
  // Depth-first search with colours; the stack gives the cycle's path.
  std::vector<int> colour(wf.tasks.size(), 0);
  std::vector<int> stack;
  std::function<void(int)> visit = [&](int i) {
    colour[i] = 1;
    stack.push_back(i);
    for (int j : wf.tasks[i].after_index) {
      if (colour[j] == 1) {
        std::string path;
        auto from = std::find(stack.begin(), stack.end(), j);
        for (auto it = from; it != stack.end(); ++it) path += wf.tasks[*it].name + " -> ";
        path += wf.tasks[j].name;
        fail_at(j, "dependency cycle: " + path);
      }
      if (colour[j] == 0) visit(j);
    }
    stack.pop_back();
    colour[i] = 2;
  };
  for (int i = 0; i < static_cast<int>(wf.tasks.size()); ++i) {
    if (colour[i] == 0) visit(i);
  }
}

}  // namespace

long long Workflow::instance_count() const {
  long long n = 0;
  for (const auto& t : tasks) n += t.count;
  return n;
}

int Workflow::find_service(const std::string& name) const {
  for (int i = 0; i < static_cast<int>(services.size()); ++i) {
    if (services[i].name == name) return i;
  }
  return -1;
}

int Workflow::find_task(const std::string& name) const {
  for (int i = 0; i < static_cast<int>(tasks.size()); ++i) {
    if (tasks[i].name == name) return i;
  }
  return -1;
}

// Once Tandem hands out GPUs, whatever uses one must say how many it
// needs: a service on "cuda" without gpus_per_replica would use GPUs that
// tasks and other replicas were given.
void check_gpu_users(const Workflow& wf) {
  if (!manages_gpus(wf)) return;
  for (std::size_t i = 0; i < wf.services.size(); ++i) {
    const ServiceSpec& s = wf.services[i];
    if (s.gpus_per_replica == 0 && s.device.rfind("cuda", 0) == 0) {
      throw config_error(
          wf.path, s.pos.line, s.pos.column, fmt::format("service[{}].device", i),
          fmt::format(
              "service '{}' runs on {} but has no gpus_per_replica, while other parts of "
              "the workflow are given GPUs: add gpus_per_replica so that its GPU is its own",
              s.name, s.device));
    }
  }
}

// `fallback = "service:NAME"`: the named service must exist, and following
// the fallbacks from any service must end, never come back round.
void link_fallbacks(Workflow& wf, const std::string& path) {
  for (std::size_t i = 0; i < wf.services.size(); ++i) {
    ServiceSpec& s = wf.services[i];
    if (s.fallback.empty()) continue;
    const auto fail = [&](const std::string& why) {
      throw config_error(path, s.fallback_pos.line, s.fallback_pos.column,
                         fmt::format("service[{}].fallback", i), why);
    };
    s.fallback_service = wf.find_service(s.fallback);
    if (s.fallback_service < 0) fail(fmt::format("names no service: '{}'", s.fallback));
    if (s.fallback_service == static_cast<int>(i)) fail("a service cannot be its own fallback");
  }
  for (std::size_t i = 0; i < wf.services.size(); ++i) {
    std::vector<std::string> chain{wf.services[i].name};
    for (int at = wf.services[i].fallback_service; at >= 0;
         at = wf.services[static_cast<std::size_t>(at)].fallback_service) {
      chain.push_back(wf.services[static_cast<std::size_t>(at)].name);
      if (at == static_cast<int>(i)) {
        const ServiceSpec& s = wf.services[i];
        throw config_error(
            path, s.fallback_pos.line, s.fallback_pos.column,
            fmt::format("service[{}].fallback", i),
            fmt::format("the fallbacks go round in a loop: {}", fmt::join(chain, " -> ")));
      }
      if (chain.size() > wf.services.size() + 1) break;  // a loop that does not pass through i
    }
  }
}

// [[scale]]: after = "TASK", service = "NAME", replicas = N.
void read_scale_rules(const toml::array& rules, const std::string& path, Workflow& wf) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    TableReader r(*rules[i].as_table(), path, fmt::format("scale[{}]", i));
    ScaleRule rule;
    rule.pos = r.table_pos();
    const auto after = r.string("after");
    if (!after) r.fail("after", "is required: the task whose end brings the new split");
    rule.after = *after;
    rule.task = wf.find_task(*after);
    if (rule.task < 0) r.fail("after", fmt::format("names no task: '{}'", *after));
    const auto service = r.string("service");
    if (!service) r.fail("service", "is required: the elastic service to resize");
    rule.service = wf.find_service(*service);
    if (rule.service < 0) r.fail("service", fmt::format("names no service: '{}'", *service));
    const ServiceSpec& s = wf.services[static_cast<std::size_t>(rule.service)];
    if (!s.elastic()) {
      r.fail("service", fmt::format("service '{}' has a fixed count of replicas: give it "
                                    "replicas = {{ min = N, max = M }}",
                                    s.name));
    }
    const auto n = r.integer("replicas", s.replicas, s.replicas_max);
    if (!n) r.fail("replicas", "is required: how many replicas the service should have");
    rule.replicas = static_cast<int>(*n);
    r.reject_unknown({"after", "service", "replicas"});
    wf.scale_rules.push_back(std::move(rule));
  }
}

Workflow parse_workflow(const std::string& text, const std::string& path, bool check_files) {
  Workflow wf;
  wf.path = path;
  wf.text = text;
  wf.dir = fs::absolute(fs::path(path)).parent_path().lexically_normal().string();

  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw config_error(path, static_cast<int>(src.begin.line), static_cast<int>(src.begin.column),
                       "", fmt::format("not valid TOML: {}", e.description()));
  }

  TableReader top(root, path, "");
  read_job(top.table("job"), top, wf, check_files);
  read_layout(top.table("layout"), top, wf);
  if (const toml::array* services = top.array_of_tables("service")) {
    for (std::size_t i = 0; i < services->size(); ++i) {
      ServiceSpec s =
          read_service(*(*services)[i].as_table(), static_cast<int>(i), path, wf.dir, check_files);
      if (wf.find_service(s.name) >= 0) {
        throw config_error(path, s.pos.line, s.pos.column, fmt::format("service[{}].name", i),
                           fmt::format("service name '{}' is used twice", s.name));
      }
      wf.services.push_back(std::move(s));
    }
  }
  link_fallbacks(wf, path);
  const toml::array* tasks = top.array_of_tables("task");
  if (!tasks && wf.services.empty()) {
    throw config_error(path, 1, 1, "task",
                       "the workflow has no [[task]] and no [[service]]: nothing to run");
  }
  long long total = 0;
  for (std::size_t i = 0; tasks && i < tasks->size(); ++i) {
    TaskSpec t =
        read_task(*(*tasks)[i].as_table(), static_cast<int>(i), path, wf.dir, wf.job, check_files);
    if (wf.find_task(t.name) >= 0) {
      throw config_error(path, t.pos.line, t.pos.column, fmt::format("task[{}].name", i),
                         fmt::format("task name '{}' is used twice", t.name));
    }
    total += t.count;
    if (total > kMaxCount) {
      throw config_error(path, t.pos.line, t.pos.column, fmt::format("task[{}].count", i),
                         fmt::format("the workflow has more than {} task instances", kMaxCount));
    }
    wf.tasks.push_back(std::move(t));
  }
  if (tasks) link_dependencies(wf, tasks);
  if (const toml::array* rules = top.array_of_tables("scale")) read_scale_rules(*rules, path, wf);
  check_gpu_users(wf);
  top.reject_unknown({"job", "layout", "task", "service", "scale"});
  return wf;
}

Workflow load_workflow(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw config_error(path, 0, 0, "",
                       fmt::format("cannot read the workflow file: {}", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_workflow(ss.str(), path);
}

}  // namespace tandem::detail
