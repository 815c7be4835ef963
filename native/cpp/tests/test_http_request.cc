// RequestParser: incremental parsing, pipelining, the 16 KiB head limit, malformed input.
#include "http_request.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

using State = RequestParser::State;

TEST(RequestParser, test_parser_complete_request) {
  RequestParser p;
  std::string req = "GET /call?target=https%3A%2F%2Fx HTTP/1.1\r\nHost: a\r\n\r\n";
  p.append(req.data(), req.size());
  ASSERT_EQ(p.parse(), State::Complete);
  Request r = p.take();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/call");
  EXPECT_EQ(r.query, "target=https%3A%2F%2Fx");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_FALSE(p.has_buffered());
}

TEST(RequestParser, test_parser_byte_by_byte) {
  RequestParser p;
  std::string req = "GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  for (size_t i = 0; i + 1 < req.size(); ++i) {
    p.append(&req[i], 1);
    ASSERT_EQ(p.parse(), State::NeedMore) << i;
  }
  p.append(&req.back(), 1);
  ASSERT_EQ(p.parse(), State::Complete);
  EXPECT_FALSE(p.take().keep_alive);
}

TEST(RequestParser, test_parser_pipelined_requests) {
  RequestParser p;
  std::string two = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  p.append(two.data(), two.size());
  ASSERT_EQ(p.parse(), State::Complete);
  EXPECT_EQ(p.take().path, "/a");
  EXPECT_TRUE(p.has_buffered());
  ASSERT_EQ(p.parse(), State::Complete);
  EXPECT_EQ(p.take().path, "/b");
  EXPECT_EQ(p.parse(), State::NeedMore);
}

TEST(RequestParser, test_parser_skips_body) {
  RequestParser p;
  std::string req = "POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\n\r\n";
  p.append(req.data(), req.size());
  ASSERT_EQ(p.parse(), State::Complete);
  EXPECT_EQ(p.take().method, "POST");
  ASSERT_EQ(p.parse(), State::Complete);
  EXPECT_EQ(p.take().path, "/x");
}

TEST(RequestParser, test_parser_oversize_head_is_431) {
  RequestParser p;
  std::string req = "GET /hello HTTP/1.1\r\nX-Big: " + std::string(17000, 'a') + "\r\n\r\n";
  p.append(req.data(), req.size());
  ASSERT_EQ(p.parse(), State::Failed);
  EXPECT_EQ(p.error().status, 431);
  EXPECT_EQ(p.error().code, "headers_too_large");
}

TEST(RequestParser, test_parser_oversize_head_in_pieces_is_431) {
  RequestParser p;
  std::string start = "GET /hello HTTP/1.1\r\n";
  p.append(start.data(), start.size());
  ASSERT_EQ(p.parse(), State::NeedMore);
  std::string line = "X-Header: " + std::string(1000, 'b') + "\r\n";
  State s = State::NeedMore;
  for (int i = 0; i < 20 && s == State::NeedMore; ++i) {
    p.append(line.data(), line.size());
    s = p.parse();
  }
  ASSERT_EQ(s, State::Failed);
  EXPECT_EQ(p.error().status, 431);
}

TEST(RequestParser, test_parser_head_just_under_limit_ok) {
  RequestParser p;
  std::string head = "GET /hello HTTP/1.1\r\nX: ";
  std::string tail = "\r\n\r\n";
  head += std::string(RequestParser::kMaxHead - head.size() - tail.size(), 'c') + tail;
  ASSERT_EQ(head.size(), RequestParser::kMaxHead);
  p.append(head.data(), head.size());
  EXPECT_EQ(p.parse(), State::Complete);
}

struct Malformed {
  const char* name;
  const char* bytes;
};

class RequestParserMalformed : public ::testing::TestWithParam<Malformed> {};

TEST_P(RequestParserMalformed, test_parser_malformed_is_400) {
  RequestParser p;
  std::string b = GetParam().bytes;
  p.append(b.data(), b.size());
  ASSERT_EQ(p.parse(), State::Failed);
  EXPECT_EQ(p.error().status, 400);
  EXPECT_EQ(p.error().code, "bad_request");
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, RequestParserMalformed,
    ::testing::Values(Malformed{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
                      Malformed{"bad_version", "GET / HTTP/9.9x\r\n\r\n"},
                      Malformed{"control_char_in_header_name", "GET / HTTP/1.1\r\nBad\x01Header: x\r\n\r\n"},
                      Malformed{"bad_content_length", "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"},
                      Malformed{"http2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
                      Malformed{"lf_in_method", "G\nET / HTTP/1.1\r\n\r\n"}),
    [](const ::testing::TestParamInfo<Malformed>& p) { return std::string(p.param.name); });

TEST(Query, test_query_decoding) {
  auto q = parse_query("target=https%3A%2F%2F127.0.0.1%3A8081%2Fhello&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fb&x");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->at("target"), "https://127.0.0.1:8081/hello");
  EXPECT_EQ(q->at("expect"), "spiffe://zt.lab/svc/b");
  EXPECT_EQ(q->at("x"), "");
  EXPECT_FALSE(parse_query("a=%zz").has_value());
  EXPECT_FALSE(parse_query("a=%2").has_value());
  EXPECT_EQ(parse_query("a=1&a=2")->at("a"), "1");
}

}  // namespace
}  // namespace zt
