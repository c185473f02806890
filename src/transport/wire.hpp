#pragma once
// The data plane's message format: a fixed header, one descriptor per
// tensor, names and error text, then each tensor's bytes at a 64-byte
// aligned offset. Requests and replies share it. Encoding copies the tensor
// bytes once into a pooled buffer; decoding makes tensors that are views into
// the received buffer and share its ownership, so nothing is copied again.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tandem/tensor.hpp"
#include "tandem/transport.hpp"

namespace tandem::detail::wire {

constexpr std::uint32_t kMagic = 0x444e4154;  // "TAND"
constexpr int kMaxDims = 8;

enum Kind : std::uint16_t {
  kRequest = 1,
  kReplyOk = 2,
  kReplyError = 3,
  kStopMember = 4,
  kCall = 5,  // a JSON call: text = "PATH\nBODY"; the reply's text is the JSON answer
  // Between a task and its worker's proxy (src/worker/proxy.hpp), never over MPI:
  kHello = 6,      // task -> proxy: empty; proxy -> task: text = JSON about the services
  kWaitReady = 7,  // task -> proxy: text = timeout in seconds; answered when READY
  // Model lifecycle (ml_ranks/serving/model_versions.hpp): client -> each
  // replica leader on kRequest, answered on kReply; leader -> the replica's
  // other ranks on kReplicaWork, answered on kReplicaLoaded. text = JSON
  // {"path": ..., "version": N} (load) or {"version": N} (unload).
  kLoadModel = 8,
  kUnloadModel = 9,
  // A steering task's request to the coordinator (adaptive workflows):
  // task -> proxy: text = the JSON request; answered with kReplyOk, text =
  // the coordinator's JSON answer. The worker passes it on over MPI.
  kSteer = 10,
  // Elastic services: a client -> a replica leaving its service, on
  // kRequest after the client's last request to it (MPI keeps them in
  // order); request_id = the drain's id. Not answered.
  kFence = 11,
  // A task -> its worker's proxy: Client::scale; text = the replicas wanted.
  kScale = 12,
};

/// Header flags.
constexpr std::uint32_t kReplyShmOk = 1;    // the client shares a node with the replica
constexpr std::uint32_t kServiceError = 2;  // on kReplyError: the service, not the request
                                            // (unknown, FAILED, not READY; see service_error)
constexpr std::uint32_t kDeadline = 4;      // on kReplyError: the request's deadline could not
                                            // be met; it was never computed

struct Header {
  std::uint32_t magic = kMagic;
  std::uint16_t kind = kRequest;
  std::uint16_t n_tensors = 0;
  std::uint64_t request_id = 0;
  std::int32_t service = -1;
  std::uint32_t text_len = 0;
  std::int64_t t_sent_us = 0;
  std::uint32_t flags = 0;
  std::uint32_t sender_pid = 0;  // who will hold a shm reply
  // On a request: the model version asked for (0: the service's policy).
  // On a reply: the version that computed it (0 for errors).
  std::int32_t model_version = 0;
  // A task's request to the worker's proxy: the transport it asked for,
  // 1 + Transport (0: automatic). Unused elsewhere.
  std::uint32_t asked_transport = 0;
  // On a request: when its answer stops being of use, wall-clock
  // microseconds since the epoch (0: no deadline). A replica on another
  // node counts it from the request's arrival, deadline_us - t_sent_us
  // later, since the nodes' clocks need not agree.
  std::int64_t deadline_us = 0;
};

struct TensorDesc {
  std::uint8_t dtype = 0;
  std::uint8_t ndim = 0;
  std::uint16_t name_len = 0;
  Transport transport = Transport::inline_mpi;  // one byte
  std::uint8_t pad = 0;
  std::uint16_t location_len = 0;  // shm: segment name; hdf5: "file\ndataset"
  std::uint64_t nbytes = 0;
  std::uint64_t offset = 0;  // shm: where the bytes start in the segment
  std::int64_t dims[kMaxDims] = {};
};

/// A tensor whose bytes are elsewhere: in shared memory or an HDF5 file.
struct Staged {
  Transport transport = Transport::inline_mpi;
  std::string location;
  std::uint64_t offset = 0;
};

/// An encoded message: the pooled buffer and how many bytes of it to send.
struct Encoded {
  std::shared_ptr<std::byte> buffer;
  std::size_t size = 0;
};

/// Sets the model version in @p m's header (after encode or stage).
void set_model_version(const Encoded& m, std::int32_t version);
/// Header::asked_transport of an encoded request.
void set_asked_transport(const Encoded& m, Transport t);
/// Header::deadline_us of an encoded request.
void set_deadline(const Encoded& m, std::int64_t deadline_us);
/// Sets Header::t_sent_us to now (wall clock) and returns it: a reply's
/// send time, against which a client on the same node judges its deadline.
std::int64_t stamp_sent(const Encoded& m);

/// Encodes a message. @throws tandem::error for a tensor of more than
/// kMaxDims dimensions or a name longer than 65535 bytes.
/// @p staged, when given, says per tensor where its bytes already are;
/// those tensors send only their descriptor.
Encoded encode(Kind kind, std::uint64_t request_id, int service, const TensorList& tensors,
               const std::string& text = {}, const std::vector<Staged>* staged = nullptr,
               std::uint32_t flags = 0);

/// A decoded message; its tensors share ownership of the buffer.
struct Decoded {
  Header header;
  TensorList tensors;          // staged ones have no data until resolved
  std::vector<Staged> staged;  // per tensor
  std::string text;
};

/// Decodes @p size bytes of @p buffer. Returns false with @p why set for a
/// message that is malformed (wrong magic, sizes that do not add up).
bool decode(const std::shared_ptr<std::byte>& buffer, std::size_t size, Decoded& out,
            std::string& why);

}  // namespace tandem::detail::wire
