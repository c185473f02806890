// Staging without MPI: shared-memory segments and descriptors, HDF5 files
// that h5py reads and writes, and the checks a replica makes on both.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "support/temp_dir.hpp"
#include "transport/hdf5_io.hpp"
#include "transport/shm.hpp"
#include "transport/staging.hpp"

using namespace tandem;
using namespace tandem::detail;
using tandem::test::TempDir;

namespace {

// Encodes as a client would and decodes as the replica does.
bool round_trip(const TensorList& in, Transport t, const std::string& h5, TensorList& out,
                std::string& why) {
  Outgoing o = stage(wire::kRequest, 7, 0, in, {}, t, h5, 0);
  wire::Decoded d;
  if (!wire::decode(o.message.buffer, o.message.size, d, why)) return false;
  const bool ok = resolve(d, false, why);
  out = d.tensors;
  finish(o);
  return ok;
}

int run_python(const std::string& code) {
  const std::string cmd = "/usr/bin/python3 -c '" + code + "'";
  return std::system(cmd.c_str());
}

}  // namespace

TEST(Staging, SharedMemoryCarriesEveryDtype) {
  for (int t = 0; t <= static_cast<int>(DType::BYTES); ++t) {
    Tensor x = Tensor::zeros(static_cast<DType>(t), {100, 3});
    auto* b = static_cast<unsigned char*>(x.data());
    for (std::size_t i = 0; i < x.nbytes(); ++i) b[i] = static_cast<unsigned char>(i * 7 + t);
    TensorList out;
    std::string why;
    ASSERT_TRUE(round_trip({{"x", x}, {"y", x}}, Transport::shm, "", out, why)) << why;
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[1].tensor.shape(), x.shape());
    EXPECT_EQ(std::memcmp(out[1].tensor.data(), x.data(), x.nbytes()), 0);
  }
}

TEST(Staging, SegmentsAreReusedOnceHandedBack) {
  shm::Segment* a = shm::OwnPool::instance().acquire(1000);
  ASSERT_NE(a, nullptr);
  shm::Segment* b = shm::OwnPool::instance().acquire(1000);
  EXPECT_NE(a, b);  // a is in use
  shm::OwnPool::release(a);
  EXPECT_EQ(shm::OwnPool::instance().acquire(1000), a);
  shm::OwnPool::release(a);
  shm::OwnPool::release(b);
}

