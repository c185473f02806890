// The HDF5 layer on its own: what is written reads back, tables grow by
// rows, and every failure is an io_error that names the file.

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "hdf5/file.hpp"
#include "support/temp_dir.hpp"
#include "tandem/error.hpp"

using namespace tandem;
using namespace tandem::detail;
using tandem::test::TempDir;

namespace {

struct Pair {
  std::int64_t big;
  std::int32_t small;
  std::int32_t pad;
};

h5::Compound pair_type() {
  h5::Compound t(sizeof(Pair));
  t.add("big", offsetof(Pair, big), h5::Int::i64);
  t.add("small", offsetof(Pair, small), h5::Int::i32);
  return t;
}

}  // namespace

TEST(Hdf5, ColumnsAndAttributesReadBack) {
  TempDir dir;
  const std::string path = dir.path().string() + "/c.h5";
  {
    h5::File f = h5::File::create(path);
    f.write_column("ints", std::vector<std::int64_t>{1, -2, 3000000000LL});
    f.write_column("small", std::vector<std::int32_t>{7, 8});
    f.write_column("names", std::vector<std::string>{"a", "", "longer name"});
    f.write_column("none", std::vector<std::string>{});
    f.set_attribute("count", std::int64_t{42});
    f.set_attribute("what", std::string("a note"));
    f.close();
  }
  const h5::File f = h5::File::open(path);
  EXPECT_EQ(f.read_ints("ints"), (std::vector<std::int64_t>{1, -2, 3000000000LL}));
  EXPECT_EQ(f.read_ints("small"), (std::vector<std::int64_t>{7, 8}));
  EXPECT_EQ(f.read_strings("names"), (std::vector<std::string>{"a", "", "longer name"}));
  EXPECT_TRUE(f.read_strings("none").empty());
  EXPECT_TRUE(f.read_ints("missing").empty());
  EXPECT_EQ(f.int_attribute("count"), 42);
  EXPECT_EQ(f.string_attribute("what"), "a note");
  EXPECT_EQ(f.int_attribute("missing"), 0);
  EXPECT_FALSE(f.has("/a/b/c"));  // a missing group on the way is a no, not an error
}

TEST(Hdf5, TablesGrowByRowsFromTwoThreads) {
  TempDir dir;
  const std::string path = dir.path().string() + "/t.h5";
  h5::File f = h5::File::create(path);
  h5::Dataset rows = f.create_growing("pairs", pair_type().packed().id(), {}, 4);
  h5::Dataset grid = f.create_growing("/inputs/grid", h5::stored_type(DType::FP32), {2, 3}, 16);
  // The recorder appends from its own thread while the trace writes from the
  // main one: the layer's lock keeps them apart.
  std::thread other([&] {
    std::vector<float> block(2 * 2 * 3);
    for (int round = 0; round < 50; ++round) {
      for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<float>(round);
      grid.append(h5::stored_type(DType::FP32), 2, block.data());
    }
  });
  for (int round = 0; round < 50; ++round) {
    std::vector<Pair> batch{{round, -round, 0}, {round * 10LL, round, 0}, {1, 2, 0}};
    rows.append(pair_type().id(), batch.size(), batch.data());
  }
  other.join();
  EXPECT_EQ(rows.shape(), (std::vector<std::uint64_t>{150}));
  EXPECT_EQ(grid.shape(), (std::vector<std::uint64_t>{100, 2, 3}));
  std::vector<Pair> back(150);
  rows.read(pair_type().id(), back.data());
  EXPECT_EQ(back[3].big, 1);
  EXPECT_EQ(back[3].small, -1);
  EXPECT_EQ(back[149].big, 1);
  EXPECT_EQ(back[149].small, 2);
  std::vector<float> all(100 * 6);
  grid.read(h5::stored_type(DType::FP32), all.data());
  EXPECT_EQ(all[0], 0.0f);
  EXPECT_EQ(all.back(), 49.0f);
  EXPECT_TRUE(h5::holds(grid.type().id(), DType::FP32));
  EXPECT_FALSE(h5::holds(grid.type().id(), DType::INT32));
  EXPECT_FALSE(h5::holds(grid.type().id(), DType::FP64));
}

TEST(Hdf5, FailuresNameTheFile) {
  TempDir dir;
  const std::string missing = dir.path().string() + "/no/such/dir/x.h5";
  try {
    h5::File::open(missing);
    FAIL() << "opened a missing file";
  } catch (const io_error& e) {
    EXPECT_EQ(e.path(), missing);
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  EXPECT_THROW(h5::File::create(missing), io_error);

  const std::string path = dir.path().string() + "/d.h5";
  h5::File f = h5::File::create(path);
  f.write_column("x", std::vector<std::int64_t>{1});
  try {
    f.write_column("x", std::vector<std::int64_t>{2});  // exists already
    FAIL() << "made dataset x twice";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find("x"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.open_dataset("nothing"), io_error);
  f.close();
}
