#pragma once
// SIGINT and SIGTERM become a flag that the loops of every role check, so a
// job stopped by Ctrl-C, scancel or a time limit ends in order: running tasks
// stopped, the journal intact. A worker also registers the process group of
// the command it runs, which the handler signals at once.

#include <signal.h>

namespace tandem::detail {

/// Installs the handlers (idempotent).
void install_stop_handlers();
/// The signal that asked us to stop, or 0.
int stop_signal();
/// Raises the stop flag from inside the program (e.g. a cancel message).
void request_stop(int signal_number);
/// The process group the handler forwards the signal to; 0 for none.
void set_forward_group(pid_t pgid);

}  // namespace tandem::detail
