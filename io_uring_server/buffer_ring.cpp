#include "buffer_ring.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include "net.hpp"

namespace muxlab {

BufferRing::BufferRing(io_uring& ring, unsigned entries, unsigned buffer_size, std::uint16_t group)
    : buffers_(std::make_unique_for_overwrite<char[]>(std::size_t{entries} * buffer_size)),
      entries_(entries),
      buffer_size_(buffer_size),
      group_(group) {
  // The kernel reads the ring from this memory directly; it wants it page
  // aligned, which anonymous mmap() memory always is.
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  ring_bytes_ = (entries * sizeof(io_uring_buf) + page - 1) / page * page;
  void* memory =
      ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) throw SystemError("mmap (provided buffer ring)", errno);
  ring_ = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(ring_);

  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<std::uintptr_t>(ring_);
  registration.ring_entries = entries;
  registration.bgid = group;
  if (const int error = io_uring_register_buf_ring(&ring, &registration, 0); error < 0) {
    ::munmap(ring_, ring_bytes_);
    throw SystemError("io_uring_register_buf_ring (provided buffer rings need Linux 5.19)", -error);
  }
  for (unsigned id = 0; id < entries; ++id) give_back(static_cast<std::uint16_t>(id));
}

BufferRing::~BufferRing() {
  ::munmap(ring_, ring_bytes_);
}

void BufferRing::give_back(std::uint16_t id) {
  io_uring_buf_ring_add(ring_, buffer(id), buffer_size_, id, io_uring_buf_ring_mask(entries_), 0);
  io_uring_buf_ring_advance(ring_, 1);
}

}  // namespace muxlab
