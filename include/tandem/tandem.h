/* Tandem's C API: the job's services from C, Fortran (module tandem, over
 * iso_c_binding) and Python (the tandem package, over ctypes).
 *
 * Two ways in, one set of calls:
 *  - an executable task started by `tandem run`: tandem_connect() reaches
 *    the worker's local proxy through the socket named in TANDEM_SOCKET;
 *  - an MPI application in SPMD mode: tandem_session_start() (collective)
 *    and tandem_session_client() talk to the services directly over MPI.
 *
 * Every call returns a tandem_status; on failure tandem_last_error() says
 * what went wrong (per thread, until the next failing call). Tensors made
 * with tandem_tensor_view() borrow the caller's memory, which must stay
 * valid until the request that uses them has been answered.
 *
 * Link with -ltandem (pkg-config --cflags --libs tandem).
 */
#ifndef TANDEM_TANDEM_H
#define TANDEM_TANDEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tandem_status {
  TANDEM_OK = 0,
  TANDEM_ERR_ARGUMENT = 1, /* a null pointer, a bad dtype or shape, an unknown name */
  TANDEM_ERR_CONNECT = 2,  /* no proxy to reach (TANDEM_SOCKET unset, socket gone) */
  TANDEM_ERR_SERVICE = 3,  /* the service is unknown, FAILED or not READY in time */
  TANDEM_ERR_REQUEST = 4,  /* the service answered with an error */
  TANDEM_ERR_PROTOCOL = 5, /* the proxy's answer made no sense; the connection is closed */
  TANDEM_ERR_MPI = 6,      /* SPMD mode: MPI is not initialised or a collective failed */
  TANDEM_ERR_INTERNAL = 7,
  TANDEM_ERR_CONFIG =
      8,             /* a workflow file that cannot be used: the message names file, line, key */
  TANDEM_ERR_IO = 9, /* a file or directory Tandem needs: the message names it and the cause */
  TANDEM_ERR_DEADLINE = 10 /* the request was not answered before its deadline */
} tandem_status;

/* Element types: KServe v2's, in this order. */
typedef enum tandem_dtype {
  TANDEM_BOOL = 0,
  TANDEM_UINT8,
  TANDEM_UINT16,
  TANDEM_UINT32,
  TANDEM_UINT64,
  TANDEM_INT8,
  TANDEM_INT16,
  TANDEM_INT32,
  TANDEM_INT64,
  TANDEM_FP16,
  TANDEM_BF16,
  TANDEM_FP32,
  TANDEM_FP64,
  TANDEM_BYTES
} tandem_dtype;

/* How the dims passed to tandem_tensor_view() are ordered. A column-major
 * (Fortran) array x(64, n) is the same memory as a row-major (n, 64) one:
 * with TANDEM_COLUMN_MAJOR the dims are reversed, and the service sees
 * shape (n, 64). */
typedef enum tandem_order { TANDEM_ROW_MAJOR = 0, TANDEM_COLUMN_MAJOR = 1 } tandem_order;

/* How a request's tensors travel (tandem::Transport). */
typedef enum tandem_transport {
  TANDEM_TRANSPORT_AUTO = -1, /* by size and locality */
  TANDEM_TRANSPORT_INLINE = 0,
  TANDEM_TRANSPORT_SHM = 1,
  TANDEM_TRANSPORT_HDF5 = 2
} tandem_transport;

/* Per-request options (tandem::InferOptions); zero-initialise, then set
 * what you need: {0, TANDEM_TRANSPORT_AUTO, 0} is the default. */
typedef struct tandem_infer_options {
  int version;                /* the model version to run; 0: the service's policy */
  tandem_transport transport; /* TANDEM_TRANSPORT_AUTO unless you must choose */
  double deadline_ms;         /* how long the answer is of use, from the call; 0: the
                                 service's deadline_ms, if any. A request not answered in
                                 time fails with TANDEM_ERR_DEADLINE (or its service's
                                 fallback answers: tandem_outputs_source) */
} tandem_infer_options;

typedef struct tandem_client tandem_client;
typedef struct tandem_tensor tandem_tensor;
typedef struct tandem_outputs tandem_outputs;
typedef struct tandem_request tandem_request;
typedef struct tandem_session tandem_session;

