// The coordinator at scale, simulated: its real scheduler, message codecs and
// journal driven by simulated workers, with no MPI, to see what one
// coordinator does for 10^3 to 10^5 workers and 10^7 tasks.
//
//   coordinator_sim [--workers 1000,10000,100000] [--tasks 10000000]
//                   [--shapes bag,graph] [--journal /dev/null] [--repeat 3]
//
// Each round is what the coordinator does in the real run
// (src/coordinator/coordinator.cpp): a parked worker's request is served
// with Scheduler::take (its share: min(want, ready/(2 W), max_chunk)) and
// encoded as the kTasks message; the worker "runs" the tasks at once and
// answers with an UpdateHeader and one ResultRecord per task, decoded with
// ByteReader; each result goes through Scheduler::report, and every final
// state is appended to the Journal (to /dev/null by default: its formatting
// and writes, not the disk), written once per 64 updates taken in. Workers' answers queue in a FIFO
// as long as the worker count, so that up to W batches are in flight, as on the wire.
//
// Baseline, in the same run: the same loop with a plain dispatcher (ids
// from a counter, results counted) in place of the scheduler and journal,
// the floor that message handling alone costs. Prints one JSON line per
// case: decisions/s (a decision = one instance handed out and its result
// handled), ns per task, the ratio to the baseline, and bytes of coordinator
// memory per task (resident growth over the run / tasks).

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/workflow.hpp"
#include "coordinator/journal.hpp"
#include "coordinator/scheduler.hpp"
#include "protocol/pilot_messages.hpp"

using namespace tandem::detail;
using namespace tandem::detail::protocol;
using Clock = std::chrono::steady_clock;

