// The layout plan: roles and nodes per rank, and layouts that cannot fit.

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "tandem/error.hpp"

using namespace tandem::detail;

namespace {
Workflow flow(const std::string& layout, int ranks = 1) {
  return parse_workflow(
      layout + "\n[[task]]\nname='a'\nfunction='f'\nranks=" + std::to_string(ranks) + "\n",
      "/x/wf.toml", false);
}
}  // namespace

TEST(Plan, CoordinatorThenWorkers) {
  const Plan p = make_plan(flow(""), block_nodes(4, 4));
  ASSERT_EQ(p.ranks.size(), 4u);
  EXPECT_EQ(p.ranks[0].role, Role::coordinator);
  for (int r = 1; r < 4; ++r) {
    EXPECT_EQ(p.ranks[r].role, Role::worker);
    EXPECT_EQ(p.ranks[r].role_index, r - 1);
  }
  EXPECT_EQ(p.workers, 3);
  EXPECT_EQ(p.node_count, 1);
  EXPECT_TRUE(p.notes.empty());
}

TEST(Plan, NodesFollowRanksPerNode) {
  const auto wf = flow("");
  const Plan p = make_plan(wf, block_nodes(8, 3));
  EXPECT_EQ(p.node_count, 3);
  EXPECT_EQ(p.ranks[2].node, 0);
  EXPECT_EQ(p.ranks[3].node, 1);
  EXPECT_EQ(p.ranks[7].node, 2);
  const std::string text = format_plan(wf, p);
  EXPECT_NE(text.find("8 ranks on 3 node(s): 1 coordinator, 7 worker(s)"), std::string::npos)
      << text;
}

TEST(Plan, FewerWorkersLeaveRanksIdleWithANote) {
  const Plan p = make_plan(flow("[layout]\nworkers = 2"), block_nodes(5, 5));
  EXPECT_EQ(p.workers, 2);
  EXPECT_EQ(p.ranks[3].role, Role::idle);
  EXPECT_EQ(p.ranks[4].role, Role::idle);
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_NE(p.notes[0].find("2 rank(s) have no role"), std::string::npos);
}

TEST(Plan, TooFewRanksIsAnErrorAtTheLayoutKey) {
  try {
    make_plan(flow("[layout]\nworkers = 4"), block_nodes(3, 3));
    ADD_FAILURE();
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.key(), "layout.workers");
    EXPECT_EQ(e.line(), 2);
    EXPECT_NE(std::string(e.what()).find("start at least 5 ranks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_plan(flow(""), block_nodes(1, 1)), tandem::config_error);
}

TEST(Plan, TaskWiderThanTheWorkersIsAnError) {
  try {
    make_plan(flow("", 4), block_nodes(4, 4));
    ADD_FAILURE();
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.key(), "task[0].ranks");
    EXPECT_NE(std::string(e.what()).find("needs 4 ranks but the layout has 3 workers"),
              std::string::npos);
  }
  EXPECT_NO_THROW(make_plan(flow("", 3), block_nodes(4, 4)));
}

namespace {
Workflow with_services(const std::string& services) {
  return parse_workflow(services + "\n[[task]]\nname='a'\nfunction='f'\n", "/x/wf.toml", false);
}
}  // namespace

TEST(Plan, SpreadServicesTakeTheLowestRanksAfterTheCoordinator) {
  const auto wf =
      with_services("[[service]]\nname='m'\nbackend='echo'\nreplicas=2\nranks_per_replica=2\n");
  const Plan p = make_plan(wf, block_nodes(7, 7));
  ASSERT_EQ(p.replicas.size(), 2u);
  EXPECT_EQ(p.replicas[0].ranks, (std::vector<int>{1, 2}));
  EXPECT_EQ(p.replicas[1].ranks, (std::vector<int>{3, 4}));
  EXPECT_EQ(p.ranks[3].role, Role::service);
  EXPECT_EQ(p.ranks[3].replica, 1);
  EXPECT_EQ(p.ranks[3].replica_rank, 0);
  EXPECT_EQ(p.ranks[4].replica_rank, 1);
  EXPECT_EQ(p.workers, 2);
  EXPECT_EQ(p.client_ranks(), (std::vector<int>{5, 6}));
  const std::string text = format_plan(wf, p);
  EXPECT_NE(text.find("m replica 1 leader"), std::string::npos) << text;
}

TEST(Plan, PerNodeServicesPutOneReplicaOnEachNode) {
  const auto wf =
      with_services("[[service]]\nname='m'\nbackend='echo'\nreplicas=3\nplacement='per_node'\n");
  const Plan p = make_plan(wf, block_nodes(9, 3));  // nodes: 0-2, 3-5, 6-8
  ASSERT_EQ(p.replicas.size(), 3u);
  EXPECT_EQ(p.replicas[0].ranks, std::vector<int>{1});
  EXPECT_EQ(p.replicas[1].ranks, std::vector<int>{3});
  EXPECT_EQ(p.replicas[2].ranks, std::vector<int>{6});
  for (int r = 0; r < 3; ++r) EXPECT_EQ(p.replicas[r].node, r);
  EXPECT_EQ(p.workers, 5);
}

// placement = "per_node" without `replicas`: one replica on every node the
// job turns out to have, as many as there are nodes.
TEST(Plan, PerNodeWithoutACountPutsAReplicaOnEveryNode) {
  const auto wf = with_services("[[service]]\nname='m'\nbackend='echo'\nplacement='per_node'\n");
  EXPECT_EQ(wf.services[0].replicas, 0);
  for (const int nodes : {1, 2, 4}) {
    const Plan p = make_plan(wf, block_nodes(3 * nodes, 3));
    ASSERT_EQ(p.replicas.size(), static_cast<std::size_t>(nodes));
    for (int r = 0; r < nodes; ++r) EXPECT_EQ(p.replicas[r].node, r);
    EXPECT_EQ(p.workers, 3 * nodes - 1 - nodes);
    EXPECT_NE(format_plan(wf, p).find(fmt::format("service 'm' ({} x 1 rank(s), per_node)", nodes)),
              std::string::npos)
        << format_plan(wf, p);
  }
  // Ranks 0-1 on node 0, rank 2 on node 1: the coordinator and the two
  // replicas leave no worker, which only the nodes could tell.
  try {
    make_plan(wf, block_nodes(3, 2));
    ADD_FAILURE() << "a layout without workers was accepted";
  } catch (const tandem::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("after a replica on each of the 2 nodes"),
              std::string::npos)
        << e.what();
  }
}

