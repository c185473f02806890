#pragma once
// What the previous job's ranks had in hand when it ended badly, read from
// their black boxes (base/rank_record.hpp), turned into journal lines that
// charge the lost attempts to the instances that lost them.
//
// Who is to blame: a rank that recorded a fatal signal, an exit() inside a
// function task or an on_timeout abort is charged for the function tasks it
// ran; a replica that died is charged to the tasks whose requests were in
// its batch. A rank that ended without a word (SIGKILL, the out-of-memory
// killer) is charged only when other ranks recorded the launcher's SIGTERM,
// that is when it died first; when every rank ended silently (a node lost,
// the whole job killed) nobody is charged and the work simply runs again.

#include <string>
#include <vector>

namespace tandem::detail {

struct LostAttempt {
  std::string task;
  int index = 0;
  int attempt = 0;
  std::string reason;
};

/// The attempts lost with the ranks of the job that left @p ranks_dir.
std::vector<LostAttempt> find_lost_attempts(const std::string& ranks_dir);

/// Rank 0, before a resumed job starts: appends a line per lost attempt to
/// @p journal_path (those already there are skipped), durably, then removes
/// the black boxes so that the next job starts with fresh ones. Returns the
/// attempts charged.
/// @throws tandem::io_error when the journal cannot be written.
std::vector<LostAttempt> charge_lost_attempts(const std::string& ranks_dir,
                                              const std::string& journal_path);

}  // namespace tandem::detail
