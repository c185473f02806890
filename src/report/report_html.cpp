// The report as one HTML page: no scripts, no fonts, no fetches, so that it
// opens from the run directory on a machine without network access. The
// pictures are inline SVG.

#include <algorithm>
#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "report/report.hpp"

namespace tandem::detail::report {

namespace {

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string svg_open(int width, int height, const char* css_class) {
  return fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" class="{}">)", width,
      height, css_class);
}

// A stable colour per task name, so that one task's instances look alike.
std::string colour(const std::string& label, int kind) {
  if (kind == 1) return "#e8743b";
  if (kind == 2) return "#1f3f73";
  if (kind == 3) return "#6baed6";
  const std::string name = label.substr(0, label.find('['));
  const auto h = std::hash<std::string>{}(name);
  return fmt::format("hsl({},55%,55%)", 140 + h % 160);
}

std::string timeline(const Report& r) {
  const int rows = std::max<int>(1, static_cast<int>(r.tracks.size()));
  constexpr int kLabel = 230;
  constexpr int kPlot = 900;
  constexpr int kRow = 18;
  constexpr int kTop = 44;  // room for the milestone labels
  const int height = rows * kRow + kTop + 20;
  const double end = std::max({r.trace_end_s, r.makespan_s, 1e-6});
  auto x = [&](double t) { return kLabel + std::clamp(t / end, 0.0, 1.0) * kPlot; };
  std::string svg = svg_open(kLabel + kPlot + 50, height, "timeline");
  for (int i = 0; i < rows; ++i) {
    const int y = kTop + i * kRow;
    if (i % 2 == 0) {
      svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="#f3f3f3"/>)", kLabel,
                         y, kPlot, kRow);
    }
    const std::string name = i < static_cast<int>(r.tracks.size()) ? r.tracks[i] : "";
    svg += fmt::format(R"(<text x="{}" y="{}" class="label">{}</text>)", kLabel - 6, y + 13,
                       escape(name));
  }
  for (const Span& s : r.spans) {
    const double x0 = x(s.start_s);
    const double w = std::max(0.5, x(s.end_s) - x0);
    // Requests are thin bars along the bottom of their client's row, under
    // the task that sent them.
    // A worker's turn as a replica is a band along the top of its row,
    // over the batches it ran.
    const bool request = s.kind == 2;
    const bool serving = s.kind == 3;
    svg += fmt::format(
        R"(<rect x="{:.2f}" y="{}" width="{:.2f}" height="{}" fill="{}"><title>{} {:.6f} s at {:.6f} s</title></rect>)",
        x0,
        kTop + s.rank * kRow +
            (request   ? kRow - 6
             : serving ? 0
                       : 2),
        w, request || serving ? 4 : kRow - 4, colour(s.label, s.kind), escape(s.label),
        s.end_s - s.start_s, s.start_s);
  }
  // Milestones: dashed lines, their labels on three staggered rows so that
  // close ones stay readable.
  int m = 0;
  for (const auto& [t, name] : r.marks) {
    svg += fmt::format(
        R"(<line x1="{0:.2f}" x2="{0:.2f}" y1="{3}" y2="{1}" class="mark"/><text x="{0:.2f}" y="{3}" class="marktext">{2}</text>)",
        x(t), height - 20, escape(name), 10 + 12 * (m++ % 3));
  }
  // A time axis with five ticks.
  for (int i = 0; i <= 5; ++i) {
    const double t = end * i / 5;
    svg +=
        fmt::format(R"(<text x="{:.2f}" y="{}" class="tick">{:.3g} s</text>)", x(t), height - 4, t);
  }
  svg += "</svg>";
  return svg;
}

