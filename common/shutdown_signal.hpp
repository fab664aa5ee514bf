// ShutdownSignal: SIGINT and SIGTERM turned into a readable descriptor with the
// self-pipe trick, so every multiplexer can wait for "stop" like any other event.
#pragma once

namespace muxlab {

class ShutdownSignal {
 public:
  // Installs the handlers and ignores SIGPIPE. One instance per process. The
  // handlers stay installed until the process is gone (see the destructor).
  // Throws SystemError when the pipe cannot be created.
  ShutdownSignal();
  ~ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  int fd() const;          // readable once a signal arrived; stays readable
  bool requested() const;  // cheap check for loops between waits
  void request();          // stop from inside the program (tests, fatal errors)
};

// True once SIGINT or SIGTERM arrived (or request() was called): for code far
// from the loop, such as the simulated request cost, that must cut work short.
bool shutdown_requested();

}  // namespace muxlab