TEST(Plan, ServicesThatDoNotFitAreAnError) {
  const auto wf =
      with_services("[[service]]\nname='m'\nbackend='echo'\nreplicas=2\nranks_per_replica=2\n");
  try {
    make_plan(wf, block_nodes(5, 5));
    ADD_FAILURE();
  } catch (const tandem::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("needs at least 6"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 for service 'm' (2 x 2)"), std::string::npos)
        << e.what();
  }
}

TEST(Plan, CoresPerRankMustFitOnTheNodes) {
  auto wf = [](int ranks, int cores) {
    return parse_workflow(fmt::format("[[task]]\nname='a'\ncommand=['/bin/true']\nranks={}\n"
                                      "cores_per_rank={}\n",
                                      ranks, cores),
                          "/x/wf.toml", false);
  };
  // Three nodes of 3 ranks: 2 workers on node 0 (after the coordinator), 3
  // on nodes 1 and 2, 8 in all. Ranks of 2 cores: 1 + 1 + 1 fit, not 4.
  EXPECT_NO_THROW(make_plan(wf(3, 2), block_nodes(9, 3)));
  try {
    make_plan(wf(4, 2), block_nodes(9, 3));
    FAIL() << "4 ranks of 2 cores do not fit on nodes of 2, 3 and 3 workers";
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.key(), "task[0].cores_per_rank");
    EXPECT_NE(std::string(e.what()).find("fit only 3"), std::string::npos) << e.what();
  }
  // More workers in all than the layout has is the ranks' error.
  try {
    make_plan(wf(5, 2), block_nodes(9, 3));
    FAIL() << "10 workers asked of 8";
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.key(), "task[0].ranks");
  }
}

// An elastic service's extra replicas are workers of fixed slots: the
// highest-numbered workers, with their own replica numbers, and with
// per_node each on the node its replica number says.
TEST(Plan, ElasticSlotsAreTheHighestWorkers) {
  const Workflow wf = with_services(
      "[[service]]\nname='s'\nbackend='echo'\n"
      "replicas = { min = 1, max = 3 }\n");
  const Plan p = make_plan(wf, block_nodes(7, 7));
  EXPECT_EQ(p.ranks[1].role, Role::service);
  EXPECT_EQ(p.workers, 5);  // ranks 2-6 stay workers
  ASSERT_EQ(p.replicas.size(), 3u);
  EXPECT_FALSE(p.replicas[0].elastic);
  EXPECT_TRUE(p.replicas[1].elastic);
  EXPECT_EQ(p.replicas[1].ranks, std::vector<int>{6});
  EXPECT_EQ(p.replicas[2].ranks, std::vector<int>{5});
  EXPECT_EQ(p.ranks[6].role, Role::worker);
  EXPECT_EQ(p.ranks[6].elastic_slot, 1);
  EXPECT_EQ(p.ranks[6].replica, 1);
  EXPECT_EQ(p.ranks[2].elastic_slot, -1);
}

TEST(Plan, ElasticPerNodeSlotsStayOnePerNode) {
  const Workflow wf = with_services(
      "[[service]]\nname='s'\nbackend='echo'\nplacement='per_node'\n"
      "replicas = { min = 2, max = 6 }\n");
  const Plan p = make_plan(wf, block_nodes(12, 4));  // nodes: 0-3, 4-7, 8-11
  ASSERT_EQ(p.replicas.size(), 6u);
  for (const ReplicaPlacement& r : p.replicas) {
    EXPECT_EQ(r.node, r.replica % 3) << "replica " << r.replica;
    for (int rank : r.ranks) EXPECT_EQ(p.ranks[rank].node, r.node);
  }
}

TEST(Plan, ElasticMaxPastTheWorkersIsAnErrorAtReplicas) {
  const Workflow wf = with_services(
      "[[service]]\nname='s'\nbackend='echo'\n"
      "replicas = { min = 1, max = 5 }\n");
  try {
    make_plan(wf, block_nodes(5, 5));  // 3 workers: 2 may serve, 1 stays
    FAIL() << "no error";
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.key(), "service.replicas");
    EXPECT_NE(std::string(e.what()).find("may grow to 5 replicas"), std::string::npos) << e.what();
  }
}
