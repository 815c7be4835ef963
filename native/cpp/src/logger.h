// Structured logs (docs/contracts.md section 7): one JSON object per line, each with ts
// (RFC 3339 UTC, milliseconds), level, component (the --name) and event, plus the event's
// fields: the one line schema of every zt component (docs/logs.md, zt/log_line.schema.json).
//
// Lines go to a sink (stderr by default; tests capture them). Writing is serialised so lines
// from different threads never interleave. Callers never pass secrets: the logger has no
// access to keys or passwords, and nothing here formats them.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace zt {

enum class LogLevel { Debug, Info, Warn, Error };

class Logger {
 public:
  using Sink = std::function<void(const std::string& line)>;  // line without newline

  explicit Logger(std::string component, Sink sink = nullptr);

  void log(LogLevel level, std::string_view event, nlohmann::json fields = nlohmann::json::object());
  void info(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
    log(LogLevel::Info, event, std::move(fields));
  }
  void warn(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
    log(LogLevel::Warn, event, std::move(fields));
  }
  void error(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
    log(LogLevel::Error, event, std::move(fields));
  }

  const std::string& component() const { return component_; }

 private:
  std::string component_;
  Sink sink_;
  std::mutex mu_;
};

// "2026-11-28T17:30:00.123Z"
std::string rfc3339_millis_now();

}  // namespace zt
