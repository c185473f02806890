// `tandem run --replay OLD_RUN`: every service of the workflow that the old
// run recorded (`record = true`) is answered from its recording instead of
// its model (backend = "replay"), so the run needs no model, no libtorch
// and no GPU, and its tasks get the numbers they got then.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/workflow.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace fs = std::filesystem;

std::vector<std::string> recording_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("replica-", 0) == 0 && entry.path().extension() == ".h5") {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void apply_replay(Workflow& wf, const std::string& old_run) {
  std::error_code ec;
  const std::string run = fs::absolute(old_run, ec).lexically_normal().string();
  if (!fs::is_directory(run, ec)) {
    throw config_error(wf.path, 0, 0, "",
                       fmt::format("--replay: {} is not a run directory", old_run));
  }
  int replayed = 0;
  for (ServiceSpec& s : wf.services) {
    const std::string dir = run + "/services/" + s.name;
    if (recording_files(dir).empty()) continue;
    s.backend = BackendKind::replay;
    s.recording = dir;
    s.record = false;
    // What only the model needed: its files, its server, its GPUs.
    s.model.clear();
    s.model_dir.clear();
    s.command.clear();
    s.url.clear();
    s.gpus_per_replica = 0;
    s.device = "cpu";
    s.ranks_per_replica = 1;  // a replay answers each request whole
    ++replayed;
  }
  if (replayed == 0) {
    throw config_error(wf.path, 0, 0, "",
                       fmt::format("--replay: {} recorded none of this workflow's services (a "
                                   "service records with record = true; its recording is "
                                   "RUN_DIR/services/NAME/replica-N.h5)",
                                   run));
  }
  wf.replay_of = run;
}

}  // namespace tandem::detail
