// The error family: every class says its C status and exit code itself,
// the C API and the launcher take them from it, and raise() names the rank.

#include <gtest/gtest.h>

#include <string>

#include "base/raise.hpp"
#include "tandem/error.hpp"
#include "tandem/tandem.h"
#include "tandem/tensor.hpp"

using namespace tandem;

TEST(ErrorFamily, EachClassCarriesItsStatusAndExitCode) {
  EXPECT_EQ(argument_error("x").status(), TANDEM_ERR_ARGUMENT);
  EXPECT_EQ(config_error("f.toml", 3, 1, "job.name", "bad").status(), TANDEM_ERR_CONFIG);
  EXPECT_EQ(mpi_error(1, "x").status(), TANDEM_ERR_MPI);
  EXPECT_EQ(request_error("s", "x").status(), TANDEM_ERR_REQUEST);
  EXPECT_EQ(service_error("s", "x").status(), TANDEM_ERR_SERVICE);
  EXPECT_EQ(model_error("x").status(), TANDEM_ERR_REQUEST);
  EXPECT_EQ(protocol_error("x").status(), TANDEM_ERR_PROTOCOL);
  EXPECT_EQ(io_error("/p", "x").status(), TANDEM_ERR_IO);
  EXPECT_EQ(environment_error("x").status(), TANDEM_ERR_INTERNAL);
  EXPECT_EQ(error("x").status(), TANDEM_ERR_INTERNAL);
  // A service_error is still a request_error to a catch clause.
  try {
    throw service_error("m", "not ready");
  } catch (const request_error& e) {
    EXPECT_EQ(e.service(), "m");
    EXPECT_EQ(e.status(), TANDEM_ERR_SERVICE);
  }
  EXPECT_EQ(task_error("x").exit_code(), 1);
  EXPECT_EQ(config_error("f.toml", 3, 1, "job.name", "bad").exit_code(), 2);
  EXPECT_EQ(io_error("/p", "x").exit_code(), 2);
  EXPECT_EQ(argument_error("x").exit_code(), 2);
}

TEST(ErrorFamily, TensorMisuseIsAnArgumentError) {
  Tensor t = Tensor::zeros(DType::FP32, {2, 2});
  try {
    (void)t.data_as<double>();
    FAIL() << "read FP32 as FP64";
  } catch (const argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("FP64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tensor::zeros(DType::FP32, {-1}), argument_error);
}

TEST(ErrorFamily, TheCApiTakesTheStatusFromTheError) {
  // proxy_unreachable is an io_error that says TANDEM_ERR_CONNECT.
  tandem_client* client = nullptr;
  EXPECT_EQ(tandem_connect_to("/nonexistent/tandem.sock", &client), TANDEM_ERR_CONNECT);
  EXPECT_NE(std::string(tandem_last_error()).find("/nonexistent/tandem.sock"), std::string::npos)
      << tandem_last_error();
  EXPECT_EQ(client, nullptr);
}

TEST(ErrorFamily, RaiseNamesTheRankOnceItIsKnown) {
  using tandem::detail::raise;
  try {
    raise<model_error>("the model failed");
  } catch (const model_error& e) {
    EXPECT_STREQ(e.what(), "the model failed");  // no rank yet: the message alone
  }
  tandem::detail::set_error_origin("rank 3 service 'm' replica 0");
  try {
    raise<environment_error>("libtorch is missing");
  } catch (const environment_error& e) {
    EXPECT_STREQ(e.what(), "rank 3 service 'm' replica 0: libtorch is missing");
  }
  tandem::detail::set_error_origin("");
}
