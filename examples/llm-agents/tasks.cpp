// The agents of the llm-agents example: each task runs a small simulation,
// then asks an OpenAI-compatible language model (served inside the job or
// remote, the task does not care) to judge the result, in a two-turn
// conversation, and writes the exchange to its output directory.

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

namespace {

std::string ask(tandem::Client& client, nlohmann::json& messages) {
  const nlohmann::json request = {{"model", "any"}, {"messages", messages}, {"max_tokens", 128}};
  const auto answer = nlohmann::json::parse(client.call("llm", request.dump()));
  const std::string text = answer.at("choices").at(0).at("message").at("content");
  messages.push_back({{"role", "assistant"}, {"content", text}});
  return text;
}

}  // namespace

TANDEM_TASK(agent) {
  tandem::Client& client = ctx.client();
  client.wait_ready("llm", 120);
  // A stand-in for a simulation: the decay of a quantity with a rate that
  // depends on the task's index.
  const double rate = 0.1 * (ctx.index() + 1);
  const double remaining = std::exp(-rate * 10.0);
  nlohmann::json messages = nlohmann::json::array();
  messages.push_back(
      {{"role", "system"}, {"content", "You review simulation results in one sentence."}});
  messages.push_back(
      {{"role", "user"},
       {"content", "A quantity decayed at rate " + std::to_string(rate) + " for 10 time units; " +
                       std::to_string(remaining) + " of it remains. Is that plausible?"}});
  const std::string first = ask(client, messages);
  messages.push_back({{"role", "user"}, {"content", "What would you run next?"}});
  const std::string second = ask(client, messages);
  std::ofstream(ctx.output_dir() / ("agent-" + std::to_string(ctx.index()) + ".json"))
      << nlohmann::json{{"rate", rate}, {"remaining", remaining}, {"conversation", messages}}.dump(
             2)
      << "\n";
}
