// Incremental HTTP/1.1 request parsing on top of nodejs/http-parser (Debian's
// libhttp-parser-dev): a well-kept, fuzzed state machine rather than a hand-rolled one.
//
// Bytes arrive in whatever pieces TLS records deliver; append() them and call parse() until it
// says Complete (take() the request; any bytes after it stay buffered for the next, pipelined
// request) or Failed (error() says which response to send before closing). Limits from the
// contract: a request head over 16 KiB is 431; malformed input is 400. Request bodies are read
// and discarded (nothing here takes one), up to 1 MiB (413 beyond).
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace zt {

struct Request {
  std::string method;  // "GET", ...
  std::string target;  // the raw request-target
  std::string path;    // target without the query string (as sent, not decoded)
  std::string query;   // after '?', as sent
  bool keep_alive = true;
};

struct HttpError {
  int status = 400;
  std::string code;    // contract error code, e.g. "bad_request"
  std::string reason;  // for the peer
};

class RequestParser {
 public:
  static constexpr size_t kMaxHead = size_t{16} * 1024;
  static constexpr size_t kMaxBody = size_t{1024} * 1024;

  enum class State { NeedMore, Complete, Failed };

  RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  void append(const char* data, size_t n) { buf_.append(data, n); }
  State parse();
  bool has_buffered() const { return pos_ < buf_.size(); }
  // After Complete: the request; the parser then waits for the next one.
  Request take();
  const HttpError& error() const { return error_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t len);
  static int on_message_complete(http_parser* p);
  State failed(int status, std::string code, std::string reason);

  http_parser parser_{};
  http_parser_settings settings_{};
  std::string buf_;
  size_t pos_ = 0;
  State state_ = State::NeedMore;
  bool headers_done_ = false;
  size_t head_bytes_ = 0;
  size_t body_bytes_ = 0;
  bool body_too_large_ = false;
  Request current_;
  HttpError error_;
};

// Percent-decodes a query component; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s);
// name -> value of a query string; the first occurrence of a name wins; nullopt when a
// component is malformed.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);

}  // namespace zt