namespace {

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0;
  long resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

std::vector<long long> parse_list(const std::string& s) {
  std::vector<long long> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

// A bag: one task of `tasks` instances. A graph: a binary tree of 1023 tasks,
// each waiting for its parent, the instances shared among them.
std::string workflow_text(const std::string& shape, long long tasks) {
  if (shape == "bag") {
    return fmt::format("[[task]]\nname = \"t\"\nfunction = \"tandem.null\"\ncount = {}\n", tasks);
  }
  const int n = 1023;
  std::string text;
  for (int t = 0; t < n; ++t) {
    const long long count = tasks / n + (t < tasks % n ? 1 : 0);
    text +=
        fmt::format("[[task]]\nname = \"t{}\"\nfunction = \"tandem.null\"\ncount = {}\n", t, count);
    if (t > 0) text += fmt::format("after = [\"t{}\"]\n", (t - 1) / 2);
  }
  return text;
}

struct Reply {
  int worker;
  std::vector<char> bytes;
};

// What both dispatchers do with the wire: a worker decodes its tasks and
// encodes one result per task, then asks for `want` more.
void worker_answers(const std::vector<std::int32_t>& msg, int want, ByteWriter& out) {
  out.clear();
  UpdateHeader h;
  h.want = want;
  h.results = msg[1];
  out.put(h);
  for (int i = 0; i < msg[1]; ++i) {
    const ResultRecord r{
        msg[2 + 2 * i], msg[3 + 2 * i], static_cast<std::int32_t>(Outcome::done), 0, 1, 2, 0};
    out.put(r);
  }
}

// What both dispatchers do with an update: decode the header, then hand
// each result record (and its reason) to @p on_result; returns the header.
template <typename OnResult>
UpdateHeader read_update(const Reply& r, std::string& reason, OnResult on_result) {
  ByteReader in(r.bytes.data(), r.bytes.size());
  UpdateHeader h;
  in.get(h);
  for (int i = 0; i < h.results; ++i) {
    ResultRecord rec;
    reason.clear();
    in.get(rec);
    in.get_text(static_cast<std::size_t>(rec.reason_len), reason);
    on_result(rec);
  }
  return h;
}

struct Result {
  double seconds = 0;
  long long tasks = 0;
  long memory = 0;
};

// The real coordinator's path: Scheduler, codecs, Journal.
Result run_tandem(const Workflow& wf, int workers, int want, const std::string& journal_path) {
  Result res;
  const long before = resident_bytes();
  Scheduler sched(wf);
  Journal journal(journal_path, wf, 0);
  sched.start();
  std::deque<int> parked(static_cast<std::size_t>(workers));
  std::iota(parked.begin(), parked.end(), 0);
  std::deque<Reply> wire;
  std::vector<int> batch;
  std::vector<int> finals;
  std::vector<std::int32_t> msg;
  ByteWriter writer;
  std::string reason;
  const auto t0 = Clock::now();
  while (!sched.finished()) {
    // Serve the parked workers while there is work (serve_requests).
    while (!parked.empty() && sched.has_ready()) {
      const int w = parked.front();
      parked.pop_front();
      const int fair = std::max(1, sched.count(TaskState::NEW) / (2 * workers));
      const int n = std::min({want, fair, wf.job.max_chunk});
      batch.clear();
      sched.take(n, w, 1, batch);
      msg.clear();
      msg.push_back(kTasks);
      msg.push_back(static_cast<std::int32_t>(batch.size()));
      for (int id : batch) {
        msg.push_back(id);
        msg.push_back(sched.instance(id).attempt);
      }
      worker_answers(msg, want, writer);
      wire.push_back({w, writer.bytes()});
    }
    if (wire.empty()) break;  // nothing in flight and nothing ready: a bug
    // Up to 64 workers' updates (handle_update), then one journal write for
    // them all (record_finals), as the coordinator's loop does.
    for (int m = 0; m < 64 && !wire.empty(); ++m) {
      Reply r = std::move(wire.front());
      wire.pop_front();
      const UpdateHeader h = read_update(r, reason, [&](const ResultRecord& rec) {
        sched.report(rec.id, rec.attempt, static_cast<Outcome>(rec.outcome), rec.exit_code,
                     rec.t_start, rec.t_end, reason, finals);
      });
      for (int id : finals) journal.append(sched.instance(id));
      res.tasks += static_cast<long long>(finals.size());
      finals.clear();
      if (h.want > 0) parked.push_back(r.worker);
    }
    journal.flush();
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  res.memory = resident_bytes() - before;
  return res;
}

// The floor: the same wire and loop, ids from a counter.
Result run_baseline(long long total, int workers, int want) {
  Result res;
  std::deque<int> parked(static_cast<std::size_t>(workers));
  std::iota(parked.begin(), parked.end(), 0);
  std::deque<Reply> wire;
  std::vector<std::int32_t> msg;
  ByteWriter writer;
  std::string reason;
  long long next = 0;
  std::vector<std::int32_t> attempts(static_cast<std::size_t>(total), 0);
  const auto t0 = Clock::now();
  while (res.tasks < total) {
    while (!parked.empty() && next < total) {
      const int w = parked.front();
      parked.pop_front();
      const long long fair = std::max<long long>(1, (total - next) / (2 * workers));
      const long long n = std::min({static_cast<long long>(want), fair, total - next});
      msg.clear();
      msg.push_back(kTasks);
      msg.push_back(static_cast<std::int32_t>(n));
      for (long long i = 0; i < n; ++i) {
        msg.push_back(static_cast<std::int32_t>(next));
        msg.push_back(++attempts[static_cast<std::size_t>(next)]);
        ++next;
      }
      worker_answers(msg, want, writer);
      wire.push_back({w, writer.bytes()});
    }
    Reply r = std::move(wire.front());
    wire.pop_front();
    const UpdateHeader h = read_update(r, reason, [&](const ResultRecord& rec) {
      if (rec.attempt == attempts[static_cast<std::size_t>(rec.id)]) ++res.tasks;
    });
    if (h.want > 0) parked.push_back(r.worker);
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long long> worker_counts{1000, 10000, 100000};
  long long tasks = 10'000'000;
  std::vector<std::string> shapes{"bag", "graph"};
  std::string journal_path = "/dev/null";
  int repeat = 3;
  int want = 8;  // a worker asks ahead for a few tasks (20 ms of short ones)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const std::string v = argv[i + 1];
    if (a == "--workers") {
      worker_counts = parse_list(v);
    } else if (a == "--tasks") {
      tasks = std::stoll(v);
    } else if (a == "--shapes") {
      shapes.clear();
      std::stringstream ss(v);
      std::string s;
      while (std::getline(ss, s, ',')) shapes.push_back(s);
    } else if (a == "--journal") {
      journal_path = v;
    } else if (a == "--repeat") {
      repeat = std::stoi(v);
    } else if (a == "--want") {
      want = std::stoi(v);
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  for (const std::string& shape : shapes) {
    const Workflow wf = parse_workflow(workflow_text(shape, tasks), "/sim/" + shape + ".toml",
                                       /*check_files=*/false);
    for (const long long w : worker_counts) {
      std::vector<double> ours;
      std::vector<double> floor;
      long memory = 0;
      for (int k = 0; k < repeat; ++k) {
        const Result b = run_baseline(tasks, static_cast<int>(w), want);
        const Result t = run_tandem(wf, static_cast<int>(w), want, journal_path);
        if (t.tasks != tasks || b.tasks != tasks) {
          std::fprintf(stderr, "coordinator_sim: %lld of %lld tasks finished\n", t.tasks, tasks);
          return 1;
        }
        ours.push_back(t.seconds);
        floor.push_back(b.seconds);
        memory = std::max(memory, t.memory);
      }
      const double s = median(ours);
      const double f = median(floor);
      std::printf(
          "{\"shape\":\"%s\",\"workers\":%lld,\"tasks\":%lld,\"seconds\":%.3f,"
          "\"decisions_per_s\":%.0f,\"ns_per_task\":%.1f,\"baseline_ns_per_task\":%.1f,"
          "\"ratio_to_baseline\":%.2f,\"memory_bytes_per_task\":%.1f}\n",
          shape.c_str(), w, tasks, s, static_cast<double>(tasks) / s,
          s * 1e9 / static_cast<double>(tasks), f * 1e9 / static_cast<double>(tasks), s / f,
          static_cast<double>(memory) / static_cast<double>(tasks));
      std::fflush(stdout);
    }
  }
  return 0;
}
