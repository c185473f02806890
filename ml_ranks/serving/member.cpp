// The ranks of a multi-rank replica other than the leader.

#include "ml_ranks/serving/member.hpp"

#include <mpi.h>

#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"
#include "ml_ranks/serving/leader.hpp"
#include "protocol/tags.hpp"
#include "transport/wire.hpp"

namespace tandem::detail {

void serve_as_member(const Job& job, VersionSet& versions, const BackendContext& context) {
  const ServiceSpec& spec = job.wf.services[job.me().service];
  Backoff backoff(job.wf.job.backoff);
  std::unique_ptr<BackgroundLoad> loading;
  for (;;) {
    if (loading && loading->done()) {
      LoadOutcome outcome = loading->take();
      loading.reset();
      if (outcome.loaded.backend) versions.add(std::move(outcome.loaded));
      TANDEM_MPI_CHECK(MPI_Send(outcome.error.data(), static_cast<int>(outcome.error.size()),
                                MPI_CHAR, 0, tags::kReplicaLoaded, job.replica));
    }
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Improbe(0, tags::kReplicaWork, job.replica, &flag, &msg, &status));
    if (!flag) {
      backoff.pause();
      continue;
    }
    backoff.reset();
    wire::Encoded in = receive_matched(msg, status);
    wire::Decoded d;
    std::string why;
    wire::Encoded out;
    if (!wire::decode(in.buffer, in.size, d, why)) {
      out = wire::encode(wire::kReplyError, 0, -1, {}, why);
    } else if (d.header.kind == wire::kStopMember) {
      return;
    } else if (d.header.kind == wire::kLoadModel) {
      const auto j = nlohmann::json::parse(d.text);
      loading = std::make_unique<BackgroundLoad>(
          spec, context, j.at("version").get<int>(), j.at("path").get<std::string>(), false,
          job.idle == IdleMode::shared && spec.swap == SwapMode::beside);
      continue;
    } else if (d.header.kind == wire::kUnloadModel) {
      versions.remove(nlohmann::json::parse(d.text).at("version").get<int>());
      continue;
    } else if (Backend* backend = versions.backend(d.header.model_version)) {
      try {
        out = wire::encode(wire::kReplyOk, d.header.request_id, d.header.service,
                           backend->infer(d.tensors));
      } catch (const std::exception& e) {
        out = wire::encode(wire::kReplyError, d.header.request_id, d.header.service, {}, e.what());
      }
    } else {
      out = wire::encode(
          wire::kReplyError, d.header.request_id, -1, {},
          fmt::format("model version {} is not loaded on this rank", d.header.model_version));
    }
    TANDEM_MPI_CHECK(MPI_Send(out.buffer.get(), static_cast<int>(out.size), MPI_BYTE, 0,
                              tags::kReplicaResult, job.replica));
  }
}

}  // namespace tandem::detail
