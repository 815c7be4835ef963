#include "http_request.h"

#include <algorithm>

namespace zt {

RequestParser::RequestParser() {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::on_message_begin;
  settings_.on_url = &RequestParser::on_url;
  settings_.on_headers_complete = &RequestParser::on_headers_complete;
  settings_.on_body = &RequestParser::on_body;
  settings_.on_message_complete = &RequestParser::on_message_complete;
}

int RequestParser::on_message_begin(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->current_ = Request{};
  self->headers_done_ = false;
  self->head_bytes_ = 0;
  self->body_bytes_ = 0;
  return 0;
}

int RequestParser::on_url(http_parser* p, const char* at, size_t len) {
  static_cast<RequestParser*>(p->data)->current_.target.append(at, len);
  return 0;
}

int RequestParser::on_headers_complete(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->headers_done_ = true;
  self->current_.method = http_method_str(static_cast<http_method>(p->method));
  self->current_.keep_alive = http_should_keep_alive(p) != 0;
  return 0;
}

int RequestParser::on_body(http_parser* p, const char*, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->body_bytes_ += len;
  if (self->body_bytes_ > kMaxBody) {
    self->body_too_large_ = true;
    return 1;
  }
  return 0;
}

int RequestParser::on_message_complete(http_parser* p) {
  http_parser_pause(p, 1);  // one request at a time; the rest stays buffered
  return 0;
}

RequestParser::State RequestParser::failed(int status, std::string code, std::string reason) {
  error_ = HttpError{status, std::move(code), std::move(reason)};
  state_ = State::Failed;
  return state_;
}

RequestParser::State RequestParser::parse() {
  if (state_ != State::NeedMore) return state_;
  while (pos_ < buf_.size()) {
    size_t feed = buf_.size() - pos_;
    if (!headers_done_) {
      // Never hand the parser more head than the limit allows, so an endless header line
      // costs us at most 16 KiB of buffer.
      if (head_bytes_ >= kMaxHead) {
        return failed(431, "headers_too_large", "the request head exceeds 16 KiB");
      }
      feed = std::min(feed, kMaxHead - head_bytes_);
    }
    size_t n = http_parser_execute(&parser_, &settings_, buf_.data() + pos_, feed);
    if (!headers_done_) head_bytes_ += n;
    pos_ += n;
    http_errno err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_PAUSED) {
      if (parser_.http_major != 1) {
        return failed(400, "bad_request", "only HTTP/1.x is supported");
      }
      state_ = State::Complete;
      break;
    }
    if (err == HPE_HEADER_OVERFLOW) {
      return failed(431, "headers_too_large", "the request head exceeds 16 KiB");
    }
    if (body_too_large_) return failed(413, "payload_too_large", "the request body exceeds 1 MiB");
    if (err != HPE_OK) {
      return failed(400, "bad_request",
                    std::string("malformed HTTP request: ") + http_errno_description(err));
    }
    if (n < feed) return failed(400, "bad_request", "malformed HTTP request");
  }
  if (state_ == State::NeedMore && !headers_done_ && head_bytes_ >= kMaxHead) {
    return failed(431, "headers_too_large", "the request head exceeds 16 KiB");
  }
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return state_;
}

Request RequestParser::take() {
  Request r = std::move(current_);
  current_ = Request{};
  size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  // An absolute-form target (GET https://host/path): route on its path.
  if (r.path.rfind("http://", 0) == 0 || r.path.rfind("https://", 0) == 0) {
    size_t slash = r.path.find('/', r.path.find("//") + 2);
    r.path = slash == std::string::npos ? "/" : r.path.substr(slash);
  }
  buf_.erase(0, pos_);
  pos_ = 0;
  state_ = State::NeedMore;
  headers_done_ = false;
  head_bytes_ = 0;
  http_parser_pause(&parser_, 0);
  return r;
}

std::optional<std::string> percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex(s[i + 1]);
    int lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    out.emplace(std::move(*name), std::move(*value));
  }
  return out;
}

}  // namespace zt