TEST(Staging, ASegmentHeldByADeadProcessIsTakenBack) {
  auto& pool = shm::OwnPool::instance();
  pool.remove_all();         // start from no segments
  pool.set_budget(1 << 20);  // room for one 1 MiB segment, no more
  shm::Segment* held = pool.acquire(1 << 20);
  ASSERT_NE(held, nullptr);
  // Handed to a process that then dies without handing it back.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  held->header()->holder_pid.store(static_cast<std::uint32_t>(child));
  EXPECT_EQ(pool.acquire(1 << 20), held);
  // A live holder keeps it.
  held->header()->holder_pid.store(static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(pool.acquire(1 << 20), nullptr);
  shm::OwnPool::release(held);
  pool.set_budget(std::size_t{4} << 30);
}

TEST(Staging, ADescriptorOutsideTheSegmentIsRefused) {
  Tensor x = Tensor::zeros(DType::FP32, {4, 4});
  Outgoing o = stage(wire::kRequest, 1, 0, {{"x", x}}, {}, Transport::shm, "", 0);
  ASSERT_NE(o.segment, nullptr);
  // Forge a descriptor that points past the end of the segment.
  std::vector<wire::Staged> staged{{Transport::shm, o.segment->name, o.segment->capacity() - 8}};
  wire::Encoded forged = wire::encode(wire::kRequest, 1, 0, {{"x", x}}, {}, &staged);
  wire::Decoded d;
  std::string why;
  ASSERT_TRUE(wire::decode(forged.buffer, forged.size, d, why)) << why;
  EXPECT_FALSE(resolve(d, false, why));
  EXPECT_NE(why.find("points outside shared memory"), std::string::npos) << why;
  // A segment that does not exist.
  staged[0] = {Transport::shm, "/tandem.1.999999", 0};
  forged = wire::encode(wire::kRequest, 1, 0, {{"x", x}}, {}, &staged);
  ASSERT_TRUE(wire::decode(forged.buffer, forged.size, d, why));
  EXPECT_FALSE(resolve(d, false, why));
  EXPECT_NE(why.find("cannot open shared memory /tandem.1.999999"), std::string::npos) << why;
  finish(o);
}

TEST(Staging, HdfFilesCarryEveryDtypeAndH5pyReadsThem) {
  TempDir dir;
  for (int t = 0; t <= static_cast<int>(DType::BYTES); ++t) {
    Tensor x = Tensor::zeros(static_cast<DType>(t), {5, 2});
    auto* b = static_cast<unsigned char*>(x.data());
    for (std::size_t i = 0; i < x.nbytes(); ++i) b[i] = static_cast<unsigned char>(i + 1);
    TensorList out;
    std::string why;
    const std::string h5 = (dir.path() / ("t" + std::to_string(t) + ".h5")).string();
    Outgoing o = stage(wire::kRequest, 42, 0, {{"field", x}}, {}, Transport::hdf5, h5, 0);
    wire::Decoded d;
    ASSERT_TRUE(wire::decode(o.message.buffer, o.message.size, d, why));
    ASSERT_TRUE(resolve(d, false, why)) << why;
    EXPECT_EQ(std::memcmp(d.tensors[0].tensor.data(), x.data(), x.nbytes()), 0);
    if (static_cast<DType>(t) == DType::FP32) {
      // h5py sees a plain float32 dataset with its attributes.
      EXPECT_EQ(
          run_python("import h5py, numpy as np\n"
                     "f = h5py.File(\"" +
                     h5 +
                     "\", \"r\")\n"
                     "d = f[\"field\"]\n"
                     "assert d.shape == (5, 2) and d.dtype == np.float32, (d.shape, d.dtype)\n"
                     "assert d.attrs[\"tandem_dtype\"] == b\"FP32\" or d.attrs[\"tandem_dtype\"] "
                     "== \"FP32\"\n"
                     "assert int(d.attrs[\"request_id\"]) == 42\n"
                     "raw = np.frombuffer(d[()].tobytes(), dtype=np.uint8)\n"
                     "assert (raw == (np.arange(40) + 1).astype(np.uint8)).all()\n"),
          0);
    }
    finish(o);
    EXPECT_FALSE(std::filesystem::exists(h5));  // staging files go when done
  }
}

TEST(Staging, TandemReadsWhatH5pyWrote) {
  TempDir dir;
  const std::string h5 = (dir.path() / "from_h5py.h5").string();
  ASSERT_EQ(run_python("import h5py, numpy as np\n"
                       "with h5py.File(\"" +
                       h5 +
                       "\", \"w\") as f:\n"
                       "    f[\"x\"] = np.arange(12, dtype=np.float64).reshape(3, 4)\n"
                       "    f[\"n\"] = np.arange(3, dtype=np.int32)\n"),
            0);
  Tensor x;
  std::string why;
  ASSERT_TRUE(hdf5::read(h5, "/x", DType::FP64, {3, 4}, x, why)) << why;
  EXPECT_EQ(x.to_vector<double>()[11], 11.0);
  Tensor n;
  ASSERT_TRUE(hdf5::read(h5, "/n", DType::INT32, {3}, n, why)) << why;
  EXPECT_EQ(n.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, 2}));
  // What is wrong is said plainly.
  EXPECT_FALSE(hdf5::read(h5, "/x", DType::FP32, {3, 4}, x, why));
  EXPECT_NE(why.find("does not hold FP32 values"), std::string::npos) << why;
  EXPECT_FALSE(hdf5::read(h5, "/x", DType::FP64, {4, 3}, x, why));
  EXPECT_NE(why.find("has shape [3, 4] but the request says [4, 3]"), std::string::npos) << why;
  EXPECT_FALSE(hdf5::read(h5, "/missing", DType::FP64, {3, 4}, x, why));
  EXPECT_NE(why.find("has no dataset /missing"), std::string::npos) << why;
  EXPECT_FALSE(hdf5::read(h5 + ".nope", "/x", DType::FP64, {3, 4}, x, why));
  EXPECT_NE(why.find("cannot open HDF5 file"), std::string::npos) << why;
}

TEST(Staging, StaleSegmentsOfDeadProcessesAreRemoved) {
  // A process that is gone: a child that has exited.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string stale = "/tandem." + std::to_string(child) + ".0";
  const std::string live = "/tandem." + std::to_string(::getpid()) + ".12345";
  for (const auto& name : {stale, live}) {
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  EXPECT_GE(shm::remove_stale(), 1);
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + stale));
  EXPECT_TRUE(std::filesystem::exists("/dev/shm" + live));
  ::shm_unlink(live.c_str());
}

namespace {
// The segments this test process created go with it.
class RemoveSegments : public testing::Environment {
 public:
  void TearDown() override { shm::OwnPool::instance().remove_all(); }
};
const auto* const kRemoveSegments = testing::AddGlobalTestEnvironment(new RemoveSegments);
}  // namespace
