// ThreadSanitizer and EPOLL_CTL_MOD.
//
// TSan counts every epoll_ctl() as a read of the descriptor and close() as a
// write. It knows that EPOLL_CTL_ADD hands work to whoever returns from
// epoll_wait() next, but not that EPOLL_CTL_MOD does the same, so "worker A
// re-arms fd 9; worker B receives fd 9's event and closes it" looks to it like
// a race on descriptor 9. It is not one: B cannot receive the event before A's
// MOD has enabled it, and the kernel looks the descriptor up when the call
// begins. The pool states that order for the connection's memory with an
// atomic (Occupancy); this wrapper only keeps TSan from recording the MOD's
// read of the descriptor. In any other build it is a plain call.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define MUXLAB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MUXLAB_TSAN 1
#endif
#endif

#ifdef MUXLAB_TSAN
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
#endif

namespace muxlab {

template <typename Call>
auto unseen_by_tsan(Call call) {
#ifdef MUXLAB_TSAN
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  auto result = call();
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  return result;
#else
  return call();
#endif
}

}  // namespace muxlab
