// KServe v2 bodies: requests as the protocol wants them, and every way a
// response can be wrong.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>

#include "ml_ranks/http/kserve.hpp"
#include "tandem/error.hpp"

using namespace tandem;
using namespace tandem::detail;
using nlohmann::json;

TEST(KServe, JsonRequestCarriesNamesShapesTypesAndData) {
  const TensorList in{{"x", Tensor::from(std::vector<float>{1, 2, 3, 4}, {2, 2})},
                      {"n", Tensor::from(std::vector<std::int64_t>{7}, {1})}};
  const json body = json::parse(kserve::json_request(in, {"y"}, "req-1"));
  EXPECT_EQ(body["id"], "req-1");
  EXPECT_EQ(body["inputs"][0]["name"], "x");
  EXPECT_EQ(body["inputs"][0]["shape"], json({2, 2}));
  EXPECT_EQ(body["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(body["inputs"][0]["data"], json({1.0, 2.0, 3.0, 4.0}));
  EXPECT_EQ(body["inputs"][1]["datatype"], "INT64");
  EXPECT_EQ(body["outputs"][0]["name"], "y");
  EXPECT_THROW(kserve::json_request({{"h", Tensor::zeros(DType::FP16, {2})}}, {}, "r"),
               tandem::error);
}

TEST(KServe, BinaryRequestPutsTheBytesAfterTheHeader) {
  const TensorList in{{"x", Tensor::from(std::vector<float>{1, 2}, {1, 2})}};
  std::size_t header = 0;
  const std::string body = kserve::binary_request(in, {"y"}, "r", header);
  ASSERT_EQ(body.size(), header + 8);
  const json h = json::parse(body.substr(0, header));
  EXPECT_EQ(h["inputs"][0]["parameters"]["binary_data_size"], 8);
  EXPECT_EQ(h["outputs"][0]["parameters"]["binary_data"], true);
  float back[2];
  std::memcpy(back, body.data() + header, 8);
  EXPECT_EQ(back[1], 2.f);
}

TEST(KServe, JsonResponsesBecomeTensors) {
  TensorList out;
  std::string why;
  ASSERT_TRUE(kserve::parse_response(
      R"({"model_name":"m","outputs":[{"name":"y","shape":[2,1],"datatype":"FP64","data":[0.5,1.5]},
          {"name":"ok","shape":[2],"datatype":"BOOL","data":[true,false]}]})",
      std::nullopt, out, why))
      << why;
  EXPECT_EQ(find_tensor(out, "y").to_vector<double>(), (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(find_tensor(out, "ok").dtype(), DType::BOOL);
}

TEST(KServe, BinaryResponsesBecomeTensors) {
  const std::string header =
      R"({"outputs":[{"name":"y","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]})";
  std::int32_t v[2] = {5, -6};
  std::string body = header + std::string(reinterpret_cast<const char*>(v), 8);
  TensorList out;
  std::string why;
  ASSERT_TRUE(kserve::parse_response(body, header.size(), out, why)) << why;
  EXPECT_EQ(out[0].tensor.to_vector<std::int32_t>(), (std::vector<std::int32_t>{5, -6}));
  // Cut short.
  EXPECT_FALSE(kserve::parse_response(body.substr(0, body.size() - 3), header.size(), out, why));
  EXPECT_NE(why.find("cut short"), std::string::npos) << why;
}

TEST(KServe, BadResponsesSayWhatIsWrong) {
  TensorList out;
  std::string why;
  auto bad = [&](const std::string& body, const std::string& words) {
    EXPECT_FALSE(kserve::parse_response(body, std::nullopt, out, why)) << body;
    EXPECT_NE(why.find(words), std::string::npos) << why;
  };
  bad(R"({"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1.0)", "not valid JSON");
  bad(R"({"model_name":"m"})", "no \"outputs\" array");
  bad(R"({"error":"model not loaded"})", "model not loaded");
  bad(R"({"outputs":[{"name":"y","datatype":"FP32","data":[]}]})", "lacks its name, shape");
  bad(R"({"outputs":[{"name":"y","shape":[2],"datatype":"FLOAT","data":[1,2]}]})",
      "unknown datatype");
  bad(R"({"outputs":[{"name":"y","shape":[3],"datatype":"FP32","data":[1,2]}]})",
      "has 2 values but its shape needs 3");
  bad(R"({"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":["a","b"]}]})",
      "not a number");
  bad(R"({"outputs":[{"name":"y","shape":[-2],"datatype":"FP32","data":[]}]})", "bad shape");
  bad(R"({"outputs":[{"name":"y","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":"x"}}]})",
      "not a size");
  EXPECT_FALSE(kserve::parse_response("{}", 10, out, why));
  EXPECT_NE(why.find("Inference-Header-Content-Length says 10"), std::string::npos);
}
