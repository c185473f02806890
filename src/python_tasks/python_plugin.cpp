// libtandem_python.so: the CPython interpreter a worker rank embeds to run
// Python function tasks (`python = "module:function"`).
//
// One interpreter per process, started once. The worker's thread holds the
// GIL only while a task runs, so threads the user's code starts keep
// running between tasks. The Python side of each call (the context object,
// the attempt's print output, the return value as JSON, the traceback) is
// tandem/_task.py; this file moves values across and keeps the objects that
// every call reuses: the function, the task's strings and arguments, the
// client.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/access.hpp"
#include "base/raise.hpp"
#include "capi/wrap_client.hpp"
#include "tandem/error.hpp"
#include "tasks/context_data.hpp"
#include "tasks/python_tasks.hpp"

namespace tandem::detail {

namespace {

// A strong reference, released with the GIL held (every use below holds it).
class Ref {
 public:
  Ref() = default;
  explicit Ref(PyObject* p) noexcept : p_(p) {}
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  Ref(Ref&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  Ref& operator=(Ref&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Ref() { Py_XDECREF(p_); }
  PyObject* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  PyObject* p_ = nullptr;
};

// Holds the GIL for a scope, from any thread.
class Gil {
 public:
  Gil() noexcept : state_(PyGILState_Ensure()) {}
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;
  ~Gil() { PyGILState_Release(state_); }

 private:
  PyGILState_STATE state_;
};

// What each Python task reuses on every call; empty for other tasks.
struct PythonTask {
  Ref function;
  Ref name;
  Ref run_dir;
  Ref output_dir;
  Ref args;            // a dict, copied for each call
  bool swept = false;  // each instance has its own args (a sweep): read them per call
};

struct Interpreter {
  Ref context_type;  // tandem._task.TaskContext
  Ref run;           // tandem._task.run
  Ref loads;         // json.loads, for a sweep's per-instance args
  Ref client;        // tandem.Client over the worker's client, made on first use
  tandem_client* client_handle = nullptr;
  std::vector<PythonTask> tasks;  // by the workflow's task index
};

Interpreter* g_interp = nullptr;

// The pending Python exception as "Type: message", cleared.
std::string take_error() {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string text = "unknown Python error";
  if (value) {
    Ref str(PyObject_Str(value));
    const char* s = str ? PyUnicode_AsUTF8(str.get()) : nullptr;
    const char* tname = type ? reinterpret_cast<PyTypeObject*>(type)->tp_name : "Exception";
    text = s ? fmt::format("{}: {}", tname, s) : std::string(tname);
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  return text;
}

[[noreturn]] void fail(const std::string& what) {
  std::string why = take_error();
  raise<environment_error>(fmt::format("Python: {}: {}", what, why));
}

PyObject* text(const std::string& s) {
  PyObject* o = PyUnicode_DecodeFSDefaultAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
  if (!o) fail("cannot make a string of '" + s + "'");
  return o;
}

void start_interpreter() {
  if (Py_IsInitialized()) return;
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  // Tandem's own handlers for SIGINT and SIGTERM drain the job; Python
  // must not replace them.
  config.install_signal_handlers = 0;
  config.parse_argv = 0;
  const PyStatus status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    raise<environment_error>(fmt::format("cannot start the Python interpreter: {}",
                                         status.err_msg ? status.err_msg : "unknown error"));
  }
  // From here on the worker's thread takes the GIL for each task only.
  PyEval_SaveThread();
}

// Puts @p dirs at the front of sys.path, in order (those there already
// stay where they are).
void prepend_path(const std::vector<std::string>& dirs) {
  PyObject* path = PySys_GetObject("path");  // borrowed
  if (!path || !PyList_Check(path)) fail("sys.path is not a list");
  Py_ssize_t at = 0;
  for (const std::string& d : dirs) {
    Ref dir(text(d));
    if (PySequence_Contains(path, dir.get()) == 1) continue;
    if (PyList_Insert(path, at++, dir.get()) != 0) fail("sys.path");
  }
}

Ref import_attr(const char* module, const char* attr) {
  Ref m(PyImport_ImportModule(module));
  if (!m) fail(fmt::format("cannot import {}", module));
  Ref a(PyObject_GetAttrString(m.get(), attr));
  if (!a) fail(fmt::format("{} has no {}", module, attr));
  return a;
}

void start(const Workflow& wf, const std::string& package_dir) {
  start_interpreter();
  Gil gil;
  if (!g_interp) g_interp = new Interpreter();  // lives as long as the interpreter
  Interpreter& in = *g_interp;
  // Tandem's own package, and the standard modules it uses, are imported
  // before the workflow's directories go on sys.path: a user's random.py
  // or json.py beside the workflow must not break Tandem itself (it is
  // then shadowed by the standard library's, and find() says so).
  if (!package_dir.empty()) prepend_path({package_dir});
  in.context_type = import_attr("tandem._task", "TaskContext");
  in.run = import_attr("tandem._task", "run");
  {
    // print and logging during a task go to its files (tandem/_task.py).
    Ref install = import_attr("tandem._task", "install_streams");
    Ref done(PyObject_CallNoArgs(install.get()));
    if (!done) fail("tandem._task.install_streams");
  }
  std::vector<std::string> user{wf.dir};
  user.insert(user.end(), wf.job.pythonpath.begin(), wf.job.pythonpath.end());
  prepend_path(user);
  {
    // One limit for return values, the journal's (tasks/context_data.hpp).
    Ref task_module(PyImport_ImportModule("tandem._task"));
    Ref limit(PyLong_FromSize_t(kMaxResultBytes));
    if (!task_module || !limit ||
        PyObject_SetAttrString(task_module.get(), "MAX_RESULT_BYTES", limit.get()) != 0) {
      fail("tandem._task.MAX_RESULT_BYTES");
    }
  }
  Ref find = import_attr("tandem._task", "find");
  Ref load_error = import_attr("tandem._task", "LoadError");
  in.loads = import_attr("json", "loads");
  PyObject* loads = in.loads.get();
  in.tasks.clear();
  in.tasks.resize(wf.tasks.size());
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    if (!t.is_python()) continue;
    PythonTask& pt = in.tasks[i];
    Ref spec(text(t.python));
    pt.function = Ref(PyObject_CallOneArg(find.get(), spec.get()));
    if (!pt.function) {
      const bool ours = PyErr_ExceptionMatches(load_error.get());
      std::string why = take_error();
      if (ours) why = why.substr(why.find(": ") + 2);  // the type's name says nothing here
      throw config_error(wf.path, t.function_pos.line, t.function_pos.column,
                         fmt::format("task[{}].python", i),
                         fmt::format("task '{}': {}", t.name, why));
    }
    pt.name = Ref(text(t.name));
    Ref args_text(text(t.args_json));
    pt.args = Ref(PyObject_CallOneArg(loads, args_text.get()));
    if (!pt.args) fail("the task's args");
    pt.swept = t.has_sweep();
  }
}

// The worker's client as a tandem.Client, made once.
PyObject* client_for(Client* client) {
  Interpreter& in = *g_interp;
  if (!client) return Py_None;
  if (!in.client) {
    in.client_handle = capi::wrap_client(*client);
    Ref over = import_attr("tandem", "Client");
    Ref address(PyLong_FromVoidPtr(in.client_handle));
    in.client = Ref(PyObject_CallMethod(over.get(), "_over", "O", address.get()));
    if (!in.client) fail("cannot make the task's client");
  }
  return in.client.get();
}

// A steering task's line to the coordinator as a Python callable from
// request text to answer text. The GIL is let go while it waits: a wait
// lasts as long as the tasks it waits for, and the task's own threads run.
//
// The callable holds a SteerLine that the attempt cuts when it ends: a
// context kept past its call (in a global, say) then says so instead of
// reaching into an attempt that is gone.
struct SteerLine {
  const TaskContextData* data = nullptr;
};

PyObject* steer_call(PyObject* self, PyObject* request) {
  const auto* line = static_cast<const SteerLine*>(PyCapsule_GetPointer(self, "tandem.steer"));
  if (!line) return nullptr;
  const TaskContextData* d = line->data;
  if (!d) {
    PyErr_SetString(PyExc_RuntimeError,
                    "this task context's attempt has ended: submit and wait only while it runs");
    return nullptr;
  }
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(request, &n);
  if (!s) return nullptr;
  std::string text(s, static_cast<std::size_t>(n));
  std::string answer;
  std::string why;
  Py_BEGIN_ALLOW_THREADS;
  try {
    answer = d->steer(text);
  } catch (const std::exception& e) {
    why = e.what();
  }
  Py_END_ALLOW_THREADS;
  if (!why.empty()) {
    PyErr_SetString(PyExc_RuntimeError, why.c_str());
    return nullptr;
  }
  return PyUnicode_FromStringAndSize(answer.data(), static_cast<Py_ssize_t>(answer.size()));
}

PyMethodDef g_steer_method = {"steer", &steer_call, METH_O, "a steering request's answer"};

void free_steer_line(PyObject* capsule) {
  delete static_cast<SteerLine*>(PyCapsule_GetPointer(capsule, "tandem.steer"));
}

// The callable for a steering task's context, or None; @p line is where
// the attempt cuts it when it ends.
Ref steer_for(const TaskContextData& d, SteerLine*& line) {
  line = nullptr;
  if (!d.steer) return Ref(Py_NewRef(Py_None));
  auto owned = std::make_unique<SteerLine>();
  owned->data = &d;
  Ref capsule(PyCapsule_New(owned.get(), "tandem.steer", &free_steer_line));
  if (!capsule) return Ref();
  line = owned.release();  // the capsule's now
  return Ref(PyCFunction_New(&g_steer_method, capsule.get()));
}

// Cuts a SteerLine when the attempt's call returns, however it returns.
struct CutAtEnd {
  SteerLine* line = nullptr;
  CutAtEnd() = default;
  CutAtEnd(const CutAtEnd&) = delete;
  CutAtEnd& operator=(const CutAtEnd&) = delete;
  ~CutAtEnd() {
    if (line) line->data = nullptr;
  }
};

void run(TaskContext& ctx) {
  const TaskContextData& d = Access::data(ctx);
  Gil gil;
  Interpreter& in = *g_interp;
  PythonTask& pt = in.tasks.at(static_cast<std::size_t>(d.task));
  if (!pt.run_dir) {  // the same for every attempt: made once
    pt.run_dir = Ref(text(d.run_dir.string()));
    pt.output_dir = Ref(text(d.output_dir.string()));
  }
  PyObject* rd = pt.run_dir.get();
  PyObject* od = pt.output_dir.get();
  Ref args(pt.swept || d.own_args
               ? PyObject_CallOneArg(in.loads.get(), Ref(text(d.args->dump())).get())
               : PyDict_Copy(pt.args.get()));
  Ref index(PyLong_FromLong(d.index));
  Ref count(PyLong_FromLong(d.count));
  Ref attempt(PyLong_FromLong(d.attempt));
  Ref rank(PyLong_FromLong(d.rank));
  Ref size(PyLong_FromLong(d.size));
  Ref fcomm(d.isolated ? Py_NewRef(Py_None) : PyLong_FromLong(MPI_Comm_c2f(d.comm)));
  PyObject* client = d.isolated ? Py_None : client_for(d.client);
  Ref gpus(PyTuple_New(static_cast<Py_ssize_t>(d.gpus.size())));
  for (std::size_t i = 0; gpus && i < d.gpus.size(); ++i) {
    PyTuple_SET_ITEM(gpus.get(), static_cast<Py_ssize_t>(i), text(d.gpus[i]));
  }
  SteerLine* line = nullptr;
  Ref steer = steer_for(d, line);
  // Declared after `steer`, so destroyed before it: the line is cut while
  // this call still holds the callable (and so the line).
  CutAtEnd cut;
  cut.line = line;
  if (!args || !index || !count || !attempt || !rank || !size || !fcomm || !gpus || !steer) {
    fail("the context");
  }
  PyObject* fields[] = {
      pt.name.get(), index.get(), count.get(), attempt.get(), rd,         od,         args.get(),
      client,        fcomm.get(), rank.get(),  size.get(),    gpus.get(), steer.get()};
  Ref context(PyObject_Vectorcall(in.context_type.get(), fields, std::size(fields), nullptr));
  if (!context) fail("cannot make the task's context");
  // An isolated child's print output already goes to its files.
  PyObject* call[] = {pt.function.get(), context.get(), d.isolated ? Py_False : Py_True};
  Ref answer(PyObject_Vectorcall(in.run.get(), call, std::size(call), nullptr));
  if (!answer || !PyTuple_Check(answer.get()) || PyTuple_GET_SIZE(answer.get()) != 3) {
    fail("tandem._task.run");
  }
  d.exit_code = static_cast<int>(PyLong_AsLong(PyTuple_GET_ITEM(answer.get(), 2)));
  if (PyErr_Occurred()) fail("tandem._task.run's exit code");
  PyObject* why = PyTuple_GET_ITEM(answer.get(), 0);
  if (why != Py_None) {
    const char* s = PyUnicode_AsUTF8(why);
    throw task_error(s ? s : "the function raised an exception");
  }
  Py_ssize_t n = 0;
  const char* result = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(answer.get(), 1), &n);
  if (result && n > 0) d.result.assign(result, static_cast<std::size_t>(n));
}

// Python's fork protocol, for isolated tasks: the GIL and the import lock
// are held across fork() so that the child gets them in a known state.
PyGILState_STATE g_fork_gil;

void before_fork() {
  g_fork_gil = PyGILState_Ensure();
  PyOS_BeforeFork();
}

void after_fork_parent() {
  PyOS_AfterFork_Parent();
  PyGILState_Release(g_fork_gil);
}

void after_fork_child() {
  PyOS_AfterFork_Child();
  // The child runs one task and leaves; it keeps the GIL.
}

void finish() {
  if (!g_interp) return;
  Gil gil;
  Ref run_exit(import_attr("atexit", "_run_exitfuncs"));
  Ref done(PyObject_CallNoArgs(run_exit.get()));
  if (!done) PyErr_Print();
  for (const char* stream : {"stdout", "stderr"}) {
    if (PyObject* f = PySys_GetObject(stream)) {  // borrowed
      Ref flushed(PyObject_CallMethod(f, "flush", nullptr));
      if (!flushed) PyErr_Clear();
    }
  }
}

const PythonPlugin g_plugin_entry{&start, &run, &before_fork, &after_fork_parent, &after_fork_child,
                                  &finish};

}  // namespace

}  // namespace tandem::detail

extern "C" const tandem::detail::PythonPlugin* tandem_python_plugin() {
  return &tandem::detail::g_plugin_entry;
}
