// The model versions a replica rank holds (ml_ranks/serving/model_versions.*):
// which version the policy serves, which go after a switch, the signature
// check of a new version, and reading a model directory in Triton's layout.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ml_ranks/serving/model_versions.hpp"
#include "support/temp_dir.hpp"

using tandem::DType;
using tandem::Tensor;
using tandem::detail::check_outputs;
using tandem::detail::list_model_dir;
using tandem::detail::LoadedVersion;
using tandem::detail::ServiceSpec;
using tandem::detail::VersionSet;
using tandem::test::TempDir;

namespace {

LoadedVersion version(int n) {
  LoadedVersion v;
  v.version = n;
  v.path = "/m/" + std::to_string(n);
  return v;
}

}  // namespace

TEST(Versions, LatestServesTheNewestHeld) {
  VersionSet set(0);
  EXPECT_EQ(set.served(), 0);
  set.add(version(2));
  set.add(version(5));
  set.add(version(3));
  EXPECT_EQ(set.served(), 5);
  EXPECT_TRUE(set.would_serve(6));
  EXPECT_FALSE(set.would_serve(4));
  EXPECT_TRUE(set.remove(5));
  EXPECT_FALSE(set.remove(5));
  EXPECT_EQ(set.served(), 3);
  EXPECT_EQ(set.held(), (std::vector<int>{2, 3}));
}

TEST(Versions, APinnedPolicyServesOnlyItsVersion) {
  VersionSet set(3);
  set.add(version(4));
  EXPECT_EQ(set.served(), 0) << "version 3 is not held";
  set.add(version(3));
  EXPECT_EQ(set.served(), 3);
  EXPECT_TRUE(set.would_serve(3));
  EXPECT_FALSE(set.would_serve(9));
}

TEST(Versions, BeyondKeepsTheServedAndTheNewestOthers) {
  VersionSet set(0);
  for (int v : {1, 2, 3, 4}) set.add(version(v));
  EXPECT_EQ(set.beyond(1), (std::vector<int>{3, 2, 1}));
  EXPECT_EQ(set.beyond(2), (std::vector<int>{2, 1}));
  EXPECT_TRUE(set.beyond(4).empty());
  VersionSet pinned(2);
  for (int v : {1, 2, 3, 4}) pinned.add(version(v));
  EXPECT_EQ(pinned.beyond(2), (std::vector<int>{3, 1})) << "2 is served; 4 is the newest other";
}

TEST(Versions, OutputsAreCheckedAgainstTheSignature) {
  ServiceSpec s;
  s.outputs = {{"y", static_cast<int>(DType::FP32), {-1, 4}}};
  EXPECT_EQ(check_outputs(s, {{"y", Tensor::zeros(DType::FP32, {1, 4})}}), "");
  EXPECT_NE(check_outputs(s, {{"y", Tensor::zeros(DType::FP64, {1, 4})}}).find("is FP64"),
            std::string::npos);
  EXPECT_NE(check_outputs(s, {{"y", Tensor::zeros(DType::FP32, {1, 2})}}).find("shape [1, 2]"),
            std::string::npos);
  EXPECT_NE(check_outputs(s, {{"y", Tensor::zeros(DType::FP32, {2, 4})}}).find("for one row"),
            std::string::npos)
      << "one row in, one row out";
  EXPECT_NE(check_outputs(s, {}).find("returns 0 output(s)"), std::string::npos);
  ServiceSpec open;  // no signature: anything goes
  EXPECT_EQ(check_outputs(open, {{"z", Tensor::zeros(DType::INT8, {3})}}), "");
}

TEST(Versions, AModelDirectoryListsNumberedVersionsWithAModel) {
  TempDir dir;
  const auto root = dir.path();
  for (const char* d : {"1", "3", "12", "tmp-4", "abc", "0", "5"}) {
    std::filesystem::create_directories(root / d);
  }
  for (const char* d : {"1", "3", "12", "tmp-4", "abc", "0"}) {
    std::ofstream(root / d / "model.pt") << "x";
  }
  // 5 has no model.pt yet: not a version until it does.
  const auto found = list_model_dir(root.string());
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].version, 1);
  EXPECT_EQ(found[1].version, 3);
  EXPECT_EQ(found[2].version, 12);
  EXPECT_EQ(found[2].path, (root / "12" / "model.pt").string());
  EXPECT_EQ(found[2].size, 1);
  EXPECT_GT(found[2].mtime_ns, 0);
  EXPECT_TRUE(list_model_dir((root / "missing").string()).empty());
}
