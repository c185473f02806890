// The journal: lines a resumed run can read back, and a torn last line.

#include <gtest/gtest.h>

#include <fstream>

#include "config/workflow.hpp"
#include "coordinator/journal.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;
using tandem::test::TempDir;

TEST(Journal, WritesAndReadsBackFinalStates) {
  TempDir dir;
  const auto wf2 =
      parse_workflow("[[task]]\nname='sim'\nfunction='f'\ncount=3\n", "/x/wf.toml", false);
  const std::string path = (dir.path() / "journal.jsonl").string();
  {
    Journal j(path, wf2);
    Instance done;
    done.task = 0;
    done.index = 0;
    done.attempt = 1;
    done.state = TaskState::DONE;
    j.append(done);
    Instance failed = done;
    failed.index = 2;
    failed.state = TaskState::FAILED;
    failed.reason = "exited with code 3 \"quoted\"\n";
    j.append(failed);
    j.flush();
  }
  std::ofstream(path, std::ios::app) << "{\"task\":\"sim\",\"ind";  // torn by a crash
  const auto states = read_journal(path);
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states.at({"sim", 0}), TaskState::DONE);
  EXPECT_EQ(states.at({"sim", 2}), TaskState::FAILED);
}
