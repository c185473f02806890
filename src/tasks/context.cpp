#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/raise.hpp"

#include "tandem/error.hpp"
#include "tandem/task.hpp"
#include "tasks/context_data.hpp"

namespace tandem {

namespace {
const nlohmann::json* find_arg(const detail::TaskContextData* d, const std::string& key) {
  if (!d->args || !d->args->is_object()) return nullptr;
  auto it = d->args->find(key);
  return it == d->args->end() ? nullptr : &*it;
}

[[noreturn]] void wrong_type(const detail::TaskContextData* d, const std::string& key,
                             const char* want, const nlohmann::json& v) {
  throw task_error(
      fmt::format("task '{}': argument '{}' must be {}, not {}", d->name, key, want, v.dump()));
}
}  // namespace

const std::string& TaskContext::name() const noexcept {
  return data_->name;
}
int TaskContext::index() const noexcept {
  return data_->index;
}
int TaskContext::count() const noexcept {
  return data_->count;
}
int TaskContext::attempt() const noexcept {
  return data_->attempt;
}
MPI_Comm TaskContext::comm() const noexcept {
  return data_->comm;
}
int TaskContext::rank() const noexcept {
  return data_->rank;
}
int TaskContext::size() const noexcept {
  return data_->size;
}
const std::filesystem::path& TaskContext::run_dir() const noexcept {
  return data_->run_dir;
}
const std::vector<std::string>& TaskContext::gpus() const noexcept {
  return data_->gpus;
}

const std::filesystem::path& TaskContext::output_dir() const noexcept {
  return data_->output_dir;
}

bool TaskContext::has_arg(const std::string& key) const {
  return find_arg(data_, key) != nullptr;
}

std::string TaskContext::arg_string(const std::string& key, const std::string& fallback) const {
  const nlohmann::json* v = find_arg(data_, key);
  if (!v) return fallback;
  return v->is_string() ? v->get<std::string>() : v->dump();
}

long long TaskContext::arg_int(const std::string& key, long long fallback) const {
  const nlohmann::json* v = find_arg(data_, key);
  if (!v) return fallback;
  if (!v->is_number_integer()) wrong_type(data_, key, "an integer", *v);
  return v->get<long long>();
}

double TaskContext::arg_double(const std::string& key, double fallback) const {
  const nlohmann::json* v = find_arg(data_, key);
  if (!v) return fallback;
  if (!v->is_number()) wrong_type(data_, key, "a number", *v);
  return v->get<double>();
}

bool TaskContext::arg_bool(const std::string& key, bool fallback) const {
  const nlohmann::json* v = find_arg(data_, key);
  if (!v) return fallback;
  if (!v->is_boolean()) wrong_type(data_, key, "true or false", *v);
  return v->get<bool>();
}

Client& TaskContext::client() const {
  if (data_->isolated) {
    throw task_error(
        "an isolated task (isolate = true) runs in a forked child that cannot use MPI, so it "
        "cannot call the services; run it without isolate, or as an executable task");
  }
  if (!data_->client) throw task_error("this task has no client of the job's services");
  return *data_->client;
}

void TaskContext::set_result(const std::string& json) const {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw task_error(fmt::format("task '{}': set_result: not JSON ({})", data_->name, e.what()));
  }
  std::string line = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (line.size() > detail::kMaxResultBytes) {
    throw task_error(fmt::format(
        "task '{}': set_result: {} bytes of JSON, over the {} a journal line holds; write "
        "large results to output_dir()",
        data_->name, line.size(), detail::kMaxResultBytes));
  }
  data_->result = std::move(line);
}

std::string TaskContext::args_json() const {
  return data_->args ? data_->args->dump() : "{}";
}

namespace {

// The coordinator's answer to a steering request, or its error raised.
nlohmann::json steer(const detail::TaskContextData& d, const nlohmann::json& request) {
  if (!d.steer) {
    detail::raise<argument_error>(
        fmt::format("task '{}' submits or waits for tasks but is not marked steering = true in "
                    "the workflow file",
                    d.name));
  }
  nlohmann::json answer = nlohmann::json::parse(d.steer(request.dump()));
  if (answer.contains("error")) {
    detail::raise<argument_error>(answer["error"].get<std::string>());
  }
  return answer;
}

}  // namespace

std::vector<long long> TaskContext::submit(const std::vector<TaskRequest>& requests) const {
  nlohmann::json list = nlohmann::json::array();
  for (const TaskRequest& r : requests) {
    nlohmann::json args = nlohmann::json::parse(r.args_json, nullptr, false);
    if (!args.is_object()) {
      detail::raise<argument_error>(fmt::format(
          "submit: the args of a '{}' request are not a JSON object: {}", r.task, r.args_json));
    }
    // Without a key, the coordinator gives it the submitter's next one.
    nlohmann::json one = {
        {"task", r.task}, {"args", std::move(args)}, {"priority", r.priority}, {"after", r.after}};
    if (!r.key.empty()) one["key"] = r.key;
    if (r.round >= 0) one["round"] = r.round;
    if (r.retries >= 0) one["retries"] = r.retries;
    if (r.timeout_s > 0) one["timeout"] = r.timeout_s;
    for (const std::string& name : r.after_tasks) one["after"].push_back(name);
    list.push_back(std::move(one));
  }
  const nlohmann::json answer = steer(*data_, {{"submit", std::move(list)}});
  return answer.at("handles").get<std::vector<long long>>();
}

long long TaskContext::submit(const TaskRequest& request) const {
  return submit(std::vector<TaskRequest>{request}).front();
}

namespace {

std::vector<TaskResult> wait_for(const detail::TaskContextData& d,
                                 const std::vector<long long>& handles, bool any) {
  const nlohmann::json answer = steer(d, {{"wait", handles}, {"any", any}});
  std::vector<TaskResult> out;
  for (const nlohmann::json& j : answer.at("results")) {
    TaskResult r;
    r.handle = j.at("handle").get<long long>();
    r.task = j.at("task").get<std::string>();
    r.index = j.at("index").get<int>();
    r.state = j.at("state").get<std::string>();
    r.exit_code = j.value("exit_code", 0);
    r.reason = j.value("reason", std::string());
    if (j.contains("result")) r.result_json = j["result"].dump();
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

std::vector<TaskResult> TaskContext::wait(const std::vector<long long>& handles) const {
  return wait_for(*data_, handles, false);
}

std::vector<TaskResult> TaskContext::wait_any(const std::vector<long long>& handles) const {
  return wait_for(*data_, handles, true);
}

}  // namespace tandem
