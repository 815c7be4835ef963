// Running helper programs from tests (make_test_pki.py, openssl, curl, the service-a binary):
// fork/exec with pipes, bounded by a deadline; a child that overstays is killed by its PID.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace zt::test {

struct CommandResult {
  int exit_code = -1;  // -1 when killed or not run
  std::string output;  // stdout and stderr, interleaved
};

CommandResult run_command(const std::vector<std::string>& argv, const std::string& stdin_data = "",
                          int timeout_ms = 30000);

bool have_program(const std::string& name);

// A long-running child (the service-a binary). stderr lines go to `on_line` from a reader
// thread; stdout is discarded.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, std::function<void(const std::string&)> on_line);
  ~ChildProcess();  // SIGKILL if still running, then reap
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Exit code, or -1 (killed by a signal / still running at the deadline).
  int wait(int timeout_ms);

 private:
  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::thread reader_;
};

}  // namespace zt::test
