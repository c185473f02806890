#pragma once
// Files that must never be found half-written: the journal's neighbours
// (summary.json, history.jsonl) and every final file of a run.

#include <string>
#include <string_view>
#include <vector>

namespace tandem::detail {

/// Writes @p text to @p path through a temporary file in the same
/// directory, flushed to disk and renamed over @p path: a reader finds the
/// old file or the new one, never a part.
/// @throws tandem::io_error naming the file and the cause.
void write_file_atomically(const std::string& path, std::string_view text);

/// Appends @p line (which ends in a newline) to @p path in one write and
/// flushes it to disk. A line that cannot be written whole is cut off
/// again, so the file holds whole lines only.
/// @throws tandem::io_error naming the file and the cause.
void append_line_durably(const std::string& path, std::string_view line);

/// Cuts off a last line that does not end in a newline (what a crash in
/// the middle of a write leaves), so that appending starts a line of its
/// own. Returns the bytes cut.
long long cut_torn_last_line(const std::string& path);

/// The last @p max_lines lines of @p path (at most @p max_bytes of them),
/// joined by " | ", for a failure's reason; empty when there are none.
std::string tail_of_file(const std::string& path, int max_lines = 5, std::size_t max_bytes = 800);

/// Finds a program name without a '/' in the directories of @p path (a
/// PATH value; execvp's default when null), as execvp would: the first
/// executable regular file. Empty when there is none.
std::string find_program(const std::string& name, const char* path);

/// The value of @p name in @p env ("KEY=VALUE" entries; the first wins, as
/// getenv in a process given that environment would see it), or null.
const char* env_value(const std::vector<std::string>& env, const std::string& name);

/// Writes all of @p data to @p fd, resuming after short writes and
/// interrupts. False with errno set when a write fails.
bool write_all(int fd, const char* data, std::size_t size);

}  // namespace tandem::detail
