#include "logger.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace zt {

namespace {
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}
}  // namespace

std::string rfc3339_millis_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::string out(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm));
  auto millis = static_cast<int>(ms % 1000);
  out += '.';
  for (int div : {100, 10, 1}) out += static_cast<char>('0' + millis / div % 10);
  out += 'Z';
  return out;
}

Logger::Logger(std::string component, Sink sink) : component_(std::move(component)), sink_(std::move(sink)) {}

void Logger::log(LogLevel level, std::string_view event, nlohmann::json fields) {
  nlohmann::ordered_json line = nlohmann::ordered_json::object();  // ts, level, ... first
  line["ts"] = rfc3339_millis_now();
  line["level"] = level_name(level);
  line["component"] = component_;
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto& [key, value] : fields.items()) line[key] = nlohmann::ordered_json(value);
  }
  // Peers control some fields (URI SANs, paths): replace invalid UTF-8 rather than throw.
  std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(mu_);
  if (sink_) {
    sink_(text);
  } else {
    text.push_back('\n');
    // A failed write to stderr has nowhere left to be reported, and a logger must never stop
    // the service: the line is dropped, knowingly.
    (void)std::fwrite(text.data(), 1, text.size(), stderr);
    (void)std::fflush(stderr);
  }
}

}  // namespace zt
