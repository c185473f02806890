#!/usr/bin/env bash
# Collective inference on 2 fake nodes (issue 37): test_collective's
# per-node, bit-for-bit and error tests with 3 ranks a node, so that each
# node's application ranks form a group of their own, ask their own node's
# replica, and learn the other node's errors. Usage:
# test_collective_nodes.sh TEST_COLLECTIVE
# Exits 77 (skipped) where fake nodes cannot be made.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cluster.sh"
cluster_check || exit 77
cd "$(mktemp -d)" || exit 1
timeout 300 bash -c "source '$here/cluster.sh'; cluster_mpirun 2 3 '$1' \
  --gtest_filter='Collective.EachNode*:Collective.EveryRank*:Collective.ABadShape*:Collective.AFailedService*'"
