// Errors keep their kind on the way to the user: a bad workflow is a
// config_error (with its line) for Session users and TANDEM_ERR_CONFIG in
// C; a run directory that cannot be used is an io_error; every C status
// comes from the error class it stands for; an MPI error on a Tandem
// communicator becomes an mpi_error naming the call.

#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/mpi_check.hpp"
#include "support/temp_dir.hpp"
#include "tandem/tandem.h"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// A file every rank can read: rank 0 writes it, then all meet.
std::string shared_file(const std::string& name, const std::string& text) {
  const std::string path = (fs::temp_directory_path() / ("tandem-errors-" + name)).string();
  if (world_rank() == 0) std::ofstream(path) << text;
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

const char* kBadWorkflow =
    "[job]\nname = \"bad\"\n\n[[service]]\nname = \"s\"\nbackend = \"echo\"\nreplicas = \"two\"\n";

}  // namespace

TEST(ErrorKinds, SessionWithABadWorkflowThrowsConfigErrorWithTheLine) {
  const std::string path = shared_file("bad.toml", kBadWorkflow);
  try {
    tandem::Session session(MPI_COMM_WORLD, path);
    FAIL() << "a bad workflow started a session";
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_EQ(e.line(), 7) << e.what();
    EXPECT_EQ(e.key(), "service[0].replicas") << e.what();
  }
}

// A session runs no tasks: a file with [[task]] is refused on every rank,
// at the task's line, rather than its tasks silently never running.
TEST(ErrorKinds, SessionWithTasksIsAConfigErrorAtTheTask) {
  const std::string path = shared_file(
      "tasks.toml",
      "[job]\nname = \"t\"\n[[service]]\nname = \"s\"\nbackend = \"echo\"\n"
      "[[task]]\nname = \"a\"\nfunction = \"tandem.null\"\n");
  try {
    tandem::Session session(MPI_COMM_WORLD, path);
    FAIL() << "a session started with tasks in its file";
  } catch (const tandem::config_error& e) {
    EXPECT_EQ(e.line(), 6) << e.what();
    EXPECT_NE(std::string(e.what()).find("a session runs no tasks"), std::string::npos)
        << e.what();
  }
}

TEST(ErrorKinds, TheCApiReportsABadWorkflowAsConfig) {
  const std::string path = shared_file("bad-c.toml", kBadWorkflow);
  tandem_session* session = nullptr;
  MPI_Comm comm = MPI_COMM_WORLD;
  EXPECT_EQ(tandem_session_start_comm(&comm, path.c_str(), &session), TANDEM_ERR_CONFIG);
  EXPECT_NE(std::string(tandem_last_error()).find(":7:"), std::string::npos) << tandem_last_error();
  EXPECT_STREQ(tandem_status_name(TANDEM_ERR_CONFIG), "TANDEM_ERR_CONFIG");
  EXPECT_EQ(tandem_session_start_comm(&comm, "/nonexistent/workflow.toml", &session),
            TANDEM_ERR_CONFIG);
}

TEST(ErrorKinds, ARunDirectoryThatCannotBeMadeIsAnIoError) {
  const std::string path = shared_file("runroot.toml",
                                       "[job]\nname = \"rr\"\nrun_root = \"/proc/no-runs-here\"\n\n"
                                       "[[service]]\nname = \"s\"\nbackend = \"echo\"\n");
  tandem_session* session = nullptr;
  MPI_Comm comm = MPI_COMM_WORLD;
  EXPECT_EQ(tandem_session_start_comm(&comm, path.c_str(), &session), TANDEM_ERR_IO)
      << tandem_last_error();
  EXPECT_NE(std::string(tandem_last_error()).find("/proc/no-runs-here"), std::string::npos)
      << tandem_last_error();
}

TEST(ErrorKinds, EachCStatusComesFromItsErrorClass) {
  if (world_rank() != 0) return;  // no MPI below
  tandem_client* client = nullptr;
  // No proxy there: connect.
  EXPECT_EQ(tandem_connect_to("/nonexistent/tandem.sock", &client), TANDEM_ERR_CONNECT);
  // A null argument.
  EXPECT_EQ(tandem_connect_to(nullptr, &client), TANDEM_ERR_ARGUMENT);
  // A "proxy" that answers the hello with garbage: protocol, and the
  // connection is closed.
  tandem::test::TempDir dir;
  const std::string sock = (dir.path() / "p.sock").string();
  const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, sock.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  std::thread fake([listener] {
    const int c = ::accept(listener, nullptr, nullptr);
    char buf[256];
    ssize_t got = ::read(c, buf, sizeof buf);  // the hello
    (void)got;
    // A frame that claims 2^62 bytes.
    const unsigned char frame[16] = {0, 0, 0, 0, 0, 0, 0, 0x40, 1, 2, 3, 4, 5, 6, 7, 8};
    ssize_t sent = ::write(c, frame, sizeof frame);
    (void)sent;
    ::sleep(1);
    ::close(c);
  });
  EXPECT_EQ(tandem_connect_to(sock.c_str(), &client), TANDEM_ERR_PROTOCOL) << tandem_last_error();
  fake.join();
  ::close(listener);
}

TEST(ErrorKinds, AnMpiErrorOnATandemCommunicatorIsAnMpiErrorNamingTheCall) {
  const std::string path =
      shared_file("good.toml", "[job]\nname = \"good\"\nrun_root = \"" +
                                   (fs::temp_directory_path() / "tandem-errors-runs").string() +
                                   "\"\n\n[[service]]\nname = \"s\"\nbackend = \"echo\"\n");
  tandem::Session session(MPI_COMM_WORLD, path);
  if (session.is_app()) {
    MPI_Comm comm = session.app_comm();
    MPI_Errhandler handler;
    MPI_Comm_get_errhandler(comm, &handler);
    EXPECT_EQ(handler, MPI_ERRORS_RETURN);
    int size = 0;
    MPI_Comm_size(comm, &size);
    int value = 1;
    try {
      TANDEM_MPI_CHECK(MPI_Send(&value, 1, MPI_INT, size + 5, 0, comm));
      ADD_FAILURE() << "a send to a rank that does not exist succeeded";
    } catch (const tandem::mpi_error& e) {
      EXPECT_NE(std::string(e.what()).find("MPI_Send"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("rank"), std::string::npos) << e.what();
      EXPECT_NE(e.code(), MPI_SUCCESS);
    }
  }
  session.finalize();
}
