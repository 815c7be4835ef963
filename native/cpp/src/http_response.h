// HTTP/1.1 responses. Every body is JSON (contracts section 5) except /metrics.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace zt {

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  bool close = false;  // close the connection after sending
};

Response json_response(int status, const nlohmann::json& body);
// {"error": code, "reason": reason}, the error shape everywhere.
Response error_response(int status, const std::string& code, const std::string& reason);

std::string serialize_response(const Response& r, bool keep_alive, bool with_body = true);

const char* status_text(int status);

}  // namespace zt
