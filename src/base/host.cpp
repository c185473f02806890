#include "base/host.hpp"

#include <unistd.h>

#include <cstdlib>

namespace tandem::detail {

std::string node_name() {
  if (const char* slurm = std::getenv("SLURMD_NODENAME"); slurm && *slurm) return slurm;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return {};
  return host;
}

}  // namespace tandem::detail