/* The message of the last failing call in this thread ("" if none). */
const char* tandem_last_error(void);
/* After a TANDEM_ERR_CONFIG in this thread: 1, and where the workflow file
 * is at fault (any pointer may be NULL; the strings live until the next
 * failing call); 0 when the last error was of another kind. */
int tandem_last_config_error(const char** file, int* line, int* column, const char** key,
                             const char** reason);
/* "TANDEM_OK", "TANDEM_ERR_SERVICE", ... */
const char* tandem_status_name(tandem_status status);

/* --- connecting (executable tasks) -------------------------------------- */
tandem_status tandem_connect(tandem_client** client);
tandem_status tandem_connect_to(const char* socket_path, tandem_client** client);
/* Closes a connection (not a session's client: that goes with its session). */
void tandem_disconnect(tandem_client* client);

/* --- SPMD mode (MPI applications) ---------------------------------------- */
/* Collective over comm; MPI must be initialised. */
tandem_status tandem_session_start(const char* workflow_file, tandem_session** session);
tandem_status tandem_session_start_comm(void* mpi_comm, const char* workflow_file,
                                        tandem_session** session);
/* For Fortran: comm as MPI_Fint. */
tandem_status tandem_session_start_f(int32_t mpi_fcomm, const char* workflow_file,
                                     tandem_session** session);
/* 1 on the application's ranks; the other ranks serve until finalize. */
int tandem_session_is_app(const tandem_session* session);
/* The application ranks' communicator: *(MPI_Comm*)comm, MPI_COMM_NULL on
 * the other ranks. Owned by the session. */
tandem_status tandem_session_app_comm(const tandem_session* session, void* comm);
/* The same as MPI_Fint (MPI_Comm_c2f), for
 * Fortran and mpi4py (MPI.Comm.f2py); MPI_COMM_NULL's on other ranks.
 * Owned by the session. */
int32_t tandem_session_app_comm_f(const tandem_session* session);
/* The run directory (logs, summary.json, aborts.jsonl); owned by the session. */
const char* tandem_session_run_dir(const tandem_session* session);
/* The application ranks' client (NULL on other ranks); owned by the session. */
tandem_client* tandem_session_client(tandem_session* session);
/* Collective: ends the session and frees it. */
tandem_status tandem_session_finalize(tandem_session* session);
/* The same, saying how this rank's part of the application ended: the
 * largest exit_code of all ranks is the run's (summary.json, tandem report). */
tandem_status tandem_session_finalize_code(tandem_session* session, int exit_code);
/* Ends the whole job from one rank when the application cannot go on
 * (finalize would wait for ranks that are waiting for this one): records
 * why in RUN_DIR/aborts.jsonl and calls MPI_Abort with exit_code (1 if 0).
 * Not collective; does not return. */
void tandem_session_abort(tandem_session* session, int exit_code, const char* why);

/* --- services ------------------------------------------------------------ */
tandem_status tandem_wait_ready(tandem_client* client, const char* service, double timeout_s);
/* How long requests and calls wait for a service that is still STARTING
 * before they fail: timeout_s seconds, or (negative, the default) the
 * service's start_timeout. A FAILED or unknown service fails at once. */
tandem_status tandem_set_ready_timeout(tandem_client* client, double timeout_s);
/* Asks for `replicas` replicas of an elastic service (replicas = { min, max }
 * in the workflow) from now on; returns at once. TANDEM_ERR_SERVICE for a
 * service of fixed size or a count outside its min and max. */
tandem_status tandem_scale(tandem_client* client, const char* service, int replicas);

/* --- tensors ------------------------------------------------------------- */
/* A tensor over the caller's memory (no copy). */
tandem_status tandem_tensor_view(tandem_dtype dtype, int ndim, const int64_t* dims,
                                 tandem_order order, void* data, tandem_tensor** tensor);
void tandem_tensor_free(tandem_tensor* tensor);
tandem_dtype tandem_tensor_dtype(const tandem_tensor* tensor);
/* Row-major shape as the service sees it. */
int tandem_tensor_ndim(const tandem_tensor* tensor);
int64_t tandem_tensor_dim(const tandem_tensor* tensor, int i);
size_t tandem_tensor_nbytes(const tandem_tensor* tensor);
/* The bytes, valid as long as the tensor (or its outputs) lives. */
const void* tandem_tensor_data(const tandem_tensor* tensor);
/* Copies the bytes out; fails unless nbytes equals the tensor's size. */
tandem_status tandem_tensor_copy_to(const tandem_tensor* tensor, void* dst, size_t nbytes);

