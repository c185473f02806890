// The functions that workflows in the docs name, for `tandem validate` and
// `tandem run` of those blocks: each one only reports that it ran.
#include <cstdio>

#include <tandem/tandem.hpp>

TANDEM_TASK(simulate) {
  std::printf("simulate %lld\n", static_cast<long long>(ctx.index()));
}
TANDEM_TASK(my_solver) {
  std::printf("my_solver %lld\n", static_cast<long long>(ctx.index()));
}
