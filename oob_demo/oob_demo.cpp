// oob_demo: TCP urgent data, one experiment at a time, over loopback.
// Each step states a claim, shows what the kernel actually did, and says
// whether the claim held. Exit status 1 if any claim failed.
//
// usage: oob_demo
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "oob_lesson.hpp"

namespace {

int g_failures = 0;

std::string show(const std::string& bytes) {
  return "\"" + bytes + "\"";
}
std::string show(const std::optional<char>& byte) {
  return byte ? "'" + std::string(1, *byte) + "'" : "none";
}

void step(int number, const char* claim) {
  std::printf("\n%d. %s\n", number, claim);
}
void observe(const std::string& what) {
  std::printf("     %s\n", what.c_str());
}
void verdict(bool held, const char* why) {
  std::printf("   %s %s\n", held ? "[holds]" : "[FAILS]", why);
  g_failures += held ? 0 : 1;
}

}  // namespace

int main(int argc, char**) {
  if (argc > 1) {
    std::fprintf(stderr, "usage: oob_demo   (no arguments)\n");
    return 2;
  }
  using namespace muxlab::oob;
  std::printf("TCP urgent data on this kernel, demonstrated over 127.0.0.1\n");

  step(1, "Only the LAST byte of a send(..., MSG_OOB) is urgent.");
  const auto last = only_last_byte_is_urgent();
  observe("sender:   send(\"abc\", MSG_OOB)");
  observe("receiver: read() -> " + show(last.normal) + ", recv(MSG_OOB) -> " + show(last.urgent));
  verdict(last.normal == "ab" && last.urgent == 'c',
          "TCP has an urgent *pointer*, not an urgent channel: one byte at a time.");

  step(2, "read() stops at the urgent mark; sockatmark() says when you are there.");
  const auto mark = read_stops_at_the_mark();
  observe("sender:   \"xy\", then 'Z' with MSG_OOB, then \"w\"");
  observe(std::string("receiver: sockatmark() -> ") + (mark.at_mark_before_reading ? "1" : "0") +
          ", read() -> " + show(mark.first_read) + ", sockatmark() -> " +
          (mark.at_mark_after_first_read ? "1" : "0") + ", recv(MSG_OOB) -> " + show(mark.urgent) +
          ", read() -> " + show(mark.second_read));
  verdict(
      !mark.at_mark_before_reading && mark.first_read == "xy" && mark.at_mark_after_first_read &&
          mark.urgent == 'Z' && mark.second_read == "w",
      "the mark splits the stream so the reader can tell 'before' from 'after' the urgent byte.");

  step(3, "With SO_OOBINLINE the urgent byte stays in the normal stream.");
  const auto inl = oobinline_keeps_the_byte_in_the_stream();
  observe("sender:   \"ab\", then 'c' with MSG_OOB, then \"d\"; receiver set SO_OOBINLINE");
  observe(std::string("receiver: recv(MSG_OOB) -> ") + std::strerror(inl.oob_recv_errno) +
          ", read()s -> " + show(inl.normal));
  verdict(inl.oob_recv_errno == EINVAL && inl.normal == "abcd",
          "inline, the byte is read in place; MSG_OOB has nothing to fetch (EINVAL).");

  step(4, "A second urgent byte replaces an unread first one, which is lost.");
  const auto replace = second_urgent_byte_replaces_the_first();
  observe("sender:   '1' with MSG_OOB, then '2' with MSG_OOB, then \"end\"");
  observe("receiver: recv(MSG_OOB) -> " + show(replace.urgent) + ", read()s -> " +
          show(replace.normal));
  verdict(replace.urgent == '2' && replace.normal == "end",
          "one urgent mark per connection: the unread older byte is simply gone.");

  step(5, "select() reports pending urgent data in the exception set (exceptfds).");
  const auto sel = select_reports_urgent_data_as_exception();
  observe(std::string("exceptfds after ordinary data: ") +
          (sel.exception_before ? "set" : "clear") +
          "; after MSG_OOB: " + (sel.exception_while_pending ? "set" : "clear") +
          "; after recv(MSG_OOB): " + (sel.exception_after_reading ? "set" : "clear"));
  verdict(!sel.exception_before && sel.exception_while_pending && !sel.exception_after_reading,
          "this is the only thing select_server's exception set is for.");

  step(6, "With F_SETOWN, the owning process gets SIGURG when urgent data arrives.");
  const auto sig = sigurg_reaches_the_owner();
  observe("SIGURG count before: " + std::to_string(sig.signals_before) +
          ", after MSG_OOB: " + std::to_string(sig.signals_after));
  verdict(sig.signals_after == sig.signals_before + 1,
          "asynchronous notice, for programs that cannot watch exceptfds.");

  std::printf("\n%s\n",
              g_failures == 0 ? "All claims held." : "Some claims FAILED on this kernel.");
  return g_failures == 0 ? 0 : 1;
}
