/* tandem._native: the hot path of tandem.Client, in C.
 *
 * ctypes costs about a microsecond a call here and a request took a dozen
 * of them, so a Python task's round trip was 4x the C++ client's. This
 * module makes the same C API calls from C: inputs are numpy arrays taken
 * through the buffer protocol (no copy), outputs are numpy arrays over the
 * reply's memory (no copy), kept alive by the arrays.
 *
 * It does not link libtandem: tandem/__init__.py loads the library with
 * ctypes as before and hands this module the functions' addresses
 * (bind()), so both paths always use the same library. Without this
 * module (a package copied without its build) the ctypes path serves. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "tandem/tandem.h"

#define MAX_INPUTS 64
#define MAX_DIMS 32

static struct {
  const char* (*last_error)(void);
  tandem_status (*tensor_view)(tandem_dtype, int, const int64_t*, tandem_order, void*,
                               tandem_tensor**);
  void (*tensor_free)(tandem_tensor*);
  tandem_dtype (*tensor_dtype)(const tandem_tensor*);
  int (*tensor_ndim)(const tandem_tensor*);
  int64_t (*tensor_dim)(const tandem_tensor*, int);
  size_t (*tensor_nbytes)(const tandem_tensor*);
  const void* (*tensor_data)(const tandem_tensor*);
  tandem_status (*infer_async)(tandem_client*, const char*, int, const char* const*,
                               tandem_tensor* const*, tandem_request**);
  tandem_status (*wait)(tandem_request*, tandem_outputs**);
  int (*outputs_count)(const tandem_outputs*);
  const char* (*outputs_name)(const tandem_outputs*, int);
  const tandem_tensor* (*outputs_tensor)(const tandem_outputs*, int);
  void (*outputs_free)(tandem_outputs*);
  int (*outputs_model_version)(const tandem_outputs*);
  const char* (*outputs_source)(const tandem_outputs*);
} api;

static PyObject* g_raise = NULL;      /* tandem._raise_status(status, message) */
static PyObject* g_outputs = NULL;    /* tandem.Outputs */
static PyObject* g_ndarray = NULL;    /* numpy.ndarray */
static PyObject* g_dtypes = NULL;     /* numpy dtypes by tandem_dtype (None: none) */
static PyObject* g_contiguous = NULL; /* numpy.ascontiguousarray */
static PyObject* g_buffer_kw = NULL;  /* ("buffer",): ndarray()'s keyword, made once */

/* Sets the Python error for a failed call: tandem's TandemError subclass. */
static PyObject* fail(tandem_status status) {
  PyObject* r = PyObject_CallFunction(g_raise, "is", (int)status, api.last_error());
  Py_XDECREF(r); /* _raise_status raises; r is NULL with the error set */
  return NULL;
}

/* --- the reply's memory: freed when the last array over it goes --------- */

typedef struct {
  PyObject_HEAD tandem_outputs* outputs;
} Owner;

static void owner_dealloc(Owner* self) {
  if (self->outputs) api.outputs_free(self->outputs);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyTypeObject OwnerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tandem._native.Reply",
    .tp_basicsize = sizeof(Owner),
    .tp_dealloc = (destructor)owner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A reply's buffers, alive while any output array is.",
};

/* One output's bytes, exported through the buffer protocol. */
typedef struct {
  PyObject_HEAD PyObject* owner;
  void* data;
  Py_ssize_t nbytes;
} Memory;

static int memory_getbuffer(Memory* self, Py_buffer* view, int flags) {
  return PyBuffer_FillInfo(view, (PyObject*)self, self->data, self->nbytes, 0, flags);
}

