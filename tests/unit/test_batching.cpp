// Checking requests against a signature and forming batches, without MPI.

#include <gtest/gtest.h>

#include "ml_ranks/serving/batching.hpp"

using namespace tandem;
using namespace tandem::detail;

namespace {

ServiceSpec signed_spec() {
  const auto wf = parse_workflow(
      "[[service]]\nname='m'\nbackend='echo'\n"
      "inputs=[{name='a', dtype='FP32', shape=[-1, 2]}, {name='b', dtype='INT64', shape=[-1]}]\n",
      "/x/wf.toml", false);
  return wf.services[0];
}

QueuedRequest request(const ServiceSpec& spec, std::int64_t rows, float first) {
  std::vector<float> a(rows * 2);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = first + i;
  std::vector<std::int64_t> b(rows, 7);
  QueuedRequest r;
  r.inputs = {{"b", Tensor::from(b, {rows})}, {"a", Tensor::from(a, {rows, 2})}};
  std::string why;
  EXPECT_TRUE(check_request(spec, r.inputs, r.rows, r.key, why)) << why;
  return r;
}

}  // namespace

TEST(Batching, RequestsArePutInSignatureOrder) {
  const auto spec = signed_spec();
  const auto r = request(spec, 3, 0);
  EXPECT_EQ(r.inputs[0].name, "a");
  EXPECT_EQ(r.inputs[1].name, "b");
  EXPECT_EQ(r.rows, 3);
}

TEST(Batching, InputsThatDisagreeOnRowsAreRejected) {
  const auto spec = signed_spec();
  TensorList in{{"a", Tensor::zeros(DType::FP32, {3, 2})}, {"b", Tensor::zeros(DType::INT64, {4})}};
  std::int64_t rows = 0;
  std::uint64_t key = 0;
  std::string why;
  EXPECT_FALSE(check_request(spec, in, rows, key, why));
  EXPECT_NE(why.find("disagree on the batch dimension"), std::string::npos) << why;
}

TEST(Batching, BatchesTakeCompatibleRequestsUpToMaxBatch) {
  const auto spec = signed_spec();
  std::deque<QueuedRequest> q;
  for (int k = 0; k < 5; ++k) q.push_back(request(spec, 2, 100.f * k));
  auto batch = take_batch(q, 7);
  EXPECT_EQ(batch.size(), 3u);  // 2 + 2 + 2 rows fit in 7, a fourth would not
  EXPECT_EQ(q.size(), 2u);
  const TensorList joined = concatenate(batch);
  ASSERT_EQ(joined[0].tensor.shape(), (std::vector<std::int64_t>{6, 2}));
  const auto a = joined[0].tensor.to_vector<float>();
  EXPECT_EQ(a[0], 0.f);
  EXPECT_EQ(a[4], 100.f);
  EXPECT_EQ(a[8], 200.f);
  const TensorList second = slice_rows(joined, 2, 2);
  EXPECT_EQ(second[0].tensor.to_vector<float>(), (std::vector<float>{100, 101, 102, 103}));
}

TEST(Batching, IncompatibleRequestsStartANewBatch) {
  ServiceSpec open;  // no signature: any tensors, batched when their shapes agree
  std::deque<QueuedRequest> q;
  for (std::int64_t width : {3, 3, 4, 3}) {
    QueuedRequest r;
    r.inputs = {{"x", Tensor::zeros(DType::FP32, {1, width})}};
    std::string why;
    ASSERT_TRUE(check_request(open, r.inputs, r.rows, r.key, why));
    q.push_back(std::move(r));
  }
  EXPECT_EQ(take_batch(q, 64).size(), 2u);
  EXPECT_EQ(take_batch(q, 64).size(), 1u);
  EXPECT_EQ(take_batch(q, 64).size(), 1u);
}

TEST(Batching, DueWhenFullOldOrNotWaiting) {
  const auto spec = signed_spec();
  const auto now = std::chrono::steady_clock::now();
  std::deque<QueuedRequest> q;
  q.push_back(request(spec, 2, 0));
  q.back().received = now;
  EXPECT_TRUE(batch_due(q, 64, 0, false, now));      // max_delay 0: never wait
  EXPECT_FALSE(batch_due(q, 64, 1000, false, now));  // young and not full
  EXPECT_TRUE(batch_due(q, 2, 1000, false, now));    // full
  EXPECT_TRUE(batch_due(q, 64, 1000, true, now));    // draining
  EXPECT_TRUE(batch_due(q, 64, 1000, false, now + std::chrono::milliseconds(2)));  // old
}
