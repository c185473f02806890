! An executable task (Fortran, through the worker's proxy): expects service
! "t" at version FROM, loads TO from FILE and checks the replies (version N
! multiplies by N).   versions_task_f FROM TO FILE
program versions_task_f
  use iso_c_binding
  use tandem
  implicit none
  type(tandem_client) :: client
  real(c_float) :: x(4, 2), y(4, 2)
  character(len=4096) :: arg, file
  integer(c_int) :: from, to, serving
  integer :: status, i

  call get_command_argument(1, arg)
  read (arg, *) from
  call get_command_argument(2, arg)
  read (arg, *) to
  call get_command_argument(3, file)
  x = reshape([(real(i, c_float), i = 1, 8)], [4, 2])
  status = tandem_connect(client)
  ! No wait_ready: the first request waits for a service that is starting.
  if (status == TANDEM_OK) status = tandem_set_ready_timeout(client, 120d0)
  if (status == TANDEM_OK) status = tandem_infer(client, "t", "x", x, "y", y)
  if (status == TANDEM_OK) call expect(from)
  if (status == TANDEM_OK) status = tandem_load_model(client, "t", file, to, serving)
  if (status == TANDEM_OK .and. serving /= to) status = TANDEM_ERR_INTERNAL
  if (status == TANDEM_OK) status = tandem_infer(client, "t", "x", x, "y", y)
  if (status == TANDEM_OK) call expect(to)
  if (status /= TANDEM_OK) then
     write (0, '(a, i0, a, a)') 'versions_task_f: status ', status, ': ', tandem_error_message()
     stop 1
  end if
  call tandem_disconnect(client)
  write (*, '(a, i0, a, i0, a)') 'fortran: versions ', from, ' -> ', to, ' through the proxy'
contains
  subroutine expect(version)
    integer(c_int), intent(in) :: version
    if (tandem_last_model_version() /= version .or. any(y /= x * real(version, c_float))) then
       write (0, '(a, i0, a, i0)') 'expected version ', version, ', got ', &
            tandem_last_model_version()
       stop 1
    end if
  end subroutine expect
end program versions_task_f