static void memory_dealloc(Memory* self) {
  Py_XDECREF(self->owner);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyObject* memory_address(Memory* self, void* closure) {
  (void)closure;
  return PyLong_FromVoidPtr(self->data);
}

static PyBufferProcs memory_buffer = {.bf_getbuffer = (getbufferproc)memory_getbuffer};
static PyGetSetDef memory_getset[] = {
    {"address", (getter)memory_address, NULL, "where the bytes are (the reply's own memory)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tandem._native.Memory",
    .tp_basicsize = sizeof(Memory),
    .tp_dealloc = (destructor)memory_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_buffer = &memory_buffer,
    .tp_getset = memory_getset,
    .tp_doc = "One output's bytes inside a reply.",
};

/* --- inputs --------------------------------------------------------------- */

/* The tandem_dtype of a buffer's format, or -1. */
static int dtype_of(const Py_buffer* b) {
  const char* f = b->format ? b->format : "B";
  if (*f == '<' || *f == '=' || *f == '@') ++f;
  if (f[0] == '\0' || f[1] != '\0') return -1;
  const Py_ssize_t n = b->itemsize;
  switch (f[0]) {
    case '?':
      return TANDEM_BOOL;
    case 'e':
      return TANDEM_FP16;
    case 'f':
      return TANDEM_FP32;
    case 'd':
      return TANDEM_FP64;
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
      return n == 1 ? TANDEM_INT8 : n == 2 ? TANDEM_INT16 : n == 4 ? TANDEM_INT32 : TANDEM_INT64;
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
      return n == 1   ? TANDEM_UINT8
             : n == 2 ? TANDEM_UINT16
             : n == 4 ? TANDEM_UINT32
                      : TANDEM_UINT64;
    default:
      return -1;
  }
}

/* Raises ArgumentError: the input's dtype (numpy's name) is not Tandem's. */
static void dtype_error(const char* name, PyObject* value, const char* format) {
  PyObject* dtype = PyObject_GetAttrString(value, "dtype");
  PyObject* text = dtype ? PyObject_Str(dtype) : NULL;
  PyErr_Clear();
  PyObject* msg =
      text ? PyUnicode_FromFormat("input '%s' has dtype %U, which Tandem lacks", name, text)
           : PyUnicode_FromFormat("input '%s' has a type Tandem lacks (format '%s')", name, format);
  Py_XDECREF(dtype);
  Py_XDECREF(text);
  if (msg) {
    PyObject* r = PyObject_CallFunction(g_raise, "iO", (int)TANDEM_ERR_ARGUMENT, msg);
    Py_XDECREF(r);
    Py_DECREF(msg);
  }
}

/* The buffer of one input: the object's own memory when it is C-contiguous
 * (no copy), else numpy.ascontiguousarray's copy, kept in *owned. */
static int take_buffer(PyObject* value, Py_buffer* view, PyObject** owned) {
  *owned = NULL;
  if (PyObject_GetBuffer(value, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) return 0;
  PyErr_Clear();
  *owned = PyObject_CallOneArg(g_contiguous, value);
  if (!*owned) return -1;
  if (PyObject_GetBuffer(*owned, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) return 0;
  Py_CLEAR(*owned);
  return -1;
}

/* send(client, service, inputs) -> request address. inputs: a dict of name
 * -> array, or one array (the service's only input, whatever its name). */
static PyObject* native_send(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "send(client, service, inputs)");
    return NULL;
  }
  tandem_client* client = PyLong_AsVoidPtr(args[0]);
  const char* service = PyUnicode_AsUTF8(args[1]);
  if (!service) return NULL;
  PyObject* inputs = args[2];
  const int is_dict = PyDict_Check(inputs);
  const Py_ssize_t n = is_dict ? PyDict_GET_SIZE(inputs) : 1;
  if (n > MAX_INPUTS) {
    PyErr_SetString(PyExc_ValueError, "more than 64 inputs");
    return NULL;
  }
  Py_buffer views[MAX_INPUTS];
  PyObject* owned[MAX_INPUTS];
  tandem_tensor* tensors[MAX_INPUTS];
  const char* names[MAX_INPUTS];
  Py_ssize_t held = 0;
  Py_ssize_t pos = 0;
  PyObject* result = NULL;
  for (; held < n; ++held) {
    PyObject* name = NULL;
    PyObject* value = inputs;
    if (is_dict) {
      if (!PyDict_Next(inputs, &pos, &name, &value)) break;
      names[held] = PyUnicode_AsUTF8(name);
      if (!names[held]) goto done;
    } else {
      names[held] = "";
    }
    if (take_buffer(value, &views[held], &owned[held]) != 0) goto done;
    Py_buffer* v = &views[held];
    const int code = dtype_of(v);
    if (code < 0 || v->ndim > MAX_DIMS) {
      dtype_error(names[held], owned[held] ? owned[held] : value, v->format ? v->format : "B");
      PyBuffer_Release(v);
      Py_XDECREF(owned[held]);
      goto done;
    }
    int64_t dims[MAX_DIMS];
    for (int d = 0; d < v->ndim; ++d) dims[d] = v->shape[d];
    const tandem_status s = api.tensor_view((tandem_dtype)code, v->ndim, dims, TANDEM_ROW_MAJOR,
                                            v->buf, &tensors[held]);
    if (s != TANDEM_OK) {
      PyBuffer_Release(v);
      Py_XDECREF(owned[held]);
      fail(s);
      goto done;
    }
  }
  {
    tandem_request* request = NULL;
    const char* const* name_list = is_dict ? names : NULL; /* NULL: the only input */
    tandem_status s;
    Py_BEGIN_ALLOW_THREADS s =
        api.infer_async(client, service, (int)held, name_list, tensors, &request);
    Py_END_ALLOW_THREADS if (s != TANDEM_OK) fail(s);
    else result = PyLong_FromVoidPtr(request);
  }
done:
  /* The inputs were copied when the request was sent. */
  for (Py_ssize_t i = 0; i < held; ++i) {
    api.tensor_free(tensors[i]);
    PyBuffer_Release(&views[i]);
    Py_XDECREF(owned[i]);
  }
  return result;
}

/* --- outputs -------------------------------------------------------------- */

static PyObject* to_outputs(tandem_outputs* outputs) {
  Owner* owner = PyObject_New(Owner, &OwnerType);
  if (!owner) {
    api.outputs_free(outputs);
    return NULL;
  }
  owner->outputs = outputs;
  PyObject* result = PyObject_CallNoArgs(g_outputs);
  if (!result) goto fail;
  const int model_version = api.outputs_model_version(outputs);
  if (model_version != 0) { /* 0 is the class's default: no instance dict for it */
    PyObject* version = PyLong_FromLong(model_version);
    if (!version || PyObject_SetAttrString(result, "model_version", version) != 0) {
      Py_XDECREF(version);
      goto fail;
    }
    Py_DECREF(version);
  }
  const char* source = api.outputs_source(outputs);
  if (source && source[0]) {
    PyObject* text = PyUnicode_FromString(source);
    if (!text || PyObject_SetAttrString(result, "source", text) != 0) {
      Py_XDECREF(text);
      goto fail;
    }
    Py_DECREF(text);
  }
  const int count = api.outputs_count(outputs);
  for (int k = 0; k < count; ++k) {
    const char* name = api.outputs_name(outputs, k);
    const tandem_tensor* t = api.outputs_tensor(outputs, k);
    const int code = (int)api.tensor_dtype(t);
    PyObject* dtype =
        code >= 0 && code < PyList_GET_SIZE(g_dtypes) ? PyList_GET_ITEM(g_dtypes, code) : Py_None;
    if (dtype == Py_None) {
      PyObject* msg = PyUnicode_FromFormat("output '%s' has a dtype numpy lacks", name);
      if (msg) {
        PyObject* r = PyObject_CallFunction(g_raise, "iO", (int)TANDEM_ERR_ARGUMENT, msg);
        Py_XDECREF(r);
        Py_DECREF(msg);
      }
      goto fail;
    }
    const int ndim = api.tensor_ndim(t);
    PyObject* shape = PyTuple_New(ndim);
    if (!shape) goto fail;
    for (int d = 0; d < ndim; ++d)
      PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(api.tensor_dim(t, d)));
    Memory* mem = PyObject_New(Memory, &MemoryType);
    if (!mem) {
      Py_DECREF(shape);
      goto fail;
    }
    Py_INCREF(owner);
    mem->owner = (PyObject*)owner;
    mem->data = (void*)api.tensor_data(t);
    mem->nbytes = (Py_ssize_t)api.tensor_nbytes(t);
    static char empty[1];
    if (!mem->data) mem->data = empty; /* a zero-size output */
    /* numpy.ndarray(shape, dtype, buffer=mem): an array over the reply. */
    PyObject* call_args[] = {shape, dtype, (PyObject*)mem};
    PyObject* array = PyObject_Vectorcall(g_ndarray, call_args, 2, g_buffer_kw);
    Py_DECREF(shape);
    Py_DECREF(mem);
    if (!array) goto fail;
    const int set = PyDict_SetItemString(result, name, array);
    Py_DECREF(array);
    if (set != 0) goto fail;
  }
  Py_DECREF(owner);
  return result;
fail:
  Py_XDECREF(result);
  Py_DECREF(owner);
  return NULL;
}

/* wait(request) -> Outputs; the request is freed, also on failure. */
static PyObject* native_wait(PyObject* self, PyObject* arg) {
  (void)self;
  tandem_request* request = PyLong_AsVoidPtr(arg);
  if (!request && PyErr_Occurred()) return NULL;
  tandem_outputs* outputs = NULL;
  tandem_status s;
  Py_BEGIN_ALLOW_THREADS s = api.wait(request, &outputs);
  Py_END_ALLOW_THREADS if (s != TANDEM_OK) return fail(s);
  return to_outputs(outputs);
}

/* infer(client, service, inputs) -> Outputs: send and wait in one call. */
static PyObject* native_infer(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* request = native_send(self, args, nargs);
  if (!request) return NULL;
  PyObject* out = native_wait(self, request);
  Py_DECREF(request);
  return out;
}

/* input_address(array): where a tensor view of the array would point (the
 * tests' proof that inputs are not copied). */
static PyObject* native_input_address(PyObject* self, PyObject* arg) {
  (void)self;
  Py_buffer v;
  if (PyObject_GetBuffer(arg, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return NULL;
  int64_t dims[MAX_DIMS];
  for (int d = 0; d < v.ndim && d < MAX_DIMS; ++d) dims[d] = v.shape[d];
  tandem_tensor* t = NULL;
  const int code = dtype_of(&v);
  const tandem_status s = api.tensor_view((tandem_dtype)(code < 0 ? TANDEM_UINT8 : code), v.ndim,
                                          dims, TANDEM_ROW_MAJOR, v.buf, &t);
  PyBuffer_Release(&v);
  if (s != TANDEM_OK) return fail(s);
  PyObject* address = PyLong_FromVoidPtr((void*)api.tensor_data(t));
  api.tensor_free(t);
  return address;
}

/* bind(functions, raise_status, Outputs, ndarray, dtypes, ascontiguousarray):
 * functions maps the
 * C API's names to their addresses in the library ctypes loaded. */
static PyObject* native_bind(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *functions, *raise_status, *outputs, *ndarray, *dtypes, *contiguous;
  if (!PyArg_ParseTuple(args, "O!OOOO!O", &PyDict_Type, &functions, &raise_status, &outputs,
                        &ndarray, &PyList_Type, &dtypes, &contiguous)) {
    return NULL;
  }
  struct {
    const char* name;
    void** slot;
  } table[] = {
      {"tandem_last_error", (void**)&api.last_error},
      {"tandem_tensor_view", (void**)&api.tensor_view},
      {"tandem_tensor_free", (void**)&api.tensor_free},
      {"tandem_tensor_dtype", (void**)&api.tensor_dtype},
      {"tandem_tensor_ndim", (void**)&api.tensor_ndim},
      {"tandem_tensor_dim", (void**)&api.tensor_dim},
      {"tandem_tensor_nbytes", (void**)&api.tensor_nbytes},
      {"tandem_tensor_data", (void**)&api.tensor_data},
      {"tandem_infer_async", (void**)&api.infer_async},
      {"tandem_wait", (void**)&api.wait},
      {"tandem_outputs_count", (void**)&api.outputs_count},
      {"tandem_outputs_name", (void**)&api.outputs_name},
      {"tandem_outputs_tensor", (void**)&api.outputs_tensor},
      {"tandem_outputs_free", (void**)&api.outputs_free},
      {"tandem_outputs_model_version", (void**)&api.outputs_model_version},
      {"tandem_outputs_source", (void**)&api.outputs_source},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i) {
    PyObject* address = PyDict_GetItemString(functions, table[i].name);
    if (!address) return PyErr_Format(PyExc_KeyError, "bind: no address for %s", table[i].name);
    *table[i].slot = PyLong_AsVoidPtr(address);
    if (!*table[i].slot) return NULL;
  }
  Py_XSETREF(g_raise, Py_NewRef(raise_status));
  Py_XSETREF(g_outputs, Py_NewRef(outputs));
  Py_XSETREF(g_ndarray, Py_NewRef(ndarray));
  Py_XSETREF(g_dtypes, Py_NewRef(dtypes));
  Py_XSETREF(g_contiguous, Py_NewRef(contiguous));
  if (!g_buffer_kw) {
    g_buffer_kw = Py_BuildValue("(s)", "buffer");
    if (!g_buffer_kw) return NULL;
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", native_bind, METH_VARARGS, "Binds the C API functions ctypes loaded."},
    {"send", (PyCFunction)(void (*)(void))native_send, METH_FASTCALL,
     "send(client, service, inputs) -> request"},
    {"wait", native_wait, METH_O, "wait(request) -> Outputs"},
    {"infer", (PyCFunction)(void (*)(void))native_infer, METH_FASTCALL,
     "infer(client, service, inputs) -> Outputs"},
    {"input_address", native_input_address, METH_O,
     "Where the tensor view of an array points (for tests)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                    "tandem._native",
                                    "The C hot path of tandem.Client.",
                                    -1,
                                    methods,
                                    NULL,
                                    NULL,
                                    NULL,
                                    NULL};

PyMODINIT_FUNC PyInit__native(void) {
  if (PyType_Ready(&OwnerType) < 0 || PyType_Ready(&MemoryType) < 0) return NULL;
  return PyModule_Create(&module);
}
