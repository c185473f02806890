#pragma once
// `tandem supervise`: runs a job's launch command (srun or mpirun, ending
// with `tandem run WORKFLOW ...`) and, when the job ends because a rank
// died (it left no summary), launches it again with --resume inside the
// same allocation: at most --max-relaunches times, and only while the
// allocation has --min-time-left seconds. It exits with the job's own code
// (summary.json), which a launcher does not pass on. The one place the job scripts
// get this from (docs/when-things-go-wrong.md#relaunching-inside-the-allocation).

#include <string>
#include <vector>

namespace tandem::cli {

struct SuperviseOptions {
  int max_relaunches = 3;
  double min_time_left_s = 300;
  std::string signal_as;  // forward stop signals to the launcher as this one ("" = as they come)
  std::vector<std::string> command;
};

int supervise(const SuperviseOptions& options);

}  // namespace tandem::cli
