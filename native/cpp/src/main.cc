// service-a's entry point: flags, signals, pid file. Everything else lives in Service.
//
// Signals are blocked in every thread and taken synchronously here with sigwait(), so
// handlers never run on arbitrary threads: SIGHUP reloads, SIGTERM/SIGINT stop (exit 0).
#include "config.h"
#include "service.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <unistd.h>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = zt::parse_args(args);
  if (auto* exit_req = std::get_if<zt::ExitRequest>(&parsed)) {
    (exit_req->code == 0 ? std::cout : std::cerr) << exit_req->message;
    return exit_req->code;
  }
  zt::Config cfg = std::get<zt::Config>(parsed);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: all inherit it

  zt::Service service(cfg);
  if (!service.start()) return 1;

  if (cfg.pid_file) {
    std::string tmp = *cfg.pid_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << getpid() << "\n";
    }
    if (std::rename(tmp.c_str(), cfg.pid_file->c_str()) != 0) {
      service.logger().warn("pid_file", {{"path", *cfg.pid_file}, {"reason", "cannot write the pid file"}});
    }
  }

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      service.reload("signal");
      continue;
    }
    service.stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  if (cfg.pid_file && std::remove(cfg.pid_file->c_str()) != 0 && errno != ENOENT) {
    // The exit stays 0 (the stop itself succeeded), but a stale pid file is worth a line.
    std::string reason = std::string("cannot remove the pid file: ") + std::strerror(errno);
    service.logger().warn("pid_file", {{"path", *cfg.pid_file}, {"reason", reason}});
  }
  return 0;
}
