! Tandem's services from Fortran: a module over the C API (tandem.h) with
! iso_c_binding. Arrays are passed as they are, without a copy: a Fortran
! array x(64, n) is sent as a tensor of shape (n, 64), which is the same
! memory read row by row, so a model that takes rows of 64 features sees n
! samples. Outputs are copied into the array you pass, whose size must
! match.
!
!   use tandem
!   type(tandem_client) :: client
!   integer :: status
!   status = tandem_connect(client)              ! in a task `tandem run` started
!   status = tandem_wait_ready(client, "surrogate", 60d0)
!   status = tandem_infer(client, "surrogate", "x", x, "y", y)
!   if (status /= TANDEM_OK) print *, tandem_error_message()
!   call tandem_disconnect(client)
!
! An MPI application (SPMD mode) starts a session instead, and may ask for
! all its ranks at once (collective inference):
!
!   type(tandem_session) :: session
!   status = tandem_session_start(MPI_COMM_WORLD, "job.toml", session)
!   if (tandem_session_is_app(session)) then
!      comm = tandem_session_app_comm(session)    ! instead of MPI_COMM_WORLD
!      client = tandem_session_client(session)
!      status = tandem_infer_all(client, comm, "surrogate", "x", x, "y", y)
!   end if
!   status = tandem_session_finalize(session)
module tandem
  use iso_c_binding
  implicit none
  private

  integer(c_int), parameter, public :: TANDEM_OK = 0, TANDEM_ERR_ARGUMENT = 1, &
       TANDEM_ERR_CONNECT = 2, TANDEM_ERR_SERVICE = 3, TANDEM_ERR_REQUEST = 4, &
       TANDEM_ERR_PROTOCOL = 5, TANDEM_ERR_MPI = 6, TANDEM_ERR_INTERNAL = 7
  integer(c_int), parameter :: DTYPE_FP32 = 11, DTYPE_FP64 = 12, COLUMN_MAJOR = 1

  type, public :: tandem_client
     type(c_ptr) :: handle = c_null_ptr
  end type tandem_client

  type, public :: tandem_session
     type(c_ptr) :: handle = c_null_ptr
  end type tandem_session

  public :: tandem_connect, tandem_disconnect, tandem_wait_ready, tandem_infer, &
       tandem_set_ready_timeout, tandem_error_message, tandem_load_model, tandem_unload_model, tandem_last_model_version
  public :: tandem_session_start, tandem_session_is_app, tandem_session_app_comm, &
       tandem_session_client, tandem_session_finalize, tandem_infer_all

  ! The model version that computed the last reply tandem_infer took.
  integer(c_int) :: last_model_version = 0

  interface tandem_infer
     module procedure infer_real32_2d, infer_real64_2d, infer_real32_1d
  end interface tandem_infer

  ! Collective over comm (an MPI communicator handle, integer): every rank
  ! passes its own samples x(features, n) (n may differ per rank, 0 too)
  ! and gets its own outputs y(outputs, n).
  interface tandem_infer_all
     module procedure infer_all_real32_2d, infer_all_real64_2d
  end interface tandem_infer_all

  interface
     function c_connect(client) bind(C, name="tandem_connect") result(s)
       import :: c_ptr, c_int
       type(c_ptr), intent(out) :: client
       integer(c_int) :: s
     end function c_connect
     subroutine c_disconnect(client) bind(C, name="tandem_disconnect")
       import :: c_ptr
       type(c_ptr), value :: client
     end subroutine c_disconnect
     function c_wait_ready(client, service, timeout) bind(C, name="tandem_wait_ready") result(s)
       import :: c_ptr, c_int, c_char, c_double
       type(c_ptr), value :: client
       character(kind=c_char), intent(in) :: service(*)
       real(c_double), value :: timeout
       integer(c_int) :: s
     end function c_wait_ready
     function c_set_ready_timeout(client, timeout) bind(C, name="tandem_set_ready_timeout") &
          result(s)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: client
       real(c_double), value :: timeout
       integer(c_int) :: s
     end function c_set_ready_timeout
     function c_tensor_view(dtype, ndim, dims, order, data, tensor) &
          bind(C, name="tandem_tensor_view") result(s)
       import :: c_ptr, c_int, c_int64_t
       integer(c_int), value :: dtype, ndim, order
       integer(c_int64_t), intent(in) :: dims(*)
       type(c_ptr), value :: data
       type(c_ptr), intent(out) :: tensor
       integer(c_int) :: s
     end function c_tensor_view
     subroutine c_tensor_free(tensor) bind(C, name="tandem_tensor_free")
       import :: c_ptr
       type(c_ptr), value :: tensor
     end subroutine c_tensor_free
     function c_infer(client, service, n, names, inputs, outputs) &
          bind(C, name="tandem_infer") result(s)
       import :: c_ptr, c_int, c_char
       type(c_ptr), value :: client
       character(kind=c_char), intent(in) :: service(*)
       integer(c_int), value :: n
       type(c_ptr), intent(in) :: names(*), inputs(*)
       type(c_ptr), intent(out) :: outputs
       integer(c_int) :: s
     end function c_infer
     function c_infer_all_f(client, comm, service, n, names, inputs, outputs) &
          bind(C, name="tandem_infer_all_f") result(s)
       import :: c_ptr, c_int, c_char, c_int32_t
       type(c_ptr), value :: client
       integer(c_int32_t), value :: comm
       character(kind=c_char), intent(in) :: service(*)
       integer(c_int), value :: n
       type(c_ptr), intent(in) :: names(*), inputs(*)
       type(c_ptr), intent(out) :: outputs
       integer(c_int) :: s
     end function c_infer_all_f
     function c_session_start_f(comm, file, session) bind(C, name="tandem_session_start_f") &
          result(s)
       import :: c_ptr, c_int, c_char, c_int32_t
       integer(c_int32_t), value :: comm
       character(kind=c_char), intent(in) :: file(*)
       type(c_ptr), intent(out) :: session
       integer(c_int) :: s
     end function c_session_start_f
     function c_session_is_app(session) bind(C, name="tandem_session_is_app") result(v)
       import :: c_ptr, c_int
       type(c_ptr), value :: session
       integer(c_int) :: v
     end function c_session_is_app
     function c_session_app_comm_f(session) bind(C, name="tandem_session_app_comm_f") result(v)
       import :: c_ptr, c_int32_t
       type(c_ptr), value :: session
       integer(c_int32_t) :: v
     end function c_session_app_comm_f
     function c_session_client(session) bind(C, name="tandem_session_client") result(p)
       import :: c_ptr
       type(c_ptr), value :: session
       type(c_ptr) :: p
     end function c_session_client
     function c_session_finalize(session) bind(C, name="tandem_session_finalize") result(s)
       import :: c_ptr, c_int
       type(c_ptr), value :: session
       integer(c_int) :: s
     end function c_session_finalize
     function c_outputs_find(outputs, name) bind(C, name="tandem_outputs_find") result(t)
       import :: c_ptr, c_char
       type(c_ptr), value :: outputs
       character(kind=c_char), intent(in) :: name(*)
       type(c_ptr) :: t
     end function c_outputs_find
     function c_outputs_model_version(outputs) bind(C, name="tandem_outputs_model_version") &
          result(v)
       import :: c_ptr, c_int
       type(c_ptr), value :: outputs
       integer(c_int) :: v
     end function c_outputs_model_version
     function c_load_model(client, service, path, version, serving) &
          bind(C, name="tandem_load_model") result(s)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: client
       character(kind=c_char), intent(in) :: service(*), path(*)
       integer(c_int), value :: version
       integer(c_int), intent(out) :: serving
       integer(c_int) :: s
     end function c_load_model
     function c_unload_model(client, service, version, serving) &
          bind(C, name="tandem_unload_model") result(s)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: client
       character(kind=c_char), intent(in) :: service(*)
       integer(c_int), value :: version
       integer(c_int), intent(out) :: serving
       integer(c_int) :: s
     end function c_unload_model
     subroutine c_outputs_free(outputs) bind(C, name="tandem_outputs_free")
       import :: c_ptr
       type(c_ptr), value :: outputs
     end subroutine c_outputs_free
     function c_copy_to(tensor, dst, nbytes) bind(C, name="tandem_tensor_copy_to") result(s)
       import :: c_ptr, c_int, c_size_t
       type(c_ptr), value :: tensor, dst
       integer(c_size_t), value :: nbytes
       integer(c_int) :: s
     end function c_copy_to
     function c_last_error() bind(C, name="tandem_last_error") result(p)
       import :: c_ptr
       type(c_ptr) :: p
     end function c_last_error
     function c_strlen(p) bind(C, name="strlen") result(n)
       import :: c_ptr, c_size_t
       type(c_ptr), value :: p
       integer(c_size_t) :: n
     end function c_strlen
  end interface

