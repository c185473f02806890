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
/// Lowers the flag, at the start of a run in a process that ran one before.
void clear_stop();
/// Process groups that the handler forwards SIGTERM to (commands running
/// on this rank). Not async-signal-safe to call; the handler only reads.
void add_forward_group(pid_t pgid);
void remove_forward_group(pid_t pgid);

}  // namespace tandem::detail
