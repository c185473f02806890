! Asks the served closure model for R(u, a) on a grid of n points, from
! Fortran through the worker's proxy, and prints "u a r" lines. x(2, n)
! holds (u, a) per column: the service sees n rows of 2.
program closure_f
  use iso_c_binding
  use tandem
  implicit none
  type(tandem_client) :: client
  real(c_float), allocatable :: x(:, :), r(:, :)
  character(len=32) :: arg
  integer :: n, i, status

  n = 1000
  if (command_argument_count() > 0) then
    call get_command_argument(1, arg)
    read (arg, *) n
  end if
  allocate(x(2, n), r(1, n))
  do i = 1, n
    x(1, i) = real(i - 1, c_float) / real(n, c_float)
    x(2, i) = 0.5 + 1.5 * real(mod(i - 1, 7), c_float) / 6.0
  end do
  status = tandem_connect(client)
  if (status == TANDEM_OK) status = tandem_wait_ready(client, "closure", 120d0)
  if (status == TANDEM_OK) status = tandem_infer(client, "closure", "x", x, "r", r)
  if (status /= TANDEM_OK) then
    write (0, '(a, i0, a, a)') 'closure_f: status ', status, ': ', tandem_error_message()
    stop 1
  end if
  do i = 1, n
    write (*, '(f8.6, 1x, f8.6, 1x, es16.9)') x(1, i), x(2, i), r(1, i)
  end do
  call tandem_disconnect(client)
end program closure_f