contains

  !> Starts a session over comm (collective; MPI must be initialised).
  integer function tandem_session_start(comm, file, session) result(status)
    integer, intent(in) :: comm
    character(len=*), intent(in) :: file
    type(tandem_session), intent(out) :: session
    status = c_session_start_f(int(comm, c_int32_t), trim(file)//c_null_char, session%handle)
  end function tandem_session_start

  !> True on the application's ranks; the others served until the end.
  logical function tandem_session_is_app(session) result(app)
    type(tandem_session), intent(in) :: session
    app = c_session_is_app(session%handle) /= 0
  end function tandem_session_is_app

  !> The application ranks' communicator, to use instead of MPI_COMM_WORLD.
  integer function tandem_session_app_comm(session) result(comm)
    type(tandem_session), intent(in) :: session
    comm = int(c_session_app_comm_f(session%handle))
  end function tandem_session_app_comm

  !> The application ranks' client (owned by the session).
  function tandem_session_client(session) result(client)
    type(tandem_session), intent(in) :: session
    type(tandem_client) :: client
    client%handle = c_session_client(session%handle)
  end function tandem_session_client

  !> Collective: ends the session (the services drain and stop).
  integer function tandem_session_finalize(session) result(status)
    type(tandem_session), intent(inout) :: session
    status = c_session_finalize(session%handle)
    session%handle = c_null_ptr
  end function tandem_session_finalize

  !> Connects to the worker's proxy named in TANDEM_SOCKET.
  integer function tandem_connect(client) result(status)
    type(tandem_client), intent(out) :: client
    status = c_connect(client%handle)
  end function tandem_connect

  subroutine tandem_disconnect(client)
    type(tandem_client), intent(inout) :: client
    if (c_associated(client%handle)) call c_disconnect(client%handle)
    client%handle = c_null_ptr
  end subroutine tandem_disconnect

  integer function tandem_wait_ready(client, service, timeout) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service
    real(c_double), intent(in) :: timeout
    status = c_wait_ready(client%handle, trim(service)//c_null_char, timeout)
  end function tandem_wait_ready

  !> How long requests wait for a service that is still STARTING: timeout
  !> seconds, or (negative, the default) the service's start_timeout.
  integer function tandem_set_ready_timeout(client, timeout) result(status)
    type(tandem_client), intent(in) :: client
    real(c_double), intent(in) :: timeout
    status = c_set_ready_timeout(client%handle, timeout)
  end function tandem_set_ready_timeout

  !> Loads the TorchScript file path as model version `version` of the
  !> service on every replica; serving is the version served afterwards.
  integer function tandem_load_model(client, service, path, version, serving) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service, path
    integer(c_int), intent(in) :: version
    integer(c_int), intent(out) :: serving
    status = c_load_model(client%handle, trim(service)//c_null_char, trim(path)//c_null_char, &
         version, serving)
  end function tandem_load_model

  !> Drops a model version from every replica of the service.
  integer function tandem_unload_model(client, service, version, serving) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service
    integer(c_int), intent(in) :: version
    integer(c_int), intent(out) :: serving
    status = c_unload_model(client%handle, trim(service)//c_null_char, version, serving)
  end function tandem_unload_model

  !> The model version that computed the outputs of the last tandem_infer.
  integer(c_int) function tandem_last_model_version() result(v)
    v = last_model_version
  end function tandem_last_model_version

  !> The message of the last failed call.
  function tandem_error_message() result(message)
    character(len=:), allocatable :: message
    type(c_ptr) :: p
    character(kind=c_char), pointer :: chars(:)
    integer :: n, i
    p = c_last_error()
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: message)
    do i = 1, n
       message(i:i) = chars(i)
    end do
  end function tandem_error_message

  ! One input tensor over @p data (its dims in Fortran order), one output
  ! copied into @p out of @p out_bytes bytes. With @p comm present, the
  ! collective call over that communicator (tandem_infer_all_f).
  integer function infer_one(client, service, input_name, dtype, dims, data, output_name, &
       out, out_bytes, comm) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service, input_name, output_name
    integer(c_int), intent(in) :: dtype
    integer(c_int64_t), intent(in) :: dims(:)
    type(c_ptr), intent(in) :: data, out
    integer(c_size_t), intent(in) :: out_bytes
    integer, intent(in), optional :: comm
    type(c_ptr) :: tensor, outputs, found, names(1), inputs(1)
    character(kind=c_char, len=:), allocatable, target :: c_name
    status = c_tensor_view(dtype, size(dims), dims, COLUMN_MAJOR, data, tensor)
    if (status /= TANDEM_OK) return
    c_name = trim(input_name)//c_null_char
    names(1) = c_loc(c_name)
    inputs(1) = tensor
    if (present(comm)) then
       status = c_infer_all_f(client%handle, int(comm, c_int32_t), trim(service)//c_null_char, &
            1_c_int, names, inputs, outputs)
    else
       status = c_infer(client%handle, trim(service)//c_null_char, 1_c_int, names, inputs, outputs)
    end if
    call c_tensor_free(tensor)
    if (status /= TANDEM_OK) return
    last_model_version = c_outputs_model_version(outputs)
    found = c_outputs_find(outputs, trim(output_name)//c_null_char)
    if (.not. c_associated(found)) then
       status = TANDEM_ERR_ARGUMENT
    else
       status = c_copy_to(found, out, out_bytes)
    end if
    call c_outputs_free(outputs)
  end function infer_one

  integer function infer_real32_2d(client, service, input_name, x, output_name, y) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service, input_name, output_name
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(out), target, contiguous :: y(:, :)
    status = infer_one(client, service, input_name, DTYPE_FP32, &
         int(shape(x), c_int64_t), c_loc(x), output_name, c_loc(y), int(size(y) * 4, c_size_t))
  end function infer_real32_2d

  integer function infer_real64_2d(client, service, input_name, x, output_name, y) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service, input_name, output_name
    real(c_double), intent(in), target, contiguous :: x(:, :)
    real(c_double), intent(out), target, contiguous :: y(:, :)
    status = infer_one(client, service, input_name, DTYPE_FP64, &
         int(shape(x), c_int64_t), c_loc(x), output_name, c_loc(y), int(size(y) * 8, c_size_t))
  end function infer_real64_2d

  integer function infer_real32_1d(client, service, input_name, x, output_name, y) result(status)
    type(tandem_client), intent(in) :: client
    character(len=*), intent(in) :: service, input_name, output_name
    real(c_float), intent(in), target, contiguous :: x(:)
    real(c_float), intent(out), target, contiguous :: y(:)
    status = infer_one(client, service, input_name, DTYPE_FP32, &
         int(shape(x), c_int64_t), c_loc(x), output_name, c_loc(y), int(size(y) * 4, c_size_t))
  end function infer_real32_1d

  integer function infer_all_real32_2d(client, comm, service, input_name, x, output_name, y) &
       result(status)
    type(tandem_client), intent(in) :: client
    integer, intent(in) :: comm
    character(len=*), intent(in) :: service, input_name, output_name
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(out), target, contiguous :: y(:, :)
    status = infer_one(client, service, input_name, DTYPE_FP32, int(shape(x), c_int64_t), &
         c_loc(x), output_name, c_loc(y), int(size(y) * 4, c_size_t), comm)
  end function infer_all_real32_2d

  integer function infer_all_real64_2d(client, comm, service, input_name, x, output_name, y) &
       result(status)
    type(tandem_client), intent(in) :: client
    integer, intent(in) :: comm
    character(len=*), intent(in) :: service, input_name, output_name
    real(c_double), intent(in), target, contiguous :: x(:, :)
    real(c_double), intent(out), target, contiguous :: y(:, :)
    status = infer_one(client, service, input_name, DTYPE_FP64, int(shape(x), c_int64_t), &
         c_loc(x), output_name, c_loc(y), int(size(y) * 8, c_size_t), comm)
  end function infer_all_real64_2d

end module tandem