/* --- inference ------------------------------------------------------------ */
/* Sends n_inputs tensors named by names[i] (the service's signature's
 * names) and waits for the outputs. With one input, names may be NULL: the
 * tensor is the service's only input, whatever its name. */
tandem_status tandem_infer(tandem_client* client, const char* service, int n_inputs,
                           const char* const* names, tandem_tensor* const* inputs,
                           tandem_outputs** outputs);
tandem_status tandem_infer_async(tandem_client* client, const char* service, int n_inputs,
                                 const char* const* names, tandem_tensor* const* inputs,
                                 tandem_request** request);
/* tandem_infer_async with options (NULL: the defaults). */
tandem_status tandem_infer_async_opts(tandem_client* client, const char* service, int n_inputs,
                                      const char* const* names, tandem_tensor* const* inputs,
                                      const tandem_infer_options* options,
                                      tandem_request** request);
/* Collective inference (docs/user-guide.md#collective-inference): every rank
 * of *(MPI_Comm*)mpi_comm calls it with its own rows (0 allowed) and gets
 * its own rows of every output; each node's ranks send one request
 * together. Only a session's client (an MPI application). A failure is the
 * same status and message on every rank of the communicator. */
tandem_status tandem_infer_all(tandem_client* client, void* mpi_comm, const char* service,
                               int n_inputs, const char* const* names, tandem_tensor* const* inputs,
                               tandem_outputs** outputs);
/* The same with the communicator as MPI_Fint (MPI_Comm_c2f), for Fortran
 * and mpi4py (comm.py2f()). */
tandem_status tandem_infer_all_f(tandem_client* client, int32_t mpi_fcomm, const char* service,
                                 int n_inputs, const char* const* names,
                                 tandem_tensor* const* inputs, tandem_outputs** outputs);
/* Non-blocking: returns once the node's request is sent; the inputs may
 * change then. tandem_collective_wait (collective too) gives the outputs
 * and frees the call. */
typedef struct tandem_collective tandem_collective;
tandem_status tandem_infer_all_async(tandem_client* client, void* mpi_comm, const char* service,
                                     int n_inputs, const char* const* names,
                                     tandem_tensor* const* inputs, tandem_collective** call);
tandem_status tandem_infer_all_async_f(tandem_client* client, int32_t mpi_fcomm,
                                       const char* service, int n_inputs, const char* const* names,
                                       tandem_tensor* const* inputs, tandem_collective** call);
tandem_status tandem_collective_wait(tandem_collective* call, tandem_outputs** outputs);
/* *done = 1 once the reply is here; never blocks. */
tandem_status tandem_test(tandem_request* request, int* done);
/* Waits for the reply and frees the request (also when it failed). */
tandem_status tandem_wait(tandem_request* request, tandem_outputs** outputs);
/* Gives up on a request without waiting: its reply is dropped when it
 * comes. The inputs were copied when it was sent, so they may go now. */
void tandem_request_free(tandem_request* request);

int tandem_outputs_count(const tandem_outputs* outputs);
const char* tandem_outputs_name(const tandem_outputs* outputs, int i);
/* Borrowed: valid until tandem_outputs_free. NULL past the end. */
const tandem_tensor* tandem_outputs_tensor(const tandem_outputs* outputs, int i);
/* The output called name; NULL if there is none, and then tandem_last_error()
 * names the outputs there are ("no output 'r' (have: y)"). Borrowed, as above. */
const tandem_tensor* tandem_outputs_find(const tandem_outputs* outputs, const char* name);
void tandem_outputs_free(tandem_outputs* outputs);
/* The model version that computed the outputs (0 if the service has none). */
int tandem_outputs_model_version(const tandem_outputs* outputs);
/* The service that answered: the one asked, or its fallback (`fallback =
 * "service:NAME"`) when the one asked missed the deadline or could not serve.
 * Lives as long as the outputs; "" when unknown (collective calls). */
const char* tandem_outputs_source(const tandem_outputs* outputs);

