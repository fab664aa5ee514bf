// BufferRing: a ring of provided buffers for io_uring (Linux 5.19+).
//
// A multishot receive does not carry a buffer of its own: each time bytes
// arrive, the kernel takes the next buffer from this ring, fills it, and names
// it in the completion (IORING_CQE_F_BUFFER, the buffer id in the upper 16 bits
// of cqe->flags). The buffer then belongs to the program until it is given
// back with give_back(); a ring with no buffer left makes the receive end with
// -ENOBUFS.
//
// liburing 2.3 (Debian bookworm) can register such a ring but not allocate
// one (io_uring_setup_buf_ring came in 2.4), so the ring itself is mapped here:
// page-aligned memory of `entries` struct io_uring_buf, registered with
// io_uring_register_buf_ring(). The buffers it points to are one plain array.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace muxlab {

class BufferRing {
 public:
  // Maps and registers `entries` buffers (a power of two, at most 32768) of
  // `buffer_size` bytes each as buffer group `group`, all handed to the
  // kernel. Throws SystemError; EINVAL there means a kernel older than 5.19.
  BufferRing(io_uring& ring, unsigned entries, unsigned buffer_size, std::uint16_t group);
  // Unmaps the memory. The io_uring instance must be gone (io_uring_queue_exit)
  // by then: until it is, the kernel may still write into these buffers.
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  std::uint16_t group() const { return group_; }
  unsigned entries() const { return entries_; }
  unsigned buffer_size() const { return buffer_size_; }
  char* buffer(std::uint16_t id) const { return buffers_.get() + std::size_t{id} * buffer_size_; }

  // Puts buffer `id` back at the ring's tail. The store-release in
  // io_uring_buf_ring_advance() publishes it: from then on the kernel may fill
  // it again at any moment, so its old bytes must have been used already.
  void give_back(std::uint16_t id);

 private:
  io_uring_buf_ring* ring_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::unique_ptr<char[]> buffers_;
  unsigned entries_;
  unsigned buffer_size_;
  std::uint16_t group_;
};

}  // namespace muxlab
