// Replica choice: a READY replica on the client's node first, then the one
// with the fewest requests outstanding, ties in turn.

#include <gtest/gtest.h>

#include "client/client_impl.hpp"
#include "layout/plan.hpp"

using namespace tandem::detail;

namespace {

struct Fixture {
  Workflow wf = parse_workflow(
      "[[service]]\nname='m'\nbackend='echo'\nreplicas=3\nplacement='per_node'\n"
      "[[task]]\nname='a'\nfunction='f'\n",
      "/x/wf.toml", false);
  Plan plan = make_plan(wf, block_nodes(9, 3));  // replica r on node r
  RoutingTable table;
  std::vector<int> outstanding = std::vector<int>(3, 0);
  int next = 0;

  Fixture() {
    table.states = {std::vector<int>(3, static_cast<int>(ServiceState::READY))};
    table.reasons = {std::vector<std::string>(3)};
  }
};

}  // namespace

TEST(Routing, PrefersTheReplicaOnTheClientsNode) {
  Fixture f;
  for (int node = 0; node < 3; ++node) {
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(choose_replica(f.plan, f.table, f.outstanding, node, 0, f.next), node);
    }
  }
  // Even when the local replica is busier.
  f.outstanding = {5, 0, 0};
  EXPECT_EQ(choose_replica(f.plan, f.table, f.outstanding, 0, 0, f.next), 0);
}

TEST(Routing, WithoutALocalReplicaTakesTheLeastLoaded) {
  Fixture f;
  f.outstanding = {4, 1, 3};
  EXPECT_EQ(choose_replica(f.plan, f.table, f.outstanding, 7, 0, f.next), 1);
  f.outstanding = {0, 0, 0};
  // Ties go round in turn.
  std::vector<int> seen;
  for (int k = 0; k < 6; ++k)
    seen.push_back(choose_replica(f.plan, f.table, f.outstanding, 7, 0, f.next));
  EXPECT_EQ(seen, (std::vector<int>{2, 0, 1, 2, 0, 1}));
}

TEST(Routing, OnlyReadyReplicasAreChosen) {
  Fixture f;
  f.table.states[0][0] = static_cast<int>(ServiceState::FAILED);
  f.table.states[0][1] = static_cast<int>(ServiceState::STARTING);
  EXPECT_EQ(choose_replica(f.plan, f.table, f.outstanding, 0, 0, f.next), 2);
  f.table.states[0][2] = static_cast<int>(ServiceState::FAILED);
  EXPECT_EQ(choose_replica(f.plan, f.table, f.outstanding, 0, 0, f.next), -1);
}
