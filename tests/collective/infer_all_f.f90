! Collective inference from Fortran (issue 37): an MPI program starts a
! session and calls tandem_infer_all over the application's communicator,
! each rank with its own number of samples (application rank r has r, so
! the first has none). Service "double" doubles its input.
! Usage (under mpiexec, 3+ ranks): infer_all_f JOB.toml
program infer_all_f
  use iso_c_binding
  use mpi
  use tandem
  implicit none
  type(tandem_session) :: session
  type(tandem_client) :: client
  integer :: ierr, comm, rank, status, n, i, bad, any_bad
  character(len=4096) :: file
  real(c_double), allocatable :: x(:, :), y(:, :)

  call MPI_Init(ierr)
  call get_command_argument(1, file)
  status = tandem_session_start(MPI_COMM_WORLD, file, session)
  if (status /= TANDEM_OK) then
     write (0, '(a, a)') 'infer_all_f: ', tandem_error_message()
     call MPI_Abort(MPI_COMM_WORLD, 1, ierr)
  end if
  bad = 0
  if (tandem_session_is_app(session)) then
     comm = tandem_session_app_comm(session)
     call MPI_Comm_rank(comm, rank, ierr)
     client = tandem_session_client(session)
     n = rank
     allocate(x(3, n), y(3, n))
     x = reshape([(real(100 * rank + i, c_double), i = 1, 3 * n)], [3, n])
     status = tandem_infer_all(client, comm, "double", "x", x, "x", y)
     if (status /= TANDEM_OK) then
        write (0, '(a, a)') 'infer_all_f: ', tandem_error_message()
        bad = 1
     else if (any(y /= 2 * x)) then
        write (0, '(a, i0, a)') 'infer_all_f: rank ', rank, ' got wrong values'
        bad = 1
     end if
  end if
  if (tandem_session_finalize(session) /= TANDEM_OK) bad = 1
  call MPI_Allreduce(bad, any_bad, 1, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD, ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  if (rank == 0 .and. any_bad == 0) print '(a)', 'infer_all_f: every rank got its own rows'
  if (rank == 0 .and. any_bad /= 0) print '(a)', 'infer_all_f: FAILED'
  call MPI_Finalize(ierr)
  if (any_bad /= 0) stop 1
end program infer_all_f
