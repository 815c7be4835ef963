// Misbehaving peers: malformed HTTP, oversize heads, clients that stall in the handshake or
// mid-request, and non-TLS bytes. None may crash the server or hold up other clients.
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;
using Clock = std::chrono::steady_clock;

class RobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config cfg = test::test_config(pki().id_dir("service-a"));
    cfg.threads = 2;
    cfg.handshake_timeout_ms = 600;
    cfg.idle_timeout_ms = 800;
    svc_ = std::make_unique<ServiceUnderTest>(cfg);
  }
  bool still_serving() {
    auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("client")));
    return r.ok && r.status == 200;
  }
  std::unique_ptr<test::TestConnection> connect() {
    std::string err;
    auto c = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
    EXPECT_TRUE(c) << err;
    return c;
  }
  std::unique_ptr<ServiceUnderTest> svc_;
};

TEST_F(RobustnessTest, test_malformed_http_is_400_and_closed) {
  auto c = connect();
  auto r = c->send_raw("THIS IS NOT HTTP\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json["error"], "bad_request");
  EXPECT_TRUE(r.connection_close);
  EXPECT_TRUE(c->wait_closed(2000));
  EXPECT_TRUE(still_serving());
}

TEST_F(RobustnessTest, test_binary_garbage_after_handshake_is_400) {
  auto c = connect();
  std::string junk;
  for (int i = 0; i < 300; ++i) junk.push_back(static_cast<char>((i * 37) & 0xff));
  auto r = c->send_raw(junk);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(still_serving());
}

TEST_F(RobustnessTest, test_oversize_head_is_431) {
  auto c = connect();
  std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(20000, 'a') + "\r\n\r\n";
  auto r = c->send_raw(req);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.json["error"], "headers_too_large");
  EXPECT_TRUE(svc_->wait_metric("http_requests_total", {{"path", "other"}, {"code", "431"}}, 1));
  EXPECT_TRUE(still_serving());
}

TEST_F(RobustnessTest, test_endless_header_stream_is_cut_at_431) {
  auto c = connect();
  ASSERT_TRUE(c->write("GET /hello HTTP/1.1\r\n"));
  std::string line = "X-A: " + std::string(1000, 'b') + "\r\n";
  for (int i = 0; i < 17; ++i) {
    if (!c->write(line)) break;  // the server may already have answered and closed
  }
  auto r = c->read_response();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 431);
}

TEST_F(RobustnessTest, test_plain_tcp_bytes_are_a_protocol_failure) {
  int fd = test::tcp_connect(svc_->port());
  ASSERT_GE(fd, 0);
  std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  char buf[256];
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (recv(fd, buf, sizeof buf, 0) > 0) {
  }
  close(fd);
  EXPECT_FALSE(svc_->wait_rejection("protocol").is_null());
  EXPECT_TRUE(still_serving());
}

TEST_F(RobustnessTest, test_client_closing_mid_handshake_is_a_protocol_failure) {
  int fd = test::tcp_connect(svc_->port());
  ASSERT_GE(fd, 0);
  const unsigned char partial_hello[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03};
  send(fd, partial_hello, sizeof partial_hello, MSG_NOSIGNAL);
  close(fd);
  auto line = svc_->wait_rejection("protocol");
  EXPECT_FALSE(line.is_null());
  EXPECT_TRUE(still_serving());
}