// Bars over log-spaced latency bins, with the percentiles marked.
std::string latency_histogram(const ServiceFigures& f) {
  if (f.total_ms.empty()) return "<p>No traced requests.</p>";
  constexpr int kBins = 30;
  constexpr int kW = 600;
  constexpr int kH = 160;
  const auto [lo_it, hi_it] = std::minmax_element(f.total_ms.begin(), f.total_ms.end());
  const double lo = std::max(*lo_it, 1e-4);
  const double hi = std::max(*hi_it, lo * 1.01);
  const double span = std::log(hi / lo);
  auto bin_of = [&](double v) {
    const double p = std::log(std::max(v, lo) / lo) / span;
    return std::clamp(static_cast<int>(p * kBins), 0, kBins - 1);
  };
  std::vector<long long> counts(kBins, 0);
  for (double v : f.total_ms) ++counts[bin_of(v)];
  const long long most = *std::max_element(counts.begin(), counts.end());
  std::string svg = svg_open(kW + 60, kH + 64, "hist");
  const double bar = static_cast<double>(kW) / kBins;
  for (int i = 0; i < kBins; ++i) {
    if (counts[i] == 0) continue;
    const double h = static_cast<double>(counts[i]) / static_cast<double>(most) * kH;
    const double from = lo * std::exp(span * i / kBins);
    const double to = lo * std::exp(span * (i + 1) / kBins);
    svg += fmt::format(
        R"(<rect x="{:.2f}" y="{:.2f}" width="{:.2f}" height="{:.2f}" fill="#4a7fc1"><title>{:.3f}-{:.3f} ms: {} requests</title></rect>)",
        30 + i * bar, 34 + kH - h, bar - 1, h, from, to, counts[i]);
  }
  auto x_of = [&](double v) { return 30 + std::log(std::max(v, lo) / lo) / span * kW; };
  int k = 0;
  for (const auto& [v, name] :
       {std::pair{f.total.p50_ms, "p50"}, {f.total.p95_ms, "p95"}, {f.total.p99_ms, "p99"}}) {
    const int label_y = 10 + 12 * k++;  // staggered: close percentiles stay readable
    svg += fmt::format(
        R"(<line x1="{0:.2f}" x2="{0:.2f}" y1="{3}" y2="{1}" class="pct"/><text x="{0:.2f}" y="{3}" class="pcttext">{2}</text>)",
        x_of(v), kH + 34, name, label_y);
  }
  svg += fmt::format(R"(<text x="30" y="{}" class="tick">{:.3f} ms</text>)", kH + 52, lo);
  svg += fmt::format(R"(<text x="{}" y="{}" class="tick" text-anchor="end">{:.3f} ms</text>)",
                     30 + kW, kH + 52, hi);
  svg += "</svg>";
  return svg;
}

std::string batch_histogram(const ServiceFigures& f) {
  if (f.batch_rows.empty()) return "<p>No batches.</p>";
  constexpr int kW = 600;
  constexpr int kH = 120;
  long long most = 0;
  for (const auto& [rows, n] : f.batch_rows) most = std::max(most, n);
  const double bar =
      std::min(40.0, static_cast<double>(kW) / static_cast<double>(f.batch_rows.size()));
  std::string svg = svg_open(kW + 60, kH + 40, "hist");
  int i = 0;
  for (const auto& [rows, n] : f.batch_rows) {
    const double h = static_cast<double>(n) / static_cast<double>(most) * kH;
    svg += fmt::format(
        R"(<rect x="{:.2f}" y="{:.2f}" width="{:.2f}" height="{:.2f}" fill="#e8743b"><title>{} rows: {} batches</title></rect>)",
        30 + i * bar, 10 + kH - h, std::max(1.0, bar - 1), h, rows, n);
    if (f.batch_rows.size() <= 16 || i % (f.batch_rows.size() / 8) == 0) {
      svg += fmt::format(R"(<text x="{:.2f}" y="{}" class="tick">{}</text>)", 30 + (i + 0.5) * bar,
                         kH + 28, rows);
    }
    ++i;
  }
  svg += "</svg>";
  return svg;
}

