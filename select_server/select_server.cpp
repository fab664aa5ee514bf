// select_server: the echo service on select(2).
//
// Every pass rebuilds three fd_sets from the connections' state, because
// select() overwrites its arguments with the answer. Out-of-band (urgent) TCP
// data is watched through the exception set and echoed back as urgent data.
#include <sys/select.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <optional>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

const ServerSpec kSpec{
    .name = "select_server",
    .summary = "TCP echo server on select(2), with urgent data echoed through exceptfds",
    .pitfalls = {{"no-fdset-reset",
                  "reuse the fd_sets select() overwrote instead of rebuilding them: idle clients "
                  "drop out of the sets and are silently ignored"}},
    .add_options = {},
    .validate = {},
};

// An echo connection plus the one urgent byte owed to the peer, if the send
// buffer was full when it arrived. TCP keeps a single urgent mark, so a newer
// byte replaces an unsent older one, exactly as the kernel does on receive.
struct Client {
  Client(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  std::optional<char> urgent_to_send;
};

class SelectServer {
 public:
  explicit SelectServer(ServerContext& ctx) : ctx_(ctx) {}

  void run() {
    ctx_.ready();  // the loop's own descriptors exist: now clients may come
    while (!ctx_.shutdown.requested()) {
      int ready = -1;
      do {  // EINTR: wait again, so the shutdown is a wakeup like any other
        build_sets();
        // Linux writes the time not slept back into the timeval, so it must be
        // set again before every call, like the sets.
        timeval timeout{.tv_sec = kTickSeconds, .tv_usec = 0};
        ready = ::select(maxfd_ + 1, &read_set_, &write_set_, &except_set_, &timeout);
      } while (ready < 0 && errno == EINTR);
      if (ready < 0) throw SystemError("select", errno);
      ctx_.counters.wakeups.add();
      ctx_.counters.events.add(static_cast<std::uint64_t>(ready));
      ctx_.tracer.line("wakeup: select returned %d%s", ready, ready == 0 ? " (timeout)" : "");
      if (ready > 0) dispatch();
    }
  }

 private:
  static constexpr long kTickSeconds = 1;

  void watch(int fd, fd_set& set) {
    FD_SET(fd, &set);
    maxfd_ = std::max(maxfd_, fd);  // the book chapter's example compared the wrong way round
  }

  void build_sets() {
    if (ctx_.options.pitfall_is("no-fdset-reset") && built_once_) {
      // PITFALL no-fdset-reset: the sets still hold select()'s last answer, so
      // every descriptor that was not ready last time has silently dropped out.
      // Only descriptors accepted since then get added.
      for (int fd : accepted_since_build_) {
        watch(fd, read_set_);
        watch(fd, except_set_);
      }
      accepted_since_build_.clear();
      return;
    }
    built_once_ = true;
    accepted_since_build_.clear();
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
    FD_ZERO(&except_set_);
    maxfd_ = -1;
    watch(ctx_.shutdown.fd(), read_set_);
    watch(ctx_.listener.get(), read_set_);
    watch(ctx_.listener.get(), except_set_);
    for (int fd = 0; fd < FD_SETSIZE; ++fd) {
      const Client* client = clients_[fd].get();
      if (client == nullptr) continue;
      if (client->echo.can_read()) {
        watch(fd, read_set_);
        watch(fd, except_set_);
      }
      if (client->echo.wants_write() || client->urgent_to_send) watch(fd, write_set_);
    }
  }

  void dispatch() {
    if (FD_ISSET(ctx_.listener.get(), &read_set_)) accept_clients();
    for (int fd = 0; fd <= maxfd_; ++fd) {
      // A pass over many expensive requests can take longer than the 3 s a
      // stop may take: check between connections, not only between passes.
      // What is not served now is dropped; its connection is closed at exit.
      if (ctx_.shutdown.requested()) return;
      if (!clients_[fd]) continue;
      const bool urgent = FD_ISSET(fd, &except_set_);
      const bool readable = FD_ISSET(fd, &read_set_);
      const bool writable = FD_ISSET(fd, &write_set_);
      if (!urgent && !readable && !writable) continue;
      ctx_.tracer.line("  fd %d:%s%s%s", fd, readable ? " readable" : "",
                       writable ? " writable" : "", urgent ? " exception(urgent data)" : "");
      serve(fd, urgent, readable, writable);
    }
  }

  void accept_clients() {
    // One accept per wakeup: select is level-triggered, so a fuller backlog is
    // simply reported again on the next pass.
    auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
    if (status != Acceptor::Status::kAccepted) return;
    if (fd.get() >= FD_SETSIZE) {
      // FD_SET on a descriptor >= FD_SETSIZE writes past the end of the fd_set.
      ctx_.tracer.line("accept: fd %d >= FD_SETSIZE (%d), closing it", fd.get(), FD_SETSIZE);
      std::fprintf(stderr, "select_server: refused a connection: fd %d does not fit in an fd_set\n",
                   fd.get());
      ++ctx_.extra_stats["fdsetsize_rejects"];
      return;
    }
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    clients_[number] = std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters);
    accepted_since_build_.push_back(number);
  }

  void serve(int fd, bool urgent, bool readable, bool writable) {
    Client& client = *clients_[fd];
    if (urgent) receive_urgent(fd, client);
    if (readable) client.echo.read_once();
    if (readable || writable) {
      client.echo.flush();
      send_urgent(fd, client);
    }
    if (client.echo.finished()) {
      ctx_.tracer.line("  fd %d: closed%s", fd,
                       client.echo.peer_closed() ? " (peer finished)" : "");
      clients_[fd].reset();
    }
  }

  void receive_urgent(int fd, Client& client) {
    char byte = 0;
    // Without SO_OOBINLINE the urgent byte is taken out of the stream and only
    // recv(MSG_OOB) can fetch it. EINVAL means it was already read or there is
    // none; normal reads are unaffected either way.
    const ssize_t n = ::recv(fd, &byte, 1, MSG_OOB);
    ctx_.counters.reads.add();
    if (n != 1) return;
    ++ctx_.extra_stats["oob_in"];
    ctx_.tracer.line("  fd %d: urgent byte 0x%02x ('%c') received, echoing it as urgent", fd,
                     static_cast<unsigned char>(byte), byte >= 32 && byte < 127 ? byte : '?');
    client.urgent_to_send = byte;
    send_urgent(fd, client);
  }

  void send_urgent(int fd, Client& client) {
    if (!client.urgent_to_send) return;
    ctx_.counters.writes.add();
    if (::send(fd, &*client.urgent_to_send, 1, MSG_OOB | MSG_NOSIGNAL) == 1) {
      ++ctx_.extra_stats["oob_out"];
      client.urgent_to_send.reset();
    }
    // On EAGAIN the byte waits for writability; on a hard error the next
    // normal read or write sees it and closes the connection.
  }

  ServerContext& ctx_;
  std::array<std::unique_ptr<Client>, FD_SETSIZE> clients_{};
  fd_set read_set_{};
  fd_set write_set_{};
  fd_set except_set_{};
  int maxfd_ = -1;
  bool built_once_ = false;
  std::vector<int> accepted_since_build_;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::SelectServer(ctx).run(); });
}
