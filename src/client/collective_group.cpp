// The shared windows and the per-communicator groups of infer_all.

#include <memory>
#include <new>
#include <vector>

#include "base/mpi_check.hpp"
#include "client/collective.hpp"
#include "client/collective_parts.hpp"

namespace tandem::detail {

void SharedWindow::free() {
  if (win_ == MPI_WIN_NULL) return;
  MPI_Win_unlock_all(win_);
  MPI_Win_free(&win_);
  bases_.clear();
  sizes_.clear();
}

void SharedWindow::allocate(MPI_Comm node, std::size_t my_bytes) {
  free();
  void* mine = nullptr;
  TANDEM_MPI_CHECK(MPI_Win_allocate_shared(static_cast<MPI_Aint>(my_bytes), 1, MPI_INFO_NULL, node,
                                           &mine, &win_));
  int size = 0;
  MPI_Comm_size(node, &size);
  bases_.assign(static_cast<std::size_t>(size), nullptr);
  sizes_.assign(static_cast<std::size_t>(size), 0);
  for (int r = 0; r < size; ++r) {
    MPI_Aint bytes = 0;
    int unit = 0;
    void* base = nullptr;
    TANDEM_MPI_CHECK(MPI_Win_shared_query(win_, r, &bytes, &unit, &base));
    bases_[static_cast<std::size_t>(r)] = static_cast<std::byte*>(base);
    sizes_[static_cast<std::size_t>(r)] = static_cast<std::size_t>(bytes);
  }
  // Passive target for the whole life of the window: the ranks order their
  // accesses with the control block's atomics and MPI_Win_sync.
  TANDEM_MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));
}

void SharedWindow::reserve_leader(MPI_Comm node, std::size_t bytes) {
  if (win_ != MPI_WIN_NULL && bytes <= sizes_[0]) return;
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  const std::size_t want = std::max<std::size_t>(1 << 16, aligned(bytes + bytes / 2));
  allocate(node, node_rank == 0 ? want : 0);
}

ControlSlot& NodeGroup::slot(int r) const {
  auto* first = reinterpret_cast<ControlSlot*>(control.base(0) + aligned(sizeof(ControlHeader)));
  return first[r];
}

void NodeGroup::release() {
  control.free();
  in.free();
  out.free();
  for (MPI_Comm* c : {&leaders, &node, &comm}) {
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
}

int NodeGroups::on_comm_free(MPI_Comm comm, int /*keyval*/, void* group, void* groups) {
  auto* self = static_cast<NodeGroups*>(groups);
  std::unique_ptr<NodeGroup> g(static_cast<NodeGroup*>(group));
  // Every rank of the communicator is in MPI_Comm_free, so the node's
  // ranks free the windows together; from our destructor, nobody else is.
  if (!self->closing_) g->release();
  std::erase(self->attached_, comm);
  --self->alive_;
  return MPI_SUCCESS;
}

int NodeGroups::on_finalize(MPI_Comm /*comm*/, int /*keyval*/, void* /*unused*/, void* groups) {
  static_cast<NodeGroups*>(groups)->closing_ = true;
  return MPI_SUCCESS;
}

NodeGroups::~NodeGroups() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized || keyval_ == MPI_KEYVAL_INVALID) return;
  closing_ = true;
  for (MPI_Comm c : std::vector<MPI_Comm>(attached_)) MPI_Comm_delete_attr(c, keyval_);
  MPI_Comm_delete_attr(MPI_COMM_SELF, finalize_keyval_);
  MPI_Comm_free_keyval(&keyval_);
  MPI_Comm_free_keyval(&finalize_keyval_);
}

NodeGroup& NodeGroups::of(MPI_Comm comm) {
  if (keyval_ == MPI_KEYVAL_INVALID) {
    TANDEM_MPI_CHECK(
        MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &NodeGroups::on_comm_free, &keyval_, this));
    TANDEM_MPI_CHECK(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &NodeGroups::on_finalize,
                                            &finalize_keyval_, this));
    TANDEM_MPI_CHECK(MPI_Comm_set_attr(MPI_COMM_SELF, finalize_keyval_, nullptr));
  }
  void* found = nullptr;
  int flag = 0;
  TANDEM_MPI_CHECK(MPI_Comm_get_attr(comm, keyval_, &found, &flag));
  if (flag) return *static_cast<NodeGroup*>(found);

  auto g = std::make_unique<NodeGroup>();
  TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &g->comm));
  MPI_Comm_rank(g->comm, &g->rank);
  TANDEM_MPI_CHECK(
      MPI_Comm_split_type(g->comm, MPI_COMM_TYPE_SHARED, g->rank, MPI_INFO_NULL, &g->node));
  MPI_Comm_rank(g->node, &g->node_rank);
  MPI_Comm_size(g->node, &g->node_size);
  TANDEM_MPI_CHECK(
      MPI_Comm_split(g->comm, g->node_rank == 0 ? 0 : MPI_UNDEFINED, g->rank, &g->leaders));
  if (g->node_rank == 0) MPI_Comm_size(g->leaders, &g->nodes);
  TANDEM_MPI_CHECK(MPI_Bcast(&g->nodes, 1, MPI_INT, 0, g->node));
  g->comm_rank_of.resize(static_cast<std::size_t>(g->node_size));
  TANDEM_MPI_CHECK(
      MPI_Allgather(&g->rank, 1, MPI_INT, g->comm_rank_of.data(), 1, MPI_INT, g->node));

  // The control block, made by the leader before anyone looks at it.
  const std::size_t control_bytes =
      aligned(sizeof(ControlHeader)) + static_cast<std::size_t>(g->node_size) * sizeof(ControlSlot);
  g->control.allocate(g->node, g->node_rank == 0 ? control_bytes : 0);
  if (g->node_rank == 0) {
    new (g->control.base(0)) ControlHeader();
    for (int r = 0; r < g->node_size; ++r) new (&g->slot(r)) ControlSlot();
  }
  g->in.allocate(g->node, 1 << 16);
  g->control.sync();
  TANDEM_MPI_CHECK(MPI_Barrier(g->node));
  g->control.sync();
  NodeGroup& made = *g;
  TANDEM_MPI_CHECK(MPI_Comm_set_attr(comm, keyval_, g.release()));
  attached_.push_back(comm);
  ++alive_;
  return made;
}

}  // namespace tandem::detail
