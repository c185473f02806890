#pragma once
// A C API handle over a rank's own C++ client, for code in the same process
// that speaks the C API: Python function tasks, whose tandem.Client is
// ctypes over these handles, reach the services straight over the worker's
// MPI client this way, with no proxy in between.

#include "tandem/client.hpp"
#include "tandem/tandem.h"

namespace tandem::detail::capi {

/// A handle over @p client, which must outlive it. The Python plugin keeps
/// its one for the life of the process; tandem_disconnect leaves such a
/// handle alone, as it leaves a session's client.
tandem_client* wrap_client(tandem::Client& client);

}  // namespace tandem::detail::capi