// A task's series against the run's wall time, y on a log scale when it
// spans more than a decade (errors that fall), and a dashed line wherever a
// replica began to serve a new model version.
std::string series_chart(const Series& series, const std::vector<ServiceFigures>& services) {
  constexpr int kW = 640;
  constexpr int kH = 220;
  constexpr int kLeft = 60;
  double x_max = 0;
  double lo = series.points.front().second;
  double hi = lo;
  for (const auto& [x, y] : series.points) {
    x_max = std::max(x_max, x);
    lo = std::min(lo, y);
    hi = std::max(hi, y);
  }
  struct Switch {
    double at;
    std::string label;
  };
  std::vector<Switch> switches;
  for (const ServiceFigures& f : services) {
    for (const VersionFigures& v : f.versions) {
      if (v.served_from_run_s <= 0 || v.served_from_run_s == -1) continue;
      switches.push_back({v.served_from_run_s, fmt::format("{} v{}", f.name, v.version)});
      x_max = std::max(x_max, v.served_from_run_s);
    }
  }
  if (x_max <= 0) x_max = 1;
  const bool log_y = lo > 0 && hi / lo > 10;
  auto y_of = [&](double y) {
    const double a = log_y ? std::log10(lo) : lo;
    const double b = log_y ? std::log10(hi) : hi;
    const double v = log_y ? std::log10(y) : y;
    return 10 + (b > a ? (b - v) / (b - a) : 0.5) * (kH - 20);
  };
  auto x_of = [&](double x) { return kLeft + x / x_max * kW; };
  std::string svg = svg_open(kLeft + kW + 20, kH + 40, "series");
  svg +=
      fmt::format(R"(<rect x="{}" y="0" width="{}" height="{}" fill="#fafafa"/>)", kLeft, kW, kH);
  std::sort(switches.begin(), switches.end(),
            [](const Switch& a, const Switch& b) { return a.at < b.at; });
  for (std::size_t i = 0; i < switches.size(); ++i) {
    const Switch& s = switches[i];
    svg += fmt::format(R"(<line x1="{0:.1f}" y1="0" x2="{0:.1f}" y2="{1}" class="mark"/>)",
                       x_of(s.at), kH);
    // Labels of switches close together go one above the other.
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" class="marktext">{}</text>)", x_of(s.at) + 3,
                       kH - 4 - 12 * static_cast<int>(i % 4), escape(s.label));
  }
  std::string path;
  for (const auto& [x, y] : series.points) {
    if (log_y && y <= 0) continue;
    path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", x_of(x), y_of(y));
    svg += fmt::format(
        R"(<circle cx="{:.1f}" cy="{:.1f}" r="2" fill="#1f77b4"><title>{:.3f} s: {:g}</title></circle>)",
        x_of(x), y_of(y), x, y);
  }
  svg += fmt::format(R"(<path d="{}" fill="none" stroke="#1f77b4"/>)", path);
  svg += fmt::format(R"(<text x="{}" y="14" class="label">{:.3g}</text>)", kLeft - 4, hi);
  svg += fmt::format(R"(<text x="{}" y="{}" class="label">{:.3g}</text>)", kLeft - 4, kH - 4, lo);
  svg += fmt::format(R"(<text x="{}" y="{}" class="tick">0 s</text>)", kLeft, kH + 16);
  svg += fmt::format(
      R"(<text x="{}" y="{}" class="tick" text-anchor="end">{:.1f} s (wall time of the run{})</text>)",
      kLeft + kW, kH + 16, x_max, log_y ? "; y on a log scale" : "");
  svg += "</svg>";
  return svg;
}

std::string percentile_row(const char* name, const Percentiles& p) {
  return fmt::format("<tr><td>{}</td><td>{:.3f}</td><td>{:.3f}</td><td>{:.3f}</td></tr>", name,
                     p.p50_ms, p.p95_ms, p.p99_ms);
}

}  // namespace

std::string to_html(const Report& r) {
  std::string h;
  h += R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Tandem report: )" +
       escape(r.job) + R"(</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.label { font-size: 11px; text-anchor: end; fill: #333; }