TEST(SlowClients, test_slow_handshakes_do_not_block_other_clients) {
  // More stalled clients than worker threads (2): they cost the reactor a socket each, never a
  // worker. Good clients are served while every stalled one is still pending (no timeout has
  // fired yet), and then the stalled ones are cut off with reason "timeout".
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.threads = 2;
  cfg.handshake_timeout_ms = 2000;
  ServiceUnderTest svc(cfg);
  std::vector<int> stalled;
  for (int i = 0; i < 20; ++i) {
    int fd = test::tcp_connect(svc.port());
    ASSERT_GE(fd, 0);
    if (i % 2 == 0) send(fd, "\x16\x03\x01", 3, MSG_NOSIGNAL);  // half a record header
    stalled.push_back(fd);
  }
  for (int i = 0; i < 3; ++i) {
    auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
    EXPECT_EQ(r.status, 200) << r.error;
  }
  EXPECT_EQ(svc.metric("mtls_handshake_failures_total", {{"reason", "timeout"}}), 0)
      << "good clients were only served after stalled ones timed out";
  EXPECT_TRUE(svc.wait_metric("mtls_handshake_failures_total", {{"reason", "timeout"}}, 20, 8000));
  auto line = svc.wait_rejection("timeout");
  ASSERT_FALSE(line.is_null());
  EXPECT_NE(line["detail"].get<std::string>().find("2000 ms"), std::string::npos);
  for (int fd : stalled) close(fd);
}

TEST(SlowClients, test_hundred_slow_connections_leave_hello_answering) {
  // Availability under a slowloris-style load (tracker issue 8, both services): 100 connections
  // that never finish the handshake, half of them with half a ClientHello, half silent TCP,
  // all still open (the handshake deadline is far off), and then a legitimate mTLS client
  // asks for /hello. The bound is generous (shared CI machine); the time is recorded.
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.threads = 2;
  cfg.handshake_timeout_ms = 60000;
  ServiceUnderTest svc(cfg);
  std::vector<int> stalled;
  const unsigned char half_hello[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03};
  for (int i = 0; i < 100; ++i) {
    int fd = test::tcp_connect(svc.port());
    ASSERT_GE(fd, 0) << "connection " << i;
    if (i % 2 == 0) {
      ASSERT_EQ(send(fd, half_hello, sizeof half_hello, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof half_hello));
    }
    stalled.push_back(fd);
  }
  auto start = Clock::now();
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  RecordProperty("hello_ms_with_100_stalled", static_cast<int>(ms));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_LT(ms, 5000) << "/hello took " << ms << " ms behind 100 stalled connections";
  // They were all still pending: nothing was cut off to make room.
  EXPECT_EQ(svc.metric("mtls_handshake_failures_total", {{"reason", "timeout"}}), 0);
  for (int fd : stalled) close(fd);
}

TEST_F(RobustnessTest, test_random_bytes_on_tls_port_never_crash) {
  unsigned seed = 12345;
  for (int round = 0; round < 30; ++round) {
    int fd = test::tcp_connect(svc_->port());
    ASSERT_GE(fd, 0);
    std::string junk;
    size_t len = 1 + (round * 97) % 3000;
    for (size_t i = 0; i < len; ++i) {
      seed = seed * 1103515245 + 12345;
      junk.push_back(static_cast<char>(seed >> 16));
    }
    if (round % 3 == 0) junk[0] = 0x16;  // looks like a handshake record
    send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    char buf[512];
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
  }
  EXPECT_TRUE(still_serving());
  EXPECT_TRUE(svc_->wait_metric("mtls_handshake_failures_total", {{"reason", "protocol"}}, 30));
}

TEST_F(RobustnessTest, test_slow_request_head_does_not_block_and_is_cut_off) {
  std::vector<std::unique_ptr<test::TestConnection>> slow;
  for (int i = 0; i < 4; ++i) {  // more than the 2 workers
    slow.push_back(connect());
    ASSERT_TRUE(slow.back()->write("GET /hello HTTP/1.1\r\nHost: x\r\n"));  // never finished
  }
  EXPECT_TRUE(still_serving());
  for (auto& c : slow) EXPECT_TRUE(c->wait_closed(3000)) << "idle/request-read timeout did not close";
  EXPECT_TRUE(still_serving());
}

TEST_F(RobustnessTest, test_idle_keep_alive_connection_is_closed) {
  auto c = connect();
  EXPECT_EQ(c->get("/hello").status, 200);
  auto start = Clock::now();
  EXPECT_TRUE(c->wait_closed(3000));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(elapsed, 500);  // not before the 800 ms idle timeout (minus sweep granularity)
}

TEST_F(RobustnessTest, test_many_concurrent_clients) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (still_serving()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
}  // namespace zt
