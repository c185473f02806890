! A Fortran block that asks a service, inside a subroutine given n.
subroutine docs_example(n)
@DOC@
end subroutine docs_example
