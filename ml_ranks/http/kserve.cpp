#include "ml_ranks/http/kserve.hpp"

#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tandem/error.hpp"

namespace tandem::detail::kserve {

namespace {

using nlohmann::json;

template <typename T>
json values(const Tensor& t) {
  const T* p = static_cast<const T*>(t.data());
  return json(std::vector<T>(p, p + t.numel()));
}

json data_of(const NamedTensor& t) {
  switch (t.tensor.dtype()) {
    case DType::BOOL: {
      const auto* p = static_cast<const std::uint8_t*>(t.tensor.data());
      json a = json::array();
      for (std::int64_t i = 0; i < t.tensor.numel(); ++i) a.push_back(p[i] != 0);
      return a;
    }
    case DType::UINT8:
      return values<std::uint8_t>(t.tensor);
    case DType::UINT16:
      return values<std::uint16_t>(t.tensor);
    case DType::UINT32:
      return values<std::uint32_t>(t.tensor);
    case DType::UINT64:
      return values<std::uint64_t>(t.tensor);
    case DType::INT8:
      return values<std::int8_t>(t.tensor);
    case DType::INT16:
      return values<std::int16_t>(t.tensor);
    case DType::INT32:
      return values<std::int32_t>(t.tensor);
    case DType::INT64:
      return values<std::int64_t>(t.tensor);
    case DType::FP32:
      return values<float>(t.tensor);
    case DType::FP64:
      return values<double>(t.tensor);
    default:
      throw argument_error(
          fmt::format("tensor '{}' is {}, which KServe v2 JSON cannot carry; use the "
                      "binary-data extension",
                      t.name, dtype_name(t.tensor.dtype())));
  }
}

template <typename T>
bool fill(const json& data, Tensor& t, std::string& why) {
  T* p = static_cast<T*>(t.data());
  std::int64_t i = 0;
  for (const auto& v : data) {
    if (!v.is_number() && !v.is_boolean()) {
      why = "a value is not a number";
      return false;
    }
    p[i++] = v.is_boolean() ? static_cast<T>(v.get<bool>()) : v.get<T>();
  }
  return true;
}

bool fill_json(const json& data, Tensor& t, std::string& why) {
  switch (t.dtype()) {
    case DType::BOOL:
    case DType::UINT8:
      return fill<std::uint8_t>(data, t, why);
    case DType::UINT16:
      return fill<std::uint16_t>(data, t, why);
    case DType::UINT32:
      return fill<std::uint32_t>(data, t, why);
    case DType::UINT64:
      return fill<std::uint64_t>(data, t, why);
    case DType::INT8:
      return fill<std::int8_t>(data, t, why);
    case DType::INT16:
      return fill<std::int16_t>(data, t, why);
    case DType::INT32:
      return fill<std::int32_t>(data, t, why);
    case DType::INT64:
      return fill<std::int64_t>(data, t, why);
    case DType::FP32:
      return fill<float>(data, t, why);
    case DType::FP64:
      return fill<double>(data, t, why);
    default:
      why = fmt::format("{} data cannot come as JSON", dtype_name(t.dtype()));
      return false;
  }
}

json describe(const NamedTensor& t) {
  return {
      {"name", t.name}, {"shape", t.tensor.shape()}, {"datatype", dtype_name(t.tensor.dtype())}};
}

}  // namespace

std::string json_request(const TensorList& inputs, const std::vector<std::string>& outputs,
                         const std::string& id) {
  json body = {{"id", id}, {"inputs", json::array()}};
  for (const auto& t : inputs) {
    json in = describe(t);
    in["data"] = data_of(t);
    body["inputs"].push_back(std::move(in));
  }
  if (!outputs.empty()) {
    body["outputs"] = json::array();
    for (const auto& name : outputs) body["outputs"].push_back({{"name", name}});
  }
  return body.dump();
}

std::string binary_request(const TensorList& inputs, const std::vector<std::string>& outputs,
                           const std::string& id, std::size_t& header_length) {
  json header = {{"id", id}, {"inputs", json::array()}};
  for (const auto& t : inputs) {
    json in = describe(t);
    in["parameters"] = {{"binary_data_size", t.tensor.nbytes()}};
    header["inputs"].push_back(std::move(in));
  }
  header["outputs"] = json::array();
  for (const auto& name : outputs) {
    header["outputs"].push_back({{"name", name}, {"parameters", {{"binary_data", true}}}});
  }
  std::string body = header.dump();
  header_length = body.size();
  for (const auto& t : inputs) {
    body.append(static_cast<const char*>(t.tensor.data()), t.tensor.nbytes());
  }
  return body;
}

bool parse_response(const std::string& body, std::optional<std::size_t> header_length,
                    TensorList& outputs, std::string& why) {
  const std::size_t json_size = header_length.value_or(body.size());
  if (json_size > body.size()) {
    why = fmt::format("Inference-Header-Content-Length says {} bytes but the body has {}",
                      json_size, body.size());
    return false;
  }
  json doc;
  try {
    doc = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(json_size));
  } catch (const json::exception& e) {
    why = fmt::format("the response is not valid JSON: {}", e.what());
    return false;
  }
  if (doc.contains("error")) {
    why = fmt::format("the server answered with an error: {}", doc["error"].dump());
    return false;
  }
  if (!doc.contains("outputs") || !doc["outputs"].is_array()) {
    why = "the response has no \"outputs\" array";
    return false;
  }
  std::size_t offset = json_size;
  outputs.clear();
  for (const auto& o : doc["outputs"]) {
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string() || !o.contains("shape") ||
        !o["shape"].is_array() || !o.contains("datatype") || !o["datatype"].is_string()) {
      why = "an output lacks its name, shape or datatype";
      return false;
    }
    const std::string name = o["name"].get<std::string>();
    const auto dtype = dtype_from_name(o["datatype"].get<std::string>());
    if (!dtype) {
      why = fmt::format("output '{}' has an unknown datatype {}", name, o["datatype"].dump());
      return false;
    }
    std::vector<std::int64_t> shape;
    for (const auto& d : o["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) {
        why = fmt::format("output '{}' has a bad shape {}", name, o["shape"].dump());
        return false;
      }
      shape.push_back(d.get<std::int64_t>());
    }
    Tensor t = Tensor::zeros(*dtype, shape);
    const json* params = o.contains("parameters") ? &o["parameters"] : nullptr;
    if (params && params->is_object() && params->contains("binary_data_size")) {
      if (!(*params)["binary_data_size"].is_number_unsigned()) {
        why = fmt::format("output '{}' has a binary_data_size that is not a size", name);
        return false;
      }
      const auto n = (*params)["binary_data_size"].get<std::size_t>();
      if (n != t.nbytes()) {
        why = fmt::format("output '{}' says {} binary bytes but its shape needs {}", name, n,
                          t.nbytes());
        return false;
      }
      if (offset + n > body.size()) {
        why = fmt::format("output '{}' is cut short: {} of {} bytes arrived", name,
                          body.size() - std::min(offset, body.size()), n);
        return false;
      }
      std::memcpy(t.data(), body.data() + offset, n);
      offset += n;
    } else {
      if (!o.contains("data") || !o["data"].is_array()) {
        why = fmt::format("output '{}' has neither data nor binary_data_size", name);
        return false;
      }
      const json& data = o["data"];
      if (static_cast<std::int64_t>(data.size()) != t.numel()) {
        why = fmt::format("output '{}' has {} values but its shape needs {}", name, data.size(),
                          t.numel());
        return false;
      }
      if (!fill_json(data, t, why)) {
        why = fmt::format("output '{}': {}", name, why);
        return false;
      }
    }
    outputs.push_back({name, std::move(t)});
  }
  return true;
}

}  // namespace tandem::detail::kserve