.tick { font-size: 10px; fill: #555; text-anchor: middle; }
.mark { stroke: #c33; stroke-dasharray: 4 3; }
.marktext { font-size: 10px; fill: #c33; }
.pct { stroke: #222; stroke-dasharray: 3 2; }
.pcttext { font-size: 10px; fill: #222; }
.figures td { text-align: left; }
</style></head><body>
)";
  h += fmt::format("<h1>Tandem run <code>{}</code></h1>\n", escape(r.job));
  h += "<table class=\"figures\">";
  h += fmt::format("<tr><td>run directory</td><td>{}</td></tr>", escape(r.run_dir));
  h += fmt::format("<tr><td>makespan</td><td>{:.3f} s on {} ranks ({} {})</td></tr>", r.makespan_s,
                   r.world_size, r.spmd ? r.app_ranks : r.workers,
                   r.spmd ? "application ranks" : "workers");
  if (!r.spmd) {
    h += fmt::format(
        "<tr><td>tasks</td><td>{} of {} done, {} failed, {} canceled; {:.1f} tasks/s; worker "
        "utilisation {:.0f}%</td></tr>",
        r.tasks_done, r.tasks_total, r.tasks_failed, r.tasks_canceled, r.tasks_per_s,
        r.worker_utilisation * 100);
  }
  h += fmt::format("<tr><td>exit code</td><td>{}{}{}</td></tr>", r.exit_code,
                   r.resumed ? " (resumed run)" : "",
                   r.no_summary ? "; the last job wrote no summary.json" : "");
  for (const AbortFigures& a : r.aborts) {
    h += fmt::format("<tr><td>ended by rank {}</td><td>{}exit code {}: {}</td></tr>", a.rank,
                     a.host.empty() ? std::string() : escape(a.host) + ", ", a.exit_code,
                     escape(a.reason));
  }
  if (r.has_trace) {
    h += fmt::format(
        "<tr><td>start-up</td><td>launcher + MPI_Init {:.3f} s; roles ready {:.3f} s; slowest "
        "model load {:.3f} s; first READY {}{}</td></tr>",
        r.mpi_start_s, r.roles_ready_s, r.model_load_s,
        r.first_ready_s >= 0 ? fmt::format("{:.3f} s", r.first_ready_s) : std::string("-"),
        r.spmd ? std::string() : fmt::format("; first task {:.3f} s", r.run_start_s));
  }
  h += "</table>\n";
  if (r.jobs.size() > 1) {
    h += fmt::format(
        "<h2>Jobs</h2>\n<p>{} jobs worked on this run (history.jsonl); the start-up, the "
        "timeline and the latency below are the last one's.</p>\n<table><tr><th>job</th>"
        "<th>seconds</th><th>done</th><th>failed</th><th>canceled</th><th>requests</th>"
        "<th>end</th></tr>",
        r.jobs.size());
    for (std::size_t i = 0; i < r.jobs.size(); ++i) {
      const JobFigures& f = r.jobs[i];
      h += fmt::format(
          "<tr><td>{}{}</td><td>{:.3f}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
          "<td>{}</td></tr>",
          i + 1, f.job_id.empty() ? std::string() : " (" + escape(f.job_id) + ")", f.makespan_s,
          f.done, f.failed, f.canceled, f.all_requests, escape(f.ended));
    }
    h += "</table>\n";
  }
  if (r.has_trace) {
    h += "<h2>Timeline</h2>\n<p>Tasks on workers (one colour per task), requests as thin dark "
         "bars along the bottom of their client's row, batches on service replicas (orange), "
         "start-up milestones dashed. Hover for details.</p>\n";
    h += timeline(r);
    h += "\n";
  } else {
    h += "<p>No trace in this run directory ([job.monitor] trace was off).</p>\n";
  }
  for (const ServiceFigures& f : r.services) {
    h += fmt::format("<h2>Service <code>{}</code> ({})</h2>\n", escape(f.name), escape(f.backend));
    h += fmt::format(
        "<p>{} requests{}, {} errors, {} batches of {:.1f} rows on average, {} bridge "
        "retries.</p>\n",
        f.requests,
        r.jobs.size() > 1 ? fmt::format(" in the last job ({} in all {} jobs)", f.requests_all_jobs,
                                        r.jobs.size())
                          : std::string(),
        f.errors, f.batches, f.mean_batch_rows, f.retries);
    if (f.traced_requests > 0) {
      h += "<table><tr><th>latency (ms)</th><th>p50</th><th>p95</th><th>p99</th></tr>";
      h += percentile_row("total", f.total);
      h += percentile_row("transit out", f.transit_out);
      h += percentile_row("queue wait", f.queue_wait);
      h += percentile_row("compute", f.compute);
      h += percentile_row("transit back", f.transit_back);
      h += "</table>\n";
    }
    if (f.versions.size() > 1 || !f.version_errors.empty()) {
      h += "<h3>Model versions</h3>\n<table><tr><th>replica</th><th>version</th>"
           "<th>requests</th><th>load (s)</th><th>served from (s into the run)</th>"
           "<th>requests held (s)</th></tr>";
      for (const VersionFigures& v : f.versions) {
        h += fmt::format(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3f}</td><td>{}</td><td>{}</td></tr>",
            v.replica, v.version, v.requests, v.load_s,
            v.served_from_run_s >= 0 ? fmt::format("{:.3f}", v.served_from_run_s) : "-",
            v.pause_s > 0 ? fmt::format("{:.3f}", v.pause_s) : "-");
      }
      h += "</table>\n";
      for (const std::string& e : f.version_errors) h += "<p>failed: " + escape(e) + "</p>\n";
    }
    h += "<h3>Request latency</h3>\n" + latency_histogram(f) + "\n";
    h += "<h3>Batch sizes (rows)</h3>\n" + batch_histogram(f) + "\n";
  }
  for (const Series& series : r.series) {
    h += fmt::format(
        "<h2>Series <code>{}</code></h2>\n<p>{} points from "
        "<code>series/{}.csv</code>; dashed: a model version began to serve.</p>\n",
        escape(series.name), series.points.size(), escape(series.name));
    h += series_chart(series, r.services) + "\n";
  }
  if (!r.unfinished.empty()) {
    h += fmt::format(
        "<h2>Failed and canceled instances</h2>\n<p>{} instance(s); the reason, and the file "
        "(in the run directory) its last attempt wrote its errors to.</p>\n<table><tr>"
        "<th>instance</th><th>state</th><th>attempts</th><th>exit code</th><th>reason</th>"
        "<th>stderr</th></tr>",
        r.unfinished.size());
    for (const Unfinished& u : r.unfinished) {
      h += fmt::format(
          "<tr><td>{}[{}]</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
          escape(u.task), u.index, escape(u.state), u.attempts, u.exit_code, escape(u.reason),
          u.err_file.empty()
              ? std::string("-")
              : fmt::format("<a href=\"{0}\"><code>{0}</code></a>", escape(u.err_file)));
    }
    h += "</table>\n";
  }
  if (!r.rounds.empty()) {
    h += "<h2>Steering rounds</h2>\n<p>What each steering task submitted per round (as it labelled "
         "them, or one round "
         "per submit call) and how that ended; times since the run "
         "started.</p>\n<table><tr><th>steering task</th>"
         "<th>round</th><th>at (s)</th><th>submitted</th><th>done</th><th>failed</th>"
         "<th>canceled</th><th>ran (s)</th></tr>";
    for (const SteeringRound& g : r.rounds) {
      std::string what;
      for (const auto& [task, n] : g.tasks) {
        what += fmt::format("{}{} &times; {}", what.empty() ? "" : ", ", n, escape(task));
      }
      h += fmt::format(
          "<tr><td>{}</td><td>{}</td><td>{:.3f}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
          "<td>{}</td></tr>",
          escape(g.submitter), g.call, g.at_s, what, g.done, g.failed, g.canceled,
          g.first_start_s >= 0 && g.last_end_s >= 0
              ? fmt::format("{:.3f} &ndash; {:.3f}", g.first_start_s, g.last_end_s)
              : std::string("-"));
    }
    h += "</table>\n";
  }
  if (!r.slowest.empty()) {
    h += "<h2>Slowest tasks</h2>\n<table><tr><th>task</th><th>seconds</th><th>state</th>"
         "<th>worker</th></tr>";
    for (const SlowTask& t : r.slowest) {
      h += fmt::format("<tr><td>{}[{}]</td><td>{:.3f}</td><td>{}</td><td>{}</td></tr>",
                       escape(t.task), t.index, t.seconds, escape(t.state), t.worker);
    }
    h += "</table>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace tandem::detail::report
