// Writes the workflow back as TOML with every default filled in, so the run
// directory records exactly what ran.

#include <sstream>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "config/workflow.hpp"

namespace tandem::detail {

namespace {

toml::array to_array(const std::vector<std::string>& v) {
  toml::array a;
  for (const auto& s : v) a.push_back(s);
  return a;
}

// JSON objects from `args` back into TOML, so the file stays one language.
toml::table json_to_table(const nlohmann::json& j);

void push_json(toml::array& a, const nlohmann::json& v);

template <typename Sink>
void put_json(Sink&& put, const nlohmann::json& v) {
  if (v.is_object()) {
    put(json_to_table(v));
  } else if (v.is_array()) {
    toml::array a;
    for (const auto& e : v) push_json(a, e);
    put(std::move(a));
  } else if (v.is_boolean()) {
    put(v.get<bool>());
  } else if (v.is_number_integer()) {
    put(v.get<std::int64_t>());
  } else if (v.is_number()) {
    put(v.get<double>());
  } else {
    put(v.get<std::string>());
  }
}

void push_json(toml::array& a, const nlohmann::json& v) {
  put_json([&](auto&& x) { a.push_back(std::forward<decltype(x)>(x)); }, v);
}

toml::table json_to_table(const nlohmann::json& j) {
  toml::table t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    put_json([&](auto&& x) { t.insert_or_assign(it.key(), std::forward<decltype(x)>(x)); },
             it.value());
  }
  return t;
}

}  // namespace

std::string resolved_toml(const Workflow& wf) {
  toml::table root;
  toml::table job{{"name", wf.job.name},
                  {"run_root", wf.job.run_root},
                  {"libraries", to_array(wf.job.libraries)},
                  {"pythonpath", to_array(wf.job.pythonpath)},
                  {"max_chunk", wf.job.max_chunk},
                  {"kill_grace", wf.job.kill_grace_s},
                  {"journal_sync_interval", wf.job.journal_sync_s},
                  {"isolate", wf.job.isolate},
                  {"on_timeout", std::string(name_of(wf.job.on_timeout))},
                  {"idle", std::string(name_of(wf.job.idle))},
                  {"launcher", std::string(name_of(wf.job.launcher))},
                  {"launcher_args", to_array(wf.job.launcher_args)},
                  {"bind", std::string(name_of(wf.job.bind))}};
  if (wf.job.gpus_per_node >= 0) job.insert("gpus_per_node", wf.job.gpus_per_node);
  // Only a [job.backoff] the file gave: without one, `idle` chooses it.
  if (wf.job.backoff_given) {
    job.insert("backoff", toml::table{{"spin", wf.job.backoff.spin},
                                      {"min_sleep_us", wf.job.backoff.min_sleep_us},
                                      {"max_sleep_us", wf.job.backoff.max_sleep_us}});
  }
  const StagingSpec& st = wf.job.staging;
  toml::table staging{{"shm_threshold", st.shm_threshold},
                      {"hdf5_threshold", st.hdf5_threshold},
                      {"shm_budget_mb", st.shm_budget_mb}};
  if (!st.dir.empty()) staging.insert("dir", st.dir);
  job.insert("staging", std::move(staging));
  const MonitorSpec& m = wf.job.monitor;
  toml::table monitor{{"trace", m.trace},
                      {"trace_node_mb", m.trace_node_mb},
                      {"chrome_trace", m.chrome_trace},
                      {"metrics_interval", m.metrics_interval_s},
                      {"progress_interval", m.progress_interval_s}};
  if (m.trace_max_events > 0) monitor.insert("trace_max_events", m.trace_max_events);
  job.insert("monitor", std::move(monitor));
  toml::table proxy{{"enabled", wf.job.proxy.enabled}};
  if (!wf.job.proxy.socket_dir.empty()) proxy.insert("socket_dir", wf.job.proxy.socket_dir);
  job.insert("proxy", std::move(proxy));
  root.insert("job", std::move(job));
  toml::table layout;
  if (wf.layout.workers > 0) {
    layout.insert("workers", wf.layout.workers);
  } else {
    layout.insert("workers", "rest");
  }
  layout.insert("worker_slots", wf.layout.worker_slots);
  root.insert("layout", std::move(layout));
  toml::array tasks;
  for (const TaskSpec& t : wf.tasks) {
    toml::table tt{{"name", t.name}};
    if (t.is_python()) {
      tt.insert("python", t.python);
    } else if (t.kind == TaskKind::function) {
      tt.insert("function", t.function);
    } else {
      tt.insert("command", to_array(t.command));
    }
    toml::table env;
    for (const auto& [k, v] : t.env) env.insert(k, v);
    tt.insert("env", std::move(env));
    tt.insert("cwd", t.cwd);
    tt.insert("clean_mpi_env", t.clean_mpi_env);
    tt.insert("count", t.count);
    tt.insert("ranks", t.ranks);
    if (t.kind == TaskKind::command) {
      tt.insert("cores_per_rank", t.cores_per_rank);
      tt.insert("bind", std::string(name_of(t.bind)));
    }
    tt.insert("gpus_per_rank", t.gpus_per_rank);
    tt.insert("after", to_array(t.after));
    tt.insert("retries", t.retries);
    tt.insert("priority", t.priority);
    tt.insert("timeout", t.timeout_s);
    if (t.kind == TaskKind::function) {
      tt.insert("isolate", t.isolate);
      tt.insert("on_timeout", std::string(name_of(t.on_timeout)));
    }
    tt.insert("args", json_to_table(nlohmann::json::parse(t.args_json)));
    if (t.has_sweep()) {
      toml::table sweep;
      for (std::size_t k = 0; k < t.sweep_keys.size(); ++k) {
        nlohmann::json values = nlohmann::json::array();
        for (const std::string& v : t.sweep_values[k]) values.push_back(nlohmann::json::parse(v));
        sweep.insert(t.sweep_keys[k], *json_to_table({{"v", values}})["v"].as_array());
      }
      tt.insert("sweep", std::move(sweep));
      tt.insert("sweep_mode", std::string(name_of(t.sweep_mode)));
    }
    tasks.push_back(std::move(tt));
  }
  root.insert("task", std::move(tasks));
  std::ostringstream os;
  os << "# The workflow as Tandem ran it, with every default filled in.\n"
     << "# Source: " << wf.path << "\n\n"
     << root << "\n";
  return os.str();
}

}  // namespace tandem::detail