/* --- model versions (torchscript services) -------------------------------- */
/* Loads the TorchScript file path as model version `version` (>= 1) of the
 * service on every replica, which go on serving meanwhile, and returns once
 * all have it. *serving (may be NULL) is the version served afterwards: the
 * new one under the "latest" policy, the pinned one otherwise. A relative
 * path is taken from this process's working directory. On failure the
 * message names each replica that could not load it and why; they go on
 * serving what they had. */
tandem_status tandem_load_model(tandem_client* client, const char* service, const char* path,
                                int version, int* serving);
/* Drops a version from every replica; *serving (may be NULL) as above. */
tandem_status tandem_unload_model(tandem_client* client, const char* service, int version,
                                  int* serving);

/* --- JSON services (OpenAI-compatible endpoints behind the bridge) -------- */
/* POSTs body to the service's path (NULL: its default); *answer is the
 * endpoint's JSON text, to be freed with tandem_free_string. */
tandem_status tandem_call(tandem_client* client, const char* service, const char* path,
                          const char* body, char** answer);
/* tandem_call, returning at once; take the answer with tandem_wait_answer
 * (tandem_test and tandem_request_free work as for inference requests). */
tandem_status tandem_call_async(tandem_client* client, const char* service, const char* path,
                                const char* body, tandem_request** request);
/* Waits for a call's answer (free it with tandem_free_string) and frees the
 * request, also when it failed. */
tandem_status tandem_wait_answer(tandem_request* request, char** answer);
void tandem_free_string(char* s);

/* --- adaptive workflows: an executable task with steering = true ----------- */
/* A steering task adds task instances to the run while it goes and waits
 * for them (docs/user-guide.md#adaptive-workflows), through its worker's
 * proxy: the client must come from tandem_connect(). Each submission is in
 * the run's journal before the call returns. Errors (TANDEM_ERR_ARGUMENT)
 * name what was wrong: a task the workflow does not have, one that cannot
 * be submitted, an unknown handle, a task that is not steering. */
typedef struct tandem_task_results tandem_task_results;

/* Adds one instance of the workflow's task `task` with args_json (a JSON
 * object; NULL: {}) and returns its handle. */
tandem_status tandem_submit(tandem_client* client, const char* task, const char* args_json,
                            int64_t* handle);
/* Adds the instances of requests_json, a JSON array of objects {"task",
 * "args", "priority", "after": [handles or task names], "key", "round",
 * "retries", "timeout"} (all but "task" optional), in one journal write. Their handles, in order,
 * go to handles[0..*count), which must hold capacity; more requests than that is an argument error.
 */
tandem_status tandem_submit_json(tandem_client* client, const char* requests_json, int64_t* handles,
                                 int capacity, int* count);
/* Waits until all n instances have ended (any = 0), or at least one (any =
 * 1: as-completed iteration), and returns those that have ended, in the
 * order of handles. Free *results with tandem_task_results_free. */
tandem_status tandem_wait_tasks(tandem_client* client, int n, const int64_t* handles, int any,
                                tandem_task_results** results);
int tandem_task_results_count(const tandem_task_results* results);
int64_t tandem_task_result_handle(const tandem_task_results* results, int i);
const char* tandem_task_result_task(const tandem_task_results* results, int i);
int tandem_task_result_index(const tandem_task_results* results, int i);
/* "DONE", "FAILED" or "CANCELED". */
const char* tandem_task_result_state(const tandem_task_results* results, int i);
int tandem_task_result_exit_code(const tandem_task_results* results, int i);
/* Why it FAILED or was CANCELED; "" when DONE. */
const char* tandem_task_result_reason(const tandem_task_results* results, int i);
/* What the instance returned, as JSON text; NULL when nothing. */
const char* tandem_task_result_json(const tandem_task_results* results, int i);
void tandem_task_results_free(tandem_task_results* results);
/* The JSON form under the calls above, for bindings: request_json is
 * {"submit": [...]} or {"wait": [handles], "any": bool}; *answer_json
 * (free with tandem_free_string) is {"handles": [...]} or {"results":
 * [{"handle", "task", "index", "state", "exit_code", "reason",
 * "result"}]}. An {"error": ...} answer is returned as the error. */
tandem_status tandem_steer(tandem_client* client, const char* request_json, char** answer_json);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_TANDEM_H */
